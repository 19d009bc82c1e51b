"""Runs bench/c/spawn_loop: N execs of one program, in a given cgroup and on a given CPU."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import MeasurementError
from bench.processes import stop


@dataclass(frozen=True)
class LoopResult:
    """One loop's wall time and how its children ended (see spawn_loop.c)."""

    execs: int
    elapsed_ns: int
    cpu_ns: int  # user + system time of the loop and its children
    exited: int  # exit status 0
    failed: int  # another exit status
    killed: int  # SIGKILL
    other: int  # any other signal
    spawn_errors: int
    last_error: str

    @property
    def us_per_exec(self) -> float:
        return self.elapsed_ns / 1000 / self.execs

    @property
    def cpu_us_per_exec(self) -> float:
        return self.cpu_ns / 1000 / self.execs


def start_loop(
    spawn_loop: Path, program: Path, execs: int, *, cgroup: Path | None = None,
    cpu: int | None = None, args: Sequence[str] = (),
) -> subprocess.Popen[str]:  # fmt: skip
    """Starts the loop; it joins `cgroup` and pins itself to `cpu` before its first exec.

    Each exec of `program` gets `args` after its argv[0].
    """
    options = [
        *(["-g", str(cgroup)] if cgroup else []),
        *(["-c", str(cpu)] if cpu is not None else []),
    ]
    return subprocess.Popen(
        [str(spawn_loop), *options, str(execs), str(program), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish_loop(process: subprocess.Popen[str]) -> LoopResult:
    """Waits for a loop started with start_loop and parses what it printed.

    Interrupted, it kills the loop first: no loop outlives the benchmark.
    """
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        stop(process, signal.SIGKILL, 0)
        raise
    if process.returncode != 0:
        raise MeasurementError(f"spawn_loop exited {process.returncode}: {stderr.strip()}")
    result = LoopResult(**json.loads(stdout))
    if result.spawn_errors:
        raise MeasurementError(
            f"{result.spawn_errors} of {result.execs} spawns failed: {result.last_error}"
        )
    return result


def run_loop(
    spawn_loop: Path, program: Path, execs: int, *, cgroup: Path | None = None,
    cpu: int | None = None, args: Sequence[str] = (),
) -> LoopResult:  # fmt: skip
    return finish_loop(start_loop(spawn_loop, program, execs, cgroup=cgroup, cpu=cpu, args=args))
