"""Refuse policy files that anyone but root could have changed (like sshd's StrictModes).

A policy decides what gets killed: if another user could write it, that user could turn
enforcement off or make it kill what it should not. Like sshd's `safe_path`, every directory
from the policy up to `/` is checked, since whoever can write a directory can rename what is
in it and put their own file or directory in its place. Checked, for the path as given and for
the path it resolves to (a Kubernetes ConfigMap volume is made of symlinks):

- the policy file, or the policy directory whose every file is read, and each directory above
  it: owned by root (or by the user enforcer runs as, as sshd also trusts the user), and not
  writable by its group or by everyone;
- each symlink on the way: owned by root or that user, who alone could replace it.

One exception, which sshd does not make: a directory above the policy may be writable by
others if it is sticky, as /tmp is (mode 1777). In a sticky directory only the owner of an
entry, the directory's owner or root may rename or remove that entry (see unlink(2) and
rename(2), EPERM), and the entry on the way is itself checked to be root's, so no one else can
swap it. Without the exception no checkout below /tmp could be checked or run (CI clones into
fresh folders there). The exception never covers the policy directory itself: there, anyone
could add a policy of their own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

WRITERS = ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "everyone"))


def unsafe_reason(path: Path) -> str | None:
    """Why a policy file or directory must not be trusted; None if only root can change it."""
    given = path.absolute()  # not normalised: '..' is resolved by the kernel, as it reads
    resolved = given.resolve()
    for check in (_chain_problem(given), _chain_problem(resolved), _policy_problem(resolved)):
        if check is not None:
            return check
    return None


def _policy_problem(resolved: Path) -> str | None:
    """The policy file or directory itself: trusted owner, writable by no one else."""
    info = os.stat(resolved)
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    return _owner_problem(resolved, info, kind) or _writable_problem(resolved, info, kind)


def _chain_problem(path: Path) -> str | None:
    """Each directory above `path` and each symlink on the way, `path` itself included."""
    for step in (*reversed(path.parents), path):
        info = os.lstat(step)
        if stat.S_ISLNK(info.st_mode):
            # A symlink's own mode means nothing; only its owner (or the directory's
            # writers, checked one step up) can replace it.
            if (reason := _owner_problem(step, info, "symlink")) is not None:
                return reason
        elif stat.S_ISDIR(info.st_mode) and step != path:
            reason = _owner_problem(step, info, "directory")
            if reason is None and not info.st_mode & stat.S_ISVTX:
                reason = _writable_problem(step, info, "directory")
            if reason is not None:
                return reason
    return None


def _owner_problem(path: Path, info: os.stat_result, kind: str) -> str | None:
    trusted = {0, os.geteuid()}
    if info.st_uid in trusted:
        return None
    whom = "root" if trusted == {0} else f"root or uid {os.geteuid()} (enforcer's user)"
    return (
        f"refusing policies: {kind} {path} is owned by uid {info.st_uid}, not {whom}; "
        f"only root may be able to change policies (chown root {path})"
    )


def _writable_problem(path: Path, info: os.stat_result, kind: str) -> str | None:
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable:
        return None
    who = [name for bit, name in WRITERS if writable & bit]
    return (
        f"refusing policies: {kind} {path} is writable by {' and '.join(who)} "
        f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod go-w {path}"
    )
