"""The kernel's own accounting of BPF programs: run counts and run time, per program.

With `kernel.bpf_stats_enabled=1` the kernel sums, for each program, how often
it ran and how long it took; bpftool reads both. The programs a process has
attached, and where, come from `bpftool perf show`: the file descriptors it
holds of perf events (tracepoints, kprobes) and of raw tracepoint links (the
enforcer's sched_process_exec, and on the tracepoint backend its
sched_prepare_exec, which reads the caller for calledBy rules: both count as
exec hooks). A link kept only by a pin in bpffs, with no process holding it,
is not listed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import PrerequisiteError

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@dataclass(frozen=True)
class Hook:
    """One program a process attached to a tracepoint, raw tracepoint, kprobe or uprobe."""

    pid: int
    prog_id: int
    attach: str  # the tracepoint name or the probed function

    @property
    def on_exec(self) -> bool:
        return "exec" in self.attach

    @property
    def on_syscall(self) -> bool:
        """A syscalls:sys_enter_*/sys_exit_* or raw_syscalls tracepoint: every system call of
        every task takes the slow path while one is attached."""
        return self.attach.startswith(("sys_enter", "sys_exit"))


@dataclass(frozen=True)
class RunTotals:
    run_cnt: int
    run_time_ns: int


@contextmanager
def stats_enabled() -> Iterator[None]:
    """Turns the kernel's BPF run-time accounting on, and back to what it was."""
    previous = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield
    finally:
        STATS_SYSCTL.write_text(previous)


def _bpftool(*args: str) -> Any:
    try:
        result = subprocess.run(
            ["bpftool", *args, "--json"], capture_output=True, text=True, check=True
        )
    except FileNotFoundError as e:
        raise PrerequisiteError("bpftool is not installed: apt-get install bpftool") from e
    return json.loads(result.stdout or "[]")


def hooks() -> list[Hook]:
    """Every program a process holds attached, once each (a process may hold an attachment
    through two descriptors, as the enforcer holds its raw tracepoint link and a copy to pin)."""
    found = (
        Hook(int(h["pid"]), int(h["prog_id"]), str(h.get("tracepoint") or h.get("func") or ""))
        for h in _bpftool("perf", "show")
    )
    return list(dict.fromkeys(found))


def exec_hooks_of(pid: int) -> list[Hook]:
    return [h for h in hooks() if h.pid == pid and h.on_exec]


def foreign_exec_hooks(own_pids: Iterable[int]) -> list[Hook]:
    """Exec hooks of processes other than ours: anything else that would slow execs."""
    mine = set(own_pids)
    return [h for h in hooks() if h.on_exec and h.pid not in mine]


def foreign_syscall_hooks(own_pids: Iterable[int]) -> list[Hook]:
    """Syscall tracepoints of processes other than ours: they slow every system call."""
    mine = set(own_pids)
    return [h for h in hooks() if h.on_syscall and h.pid not in mine]


def totals(prog_ids: Iterable[int]) -> dict[int, RunTotals]:
    wanted = set(prog_ids)
    return {
        int(p["id"]): RunTotals(int(p.get("run_cnt", 0)), int(p.get("run_time_ns", 0)))
        for p in _bpftool("prog", "show")
        if int(p["id"]) in wanted
    }


def ns_per_run(before: Mapping[int, RunTotals], after: Mapping[int, RunTotals]) -> dict[int, float]:
    """Each program's time per run between two readings: {program id: ns}, for those that ran."""
    return {
        p: (after[p].run_time_ns - before[p].run_time_ns) / (after[p].run_cnt - before[p].run_cnt)
        for p in after
        if p in before and after[p].run_cnt > before[p].run_cnt
    }


def ns_per_exec(per_run: Mapping[int, float]) -> float | None:
    """BPF time one exec costs: the programs' times per run (ns_per_run), summed.

    A tool may run more than one program per exec (execsnoop: on entry and on
    return; the enforcer: sched_prepare_exec and sched_process_exec); each runs
    once per exec, so the per-run averages add up.
    """
    return sum(per_run.values()) if per_run else None
