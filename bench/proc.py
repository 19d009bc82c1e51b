"""What /proc says about a process: CPU time used and resident memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after the command name: utime is field 14, stime 15.
UTIME_AFTER_COMM = 11


@dataclass(frozen=True)
class Memory:
    vm_rss_kib: int
    rss_anon_kib: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of all the process's threads so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[UTIME_AFTER_COMM]), int(fields[UTIME_AFTER_COMM + 1])
    return (utime + stime) / CLOCK_TICKS


def memory(pid: int) -> Memory:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            values[key] = int(rest.split()[0])  # kB
    return Memory(vm_rss_kib=values["VmRSS"], rss_anon_kib=values["RssAnon"])
