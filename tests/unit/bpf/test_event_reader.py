"""An event record from the kernel (struct event) decoded into a KernelEvent."""

from __future__ import annotations

import ctypes

from enforcer.bpf import abi
from enforcer.bpf.abi import Action, EventKind
from enforcer.bpf.event_reader import decode_event
from enforcer.enforce.map_contents import Hit


class Event(ctypes.Structure):
    """struct event of bpf/enforcer.h, as the compile describes it."""

    _fields_ = [
        ("timestamp_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),
        ("policy_id", ctypes.c_uint16),
        ("rule_id", ctypes.c_uint16),
        ("target_id", ctypes.c_uint16),
        ("action", ctypes.c_uint16),
        ("flags", ctypes.c_uint32),
        ("comm", ctypes.c_char * abi.COMM_LEN),
        ("filename", ctypes.c_char * abi.PATH_LEN),
        ("invoked", ctypes.c_char * abi.PATH_LEN),
        ("caller", ctypes.c_char * abi.PATH_LEN),
        ("argc", ctypes.c_uint32),
        ("args", ctypes.c_char * (abi.MAX_ARGS * abi.ARG_LEN)),
    ]


def event(kind: EventKind, args: list[bytes], argc: int | None = None) -> Event:
    raw = Event(timestamp_ns=5, cgroup_id=7, pid=10, tid=11, uid=0, kind=int(kind))
    raw.policy_id, raw.rule_id, raw.target_id, raw.action = 1, 2, 3, int(Action.KILL)
    raw.comm, raw.filename, raw.invoked = b"sh", b"/usr/bin/id", b"id"
    raw.caller = b"/usr/bin/bash"
    raw.argc = len(args) if argc is None else argc
    for i, arg in enumerate(args):
        ctypes.memmove(ctypes.addressof(raw) + Event.args.offset + i * abi.ARG_LEN, arg, len(arg))
    return raw


def test_a_match_carries_its_hit_and_every_field() -> None:
    decoded = decode_event(event(EventKind.MATCH, [b"id", b"-u"]))
    assert decoded.hit == Hit(1, 2, 3, Action.KILL)
    assert (decoded.kind, decoded.timestamp_ns, decoded.cgroup_id) == (EventKind.MATCH, 5, 7)
    assert (decoded.pid, decoded.tid, decoded.comm) == (10, 11, "sh")
    assert (decoded.filename, decoded.invoked, decoded.caller) == (
        "/usr/bin/id",
        "id",
        "/usr/bin/bash",
    )
    assert decoded.argv == ("id", "-u")


def test_an_exec_that_matched_nothing_has_no_hit() -> None:
    assert decode_event(event(EventKind.EXEC, [b"id"])).hit is None


def test_an_empty_argument_keeps_its_slot_and_argc_beyond_the_slots_is_cut() -> None:
    # A char array read by ctypes would stop at the first slot's NUL.
    assert decode_event(event(EventKind.EXEC, [b"printf", b"", b"x"])).argv == ("printf", "", "x")
    full = [f"a{i}".encode() for i in range(abi.MAX_ARGS)]
    assert len(decode_event(event(EventKind.EXEC, full, argc=100)).argv) == abi.MAX_ARGS
