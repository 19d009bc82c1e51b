"""What a user would pick instead: a bpftrace one-liner that kills one program in one cgroup.

    bpftrace --unsafe -e 'tracepoint:sched:sched_process_exec
        /cgroup == ID && comm == "NAME"/ { signal("SIGKILL"); }'

from Debian's bpftrace package, on the hook the enforcer decides at: the
caller's cgroup id and the new program's name (comm: the basename, cut to 15
bytes) compared, SIGKILL on a match. A classic tracepoint, where the floor and
the enforcer use the raw one; bpftrace compiles it with its own LLVM at start.
"""

from __future__ import annotations

import re
import shutil

from bench.errors import PrerequisiteError

READY = "Attaching 1 probe"  # what bpftrace prints once attached
LABEL = "bpftrace one-liner"  # its rows in the tables
COMM_LEN = 15
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,15}")


def command(cgroup_id: int, name: str) -> list[str]:
    """The one-liner that kills `name` (at most COMM_LEN bytes) in cgroup `cgroup_id`."""
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"{name!r}: give at most {COMM_LEN} letters, digits, '.', '_' or '-'")
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        raise PrerequisiteError("bpftrace is not installed: apt-get install bpftrace (make bench)")
    program = (
        f'tracepoint:sched:sched_process_exec /cgroup == {cgroup_id} && comm == "{name}"/ '
        '{ signal("SIGKILL"); }'
    )
    return [bpftrace, "--unsafe", "-e", program]
