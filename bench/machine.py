"""The machine the figures come from: kernel, CPUs, memory, date, versions."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    kernel: str  # uname -r
    cpus: int  # nproc
    cpu_model: str
    virtualized: bool
    memory_gib: float
    os: str
    python: str
    bcc: str
    enforcer_commit: str
    date_utc: str
    load_average: tuple[float, float, float]


def describe() -> Machine:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return Machine(
        kernel=platform.release(),
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=_first_value(cpuinfo, "model name"),
        virtualized=" hypervisor" in _first_value(cpuinfo, "flags"),
        memory_gib=round(_meminfo_kib("MemTotal") / 2**20, 1),
        os=_os_name(),
        python=platform.python_version(),
        bcc=_command(["dpkg-query", "-W", "-f=${Version}", "python3-bpfcc"]),
        enforcer_commit=_commit(),
        date_utc=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        load_average=os.getloadavg(),
    )


def _first_value(text: str, key: str) -> str:
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return "?"


def _meminfo_kib(key: str) -> int:
    return int(_first_value(Path("/proc/meminfo").read_text(), key).split()[0])


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def _command(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "?"
    return result.stdout.strip() or "?"


def _commit() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    commit = _command(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = _command(["git", "-C", root, "status", "--porcelain", "--", "enforcer", "bpf"])
    return f"{commit} (with uncommitted changes)" if dirty != "?" else commit
