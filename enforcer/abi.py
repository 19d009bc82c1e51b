"""Python's mirror of the enums and sizes in bpf/enforcer.h.

Map key and value layouts come from bcc's generated ctypes; only the numbers
Python computes with are repeated here. tests/unit/test_abi.py checks that
they match the header.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
HEADER = BPF_DIR / "enforcer.h"


class Action(IntEnum):
    """What a matching rule does to the exec (enum action)."""

    AUDIT = 1
    KILL = 2


class EventKind(IntEnum):
    """Why the kernel sent an event (enum event_kind)."""

    MATCH = 1
    EXEC = 2
    HELD = 3
    CGROUP_NEW = 4
    CGROUP_GONE = 5


PATH_LEN = 252
NAME_LEN = 64
LONG_PATH_LEN = 4096
MAX_HITS = 8
COMM_LEN = 16
MAX_CGROUPS = 16384
MAX_NAME_ENTRIES = 65536
MAX_PATH_ENTRIES = 65536
MAX_COUNTERS = 65536
MAX_HELD = 4096
SET_PENDING = 0xFFFFFFFF
RINGBUF_PAGES = 64
CONFIG_KEY = 0

# Set ids are u32 in the maps, policy/rule/target ids u16 in a hit.
MAX_ID16 = 0xFFFF
NO_SET = 0
