"""What the running kernel offers, and the attach backend chosen from it.

Probing reads files only (tracefs, /proc), so it needs no bcc and runs before
bcc is imported: bcc fixes its tracefs path at import time, which is why the
mounts are made here first.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from enforcer.errors import KernelSupportError

log = logging.getLogger(__name__)

DEBUGFS = Path("/sys/kernel/debug")
TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
SYSCALLS = ("execve", "execveat")


class Backend(StrEnum):
    """How the exec hook is attached; `AUTO` lets `choose_backend` decide."""

    AUTO = "auto"
    KPROBE = "kprobe"
    TRACEPOINT = "tracepoint"


@dataclass(frozen=True)
class KernelFacts:
    release: str
    kprobes: bool
    syscall_tracepoints: bool
    ring_buffer: bool


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    reason: str


def ensure_mounts() -> None:
    """Mounts tracefs, debugfs and bpffs where the boot did not (as on minimal VMs)."""
    for fstype, target in (("debugfs", DEBUGFS), ("tracefs", TRACEFS), ("bpf", BPFFS)):
        if _is_mounted(target):
            continue
        command = ["mount", "-t", fstype, fstype, str(target)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KernelSupportError(
                f"cannot mount {fstype} on {target}: {result.stderr.strip()}. "
                "Run as root, or mount it yourself before starting enforcer."
            )
        log.info("mounted %s on %s", fstype, target)


def _is_mounted(target: Path) -> bool:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return any(line.split()[1] == str(target) for line in mounts if len(line.split()) > 1)


def tracefs_root() -> Path:
    """The tracefs bcc will use: the one below debugfs first, as bcc does."""
    below_debugfs = DEBUGFS / "tracing"
    return below_debugfs if (below_debugfs / "events").is_dir() else TRACEFS


def probe() -> KernelFacts:
    tracefs = tracefs_root()
    return KernelFacts(
        release=platform.release(),
        kprobes=(tracefs / "kprobe_events").exists(),
        syscall_tracepoints=all(
            (tracefs / "events" / "syscalls" / f"sys_enter_{name}").is_dir() for name in SYSCALLS
        ),
        ring_buffer=kernel_version() >= (5, 8),
    )


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release string such as '6.1.0-26-amd64'."""
    numbers = (release or platform.release()).split("-")[0].split(".")
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def choose_backend(facts: KernelFacts, requested: Backend = Backend.AUTO) -> BackendChoice:
    """Kprobes on the syscalls where the kernel has them, else syscall tracepoints."""
    if requested is Backend.KPROBE and not facts.kprobes:
        raise KernelSupportError(
            f"--backend kprobe: kernel {facts.release} has no kprobes (CONFIG_KPROBES is off). "
            "Use --backend tracepoint or auto."
        )
    if requested is Backend.TRACEPOINT and not facts.syscall_tracepoints:
        raise KernelSupportError(
            f"--backend tracepoint: kernel {facts.release} has no syscalls:sys_enter_execve "
            "tracepoint (CONFIG_FTRACE_SYSCALLS is off). Use --backend kprobe or auto."
        )
    if requested is not Backend.AUTO:
        return BackendChoice(requested, "forced by --backend")
    if facts.kprobes:
        return BackendChoice(Backend.KPROBE, "kprobes are available")
    if facts.syscall_tracepoints:
        return BackendChoice(Backend.TRACEPOINT, "no kprobes; syscall tracepoints are available")
    raise KernelSupportError(
        f"kernel {facts.release} has neither kprobes nor syscall tracepoints: enforcer cannot "
        "see execs. Boot a kernel with CONFIG_KPROBES or CONFIG_FTRACE_SYSCALLS."
    )


def require_root() -> None:
    if os.geteuid() != 0:
        raise KernelSupportError("loading BPF programs needs root; run this command with sudo")
