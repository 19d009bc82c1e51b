"""The mount table, and the kernel's filesystems enforcer reads: mounted where the boot did not.

The mount table as /proc/self/mounts prints it is read here, in one place.
The kernel writes a space, tab, newline or backslash in a mount's source or
target as a three-digit octal escape (`\\040` for a space): every field is
unescaped here, so a mount point with a space compares equal to its path.

bcc fixes its tracefs path at import time, which is why the mounts are made
(ensure_mounts) before bcc is imported.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from enforcer.errors import KernelSupportError

log = logging.getLogger(__name__)

PROC_MOUNTS = Path("/proc/self/mounts")
DEBUGFS = Path("/sys/kernel/debug")
TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
SECURITYFS = Path("/sys/kernel/security")
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


def ensure_mounts() -> None:
    """Mounts tracefs, debugfs and bpffs where the boot did not (as on minimal VMs).

    securityfs too, where it can be: it only tells which LSMs are active and
    the lockdown mode, and a kernel may lack it.
    """
    for fstype, target in (("debugfs", DEBUGFS), ("tracefs", TRACEFS), ("bpf", BPFFS)):
        if is_mounted(target, fstype):
            continue
        command = ["mount", "-t", fstype, fstype, str(target)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KernelSupportError(
                f"cannot mount {fstype} on {target}: {result.stderr.strip()}. "
                "Run as root, or mount it yourself before starting enforcer."
            )
        log.info("mounted %s on %s", fstype, target)
    if not is_mounted(SECURITYFS, "securityfs") and SECURITYFS.is_dir():
        command = ["mount", "-t", "securityfs", "securityfs", str(SECURITYFS)]
        if subprocess.run(command, capture_output=True, check=False).returncode == 0:
            log.info("mounted securityfs on %s", SECURITYFS)


def tracefs_root() -> Path:
    """The tracefs bcc will use: the one below debugfs first, as bcc does."""
    below_debugfs = DEBUGFS / "tracing"
    return below_debugfs if is_dir(below_debugfs / "events") else TRACEFS


def is_dir(path: Path) -> bool:
    """Path.is_dir, and False where a user may not look (tracefs is root's only)."""
    try:
        return path.is_dir()
    except PermissionError:
        return False


def exists(path: Path) -> bool:
    """Path.exists, and False where a user may not look."""
    try:
        return path.exists()
    except PermissionError:
        return False
