"""Refuse policy files that anyone but root could have changed (like sshd's StrictModes).

A policy decides what gets killed: if another user could write it, that user
could turn enforcement off or make it kill what it should not. Checked: the
file itself, the directory it is in, and, for a symlink (a Kubernetes
ConfigMap volume is made of them), the file and directory it resolves to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def unsafe_reason(path: Path) -> str | None:
    """Why a policy file or directory must not be trusted; None if only root can change it."""
    resolved = path.resolve()
    if resolved.is_dir():
        return _first_problem([path, resolved], sticky_ok=False)
    # A sticky directory (such as /tmp) lets no one else replace a root-owned
    # file in it, so a single named file may live there; a policy directory may not.
    return _first_problem([path, resolved], sticky_ok=False) or _first_problem(
        [path.parent, resolved.parent], sticky_ok=True
    )


def _first_problem(paths: list[Path], *, sticky_ok: bool) -> str | None:
    for path in dict.fromkeys(paths):
        reason = _owner_or_mode_problem(path, sticky_ok)
        if reason is not None:
            return reason
    return None


def _owner_or_mode_problem(path: Path, sticky_ok: bool) -> str | None:
    info = os.stat(path)
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    if info.st_uid != 0:
        return (
            f"refusing policies: {kind} {path} is owned by uid {info.st_uid}, not root; "
            f"only root may be able to change policies (chown root {path})"
        )
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        who = [name for bit, name in WRITERS if writable & bit]
        return (
            f"refusing policies: {kind} {path} is writable by {' and '.join(who)} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod go-w {path}"
        )
    return None


WRITERS = ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "everyone"))
