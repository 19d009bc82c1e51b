"""bcc's execsnoop attached while an exec loop runs: Debian's own tool, or its stand-in.

`execsnoop-bpfcc` is tried first. On a kernel without kprobes it cannot
attach; the tracepoint stand-in (bench/execsnoop_tp.py) then takes its place,
and the results say so.
"""

from __future__ import annotations

import os
import shutil
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

REAL_TOOL = "execsnoop-bpfcc"
READY_MARK = "PCOMM"
ATTACH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


def real_tool_failure() -> str | None:
    """Why Debian's execsnoop cannot run here, or None when it can."""
    if shutil.which(REAL_TOOL) is None:
        return f"{REAL_TOOL} is not installed (apt-get install bpfcc-tools)"
    try:
        with running([REAL_TOOL]):
            return None
    except MeasurementError as e:
        return str(e)


def command(use_real_tool: bool) -> list[str]:
    if use_real_tool:
        return [REAL_TOOL]
    return [sys.executable, "-m", "bench.execsnoop_tp"]


@contextmanager
def running(argv: list[str]) -> Iterator[int]:
    """Runs an execsnoop until the block ends, giving its pid (whose programs bpftool lists).

    Its output goes to a file nobody reads.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_attached(process, out, argv)
            yield process.pid
        finally:
            processes.stop(process, signal.SIGINT, STOP_TIMEOUT_S)


def _wait_attached(process: subprocess.Popen[bytes], out: IO[str], argv: list[str]) -> None:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while time.monotonic() < deadline:
        out.seek(0)
        text = out.read()
        if READY_MARK in text:
            return
        if process.poll() is not None:
            last = text.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
            raise MeasurementError(f"{' '.join(argv)} failed: {last[0]}")
        time.sleep(0.05)
    raise MeasurementError(f"execsnoop did not attach within {ATTACH_TIMEOUT_S:.0f} s")
