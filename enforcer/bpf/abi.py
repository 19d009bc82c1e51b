"""Python's mirror of the enums and sizes in bpf/enforcer.h.

Map key and value layouts come from bcc's generated ctypes; only the numbers
Python computes with are repeated here. tests/unit/bpf/test_abi.py checks that
they match the header.
"""

from __future__ import annotations

import sysconfig
from enum import IntEnum, IntFlag
from pathlib import Path


def _bpf_dir() -> Path:
    """bpf/ of the source tree (an editable install), else the copy a wheel installed.

    pyproject.toml ships bpf/ as data files: `<prefix>/share/enforcer/bpf`,
    e.g. /opt/enforcer/venv/share/enforcer/bpf after `make install`.
    """
    candidates = (
        Path(__file__).resolve().parents[2] / "bpf",
        Path(sysconfig.get_path("data")) / "share" / "enforcer" / "bpf",
    )
    for candidate in candidates:
        if (candidate / "enforcer.h").is_file():
            return candidate
    return candidates[0]


BPF_DIR = _bpf_dir()
HEADER = BPF_DIR / "enforcer.h"


class Action(IntEnum):
    """What a matching rule does to the exec (enum action)."""

    AUDIT = 1
    KILL = 2
    DENY = 3  # execve fails with EPERM (lsm backend); a kill elsewhere
    ALLOW = 4  # names the exec for its policy's default; does nothing itself


class EventKind(IntEnum):
    """Why the kernel sent an event (enum event_kind)."""

    MATCH = 1
    EXEC = 2
    HELD = 3
    CGROUP_NEW = 4
    CGROUP_GONE = 5


class SetFlag(IntFlag):
    """Which lookups a policy set has entries for (cgroup_value.flags, SET_*)."""

    NAMES = 1
    PATHS = 2
    INODES = 4
    HOLD_SCRIPTS = 8
    DEFAULTS = 16
    CALLERS = 32


class CallerFlag(IntFlag):
    """What the kernel read of the program that called exec (caller_info.flags, CALLER_*)."""

    KNOWN = 1
    PATH_CUT = 2


class ExecFlag(IntFlag):
    """What the kernel says of an exec's file (EXEC_* in events and held execs)."""

    PATH_CUT = 1
    SCRIPT = 2
    FILE_UNREAD = 4
    UNSTORED = 8


PATH_LEN = 252
NAME_LEN = 64
LONG_PATH_LEN = 4096
MAX_HITS = 8
MAX_EXEC_HITS = 16
MAX_DEFERRED = 8
WALK_STEPS = 64
WALK_BUF = 4096
COMM_LEN = 16
MAX_ARGS = 6
ARG_LEN = 64
MATCH_ARGS = 32
ARG_KEY_LEN = 64
ARG_SKIP_MAX = 32822
MAX_CONDITIONS = 64
MAX_CALLER_ENTRIES = 16384
MAX_ARG_ENTRIES = 16384
MAX_CGROUPS = 16384
MAX_NAME_ENTRIES = 65536
MAX_PATH_ENTRIES = 65536
MAX_COUNTERS = 65536
MAX_HELD = 4096
SET_PENDING = 0xFFFFFFFF
RINGBUF_PAGES = 64
CONFIG_KEY = 0
LIVE_GENERATION = 0
LIVE_HOLD_UNTIL = 1
LIVE_UNHELD = 2
LIVE_SLOTS = 3
FULL_CGROUPS = 0
FULL_HELD = 1
FULL_COUNTERS = 2
HELD_LOST = 3
FULL_SLOTS = 4
MAX_CGROUP_LEVELS = 32
MAX_DEFAULTS = 8
COUNTED_BY_DAEMON = 256

HELD_PIN = "held-3"
# Pin names the held map had in older layouts: what they still hold is let go.
LEGACY_HELD_PINS = ("held", "held-2")

# Set ids are u32 in the maps, policy/rule/target ids u16 in a hit.
MAX_ID16 = 0xFFFF
NO_SET = 0
