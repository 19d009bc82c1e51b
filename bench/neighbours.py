"""Other work on the machine skews every figure: exec hooks of other processes, busy CPUs.

Before each measurement, while nothing of the suite's own runs, the suite
waits for the machine to be quiet: no other process with a BPF program on
exec (another enforcer, a test suite's daemon), and the CPUs mostly idle. The
waiting has a budget for the whole run; once it is spent, measurements go on
regardless, and what was still there is recorded for the results to name.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench import bpfstats
from bench.progress import say

POLL_S = 1.0
# CPU use by others, as a share of all CPUs, above which the machine is busy.
BUSY_SHARE = 0.15
BUSY_SAMPLE_S = 0.3


@dataclass(frozen=True)
class Quietness:
    """How quiet the machine was at the start of each measurement."""

    measurements: int
    noisy: int  # measurements that started while the machine was not quiet
    hooks: list[str]  # other processes' exec hooks present then
    busiest_percent: float  # the highest CPU use by others seen then
    waited_s: float


class Neighbours:
    def __init__(self, patience_s: float) -> None:
        self.patience_s = patience_s  # all the waiting the run may do
        self._waited_s = 0.0
        self._measurements = 0
        self._noisy = 0
        self._hooks: set[str] = set()
        self._busiest = 0.0

    def settle(self, own_pids: Iterable[int] = ()) -> None:
        """Waits until the machine is quiet, while the budget lasts; records what was not."""
        mine = set(own_pids)
        self._measurements += 1
        for attempt in itertools.count():
            hooks = [
                f"pid {h.pid} ({_command(h.pid)}) on {h.attach}"
                for h in bpfstats.foreign_exec_hooks(mine)
            ]
            busy = _busy_share(BUSY_SAMPLE_S)
            if not hooks and busy <= BUSY_SHARE:
                return
            if self._waited_s >= self.patience_s:
                self._noisy += 1
                self._hooks.update(hooks)
                self._busiest = max(self._busiest, busy)
                return
            if attempt == 0:
                what = [*hooks, f"CPUs {100 * busy:.0f}% busy"]
                say(f"  waiting for a quiet machine ({'; '.join(what)})")
            time.sleep(POLL_S)
            self._waited_s += POLL_S + BUSY_SAMPLE_S

    def quietness(self) -> Quietness:
        return Quietness(
            measurements=self._measurements,
            noisy=self._noisy,
            hooks=sorted(self._hooks),
            busiest_percent=round(100 * self._busiest, 1),
            waited_s=round(self._waited_s, 1),
        )


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_share(seconds: float) -> float:
    busy_before, total_before = _cpu_times()
    time.sleep(seconds)
    busy_after, total_after = _cpu_times()
    return (busy_after - busy_before) / max(total_after - total_before, 1)


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "gone"
