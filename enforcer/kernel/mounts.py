"""The mount table as /proc/self/mounts prints it, read in one place.

The kernel writes a space, tab, newline or backslash in a mount's source or
target as a three-digit octal escape (`\\040` for a space): every field is
unescaped here, so a mount point with a space compares equal to its path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROC_MOUNTS = Path("/proc/self/mounts")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    source: str
    target: Path
    fstype: str


def unescape(field: str) -> str:
    """A field of the mount table as the path or name it stands for."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(text: str | None = None) -> list[Mount]:
    """The mounts, in the table's order (the last one on a target is on top).

    From /proc/self/mounts, or from `text` in that format.
    """
    table = PROC_MOUNTS.read_text() if text is None else text
    found = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            found.append(Mount(unescape(fields[0]), Path(unescape(fields[1])), fields[2]))
    return found


def first_mount_of(fstype: str, text: str | None = None) -> Path | None:
    """Where `fstype` is mounted first (the mount the host made at boot), or None."""
    return next((m.target for m in read_mounts(text) if m.fstype == fstype), None)


def is_mounted(target: Path, fstype: str, text: str | None = None) -> bool:
    """Whether `fstype` is what `target` shows: the last mount there is the one on top.

    A mount point alone is not enough: a pod's bind mount of the node's
    empty /sys/kernel/tracing is one, with no tracefs in it.
    """
    on_target = [m.fstype for m in read_mounts(text) if m.target == target]
    return bool(on_target) and on_target[-1] == fstype
