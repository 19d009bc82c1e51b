"""What the kernel program reports, as plain records: its events, counter keys and held execs.

The program's parts (event_reader.py, counters.py, held_map.py) decode them
from the kernel's structs (bpf/enforcer.h); every other module takes them
from here, typed, without loading the BPF side.
"""

from __future__ import annotations

from dataclasses import dataclass

from enforcer.bpf.abi import Action, EventKind
from enforcer.enforce.map_contents import Hit


@dataclass(frozen=True)
class CounterKey:
    cgroup_id: int
    policy_id: int
    rule_id: int
    target_id: int
    action: Action
    caller_id: int = 0  # a calledBy rule's: the entry that named the caller


@dataclass(frozen=True)
class KernelEvent:
    """One exec the kernel reported: a rule hit, or (tracing) any exec."""

    kind: EventKind
    timestamp_ns: int
    cgroup_id: int
    pid: int
    tid: int
    uid: int
    hit: Hit | None
    comm: str
    filename: str  # the file that runs, resolved; for cgroup events, the cgroup's path
    argv: tuple[str, ...] = ()
    invoked: str = ""  # the path as passed to exec
    flags: int = 0  # abi.ExecFlag bits
    caller: str = ""  # the program that called exec, resolved; "" when it was not read


@dataclass(frozen=True)
class Caller:
    """The program that called an exec, as the kernel read it (struct caller_info)."""

    path: str  # resolved in the caller's root
    name: str  # its file's basename
    inode: tuple[int, int]  # (kernel dev, ino)
    flags: int  # abi.CallerFlag bits; without KNOWN the rest is empty


@dataclass(frozen=True)
class HeldExec:
    """An exec the kernel stopped for the daemon to decide (see bpf/enforcer.h)."""

    pid: int
    cgroup_id: int
    set_id: int  # abi.SET_PENDING, or the kernel's set (bank bit included)
    path: str  # the file that runs, resolved in the caller's root
    name: str  # its basename; empty when longer than any policy name can be
    inode: tuple[int, int]
    flags: int  # abi.ExecFlag bits
    invoked: str  # the path as passed to exec (a script's)
    interp_name: str  # for a script, the tail of its #! interpreter's path
    cwd: str  # the caller's working directory, resolved
    caller: Caller
