"""bcc's execsnoop attached while an exec loop runs: Debian's own tool, or its stand-in.

`execsnoop-bpfcc` is tried first. On a kernel without kprobes it cannot
attach; the tracepoint stand-in (bench/execsnoop_tp.py) then takes its place,
and the results say so.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from bench import helper
from bench.errors import MeasurementError

REAL_TOOL = "execsnoop-bpfcc"
READY_MARK = "PCOMM"  # its header line, printed once its probes are attached


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
    return helper.module_command("execsnoop_tp")


@contextmanager
def running(argv: list[str]) -> Iterator[int]:
    """Runs an execsnoop until the block ends, giving its pid (whose programs bpftool lists).

    Its output goes to a file nobody reads.
    """
    with helper.running(argv, READY_MARK) as pid:
        yield pid
