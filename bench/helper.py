"""A BPF tool in a child process: started, waited for until it says it is attached, stopped.

The suite's own small tools (bench/execsnoop_tp.py, bench/syscall_tp.py,
bench/floor.py) run as `python -m bench.NAME`, as Debian's execsnoop runs: in
a process of their own, whose programs `bpftool perf show` lists under its
pid. Each prints a line once its probes are attached and detaches on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from bench import processes
from bench.errors import MeasurementError

ATTACH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
ATTACHED = "ATTACHED"  # what the suite's own tools print once attached
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def module_command(module: str, *args: str) -> list[str]:
    """`python -m bench.MODULE ARGS`, with this interpreter."""
    return [sys.executable, "-m", f"bench.{module}", *args]


@contextmanager
def running(argv: list[str], ready_mark: str = ATTACHED) -> Iterator[int]:
    """Runs a tool until the block ends, giving its pid once it printed `ready_mark`.

    Its output goes to a file nobody reads but this, for the last line of a failure.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_attached(process, out, argv, ready_mark)
            yield process.pid
        finally:
            processes.stop(process, signal.SIGINT, STOP_TIMEOUT_S)


def _wait_attached(
    process: subprocess.Popen[bytes], out: IO[str], argv: list[str], ready_mark: str
) -> None:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while time.monotonic() < deadline:
        out.seek(0)
        text = out.read()
        if ready_mark in text:
            return
        if process.poll() is not None:
            last = text.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
            raise MeasurementError(f"{' '.join(argv)} failed: {last[0]}")
        time.sleep(0.05)
    raise MeasurementError(f"{' '.join(argv)} did not attach within {ATTACH_TIMEOUT_S:.0f} s")


def hold_stop_signals() -> None:
    """In a tool: SIGTERM and SIGINT wait for `await_stop` instead of ending the process.

    Call it before loading anything, so a stop that comes early still finds
    the tool cleaning up.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def await_stop() -> None:
    """In a tool: returns once SIGTERM or SIGINT came (`hold_stop_signals` first)."""
    signal.sigwait(STOP_SIGNALS)
