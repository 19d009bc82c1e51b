"""Allowed files that their own container can change: where an allowlist protects nothing.

An allow rule names a file by its path and inode. A container that can
write that file in place (`cp nc /usr/local/bin/api` keeps the inode), or
add files below an allowed directory, runs what it likes under the allowed
name. `enforcer status` warns about each such path; the fix is a read-only
root filesystem.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from enforcer.containers.model import Container
from enforcer.enforce.resolve import ResolveError, resolve_in_root
from enforcer.policy.model import ExecPolicy, RuleAction

# The most warnings one status lists (each names policy, container and path).
MAX_WARNINGS = 50


def writable_allowed(
    policy: ExecPolicy, containers: Sequence[Container], selected: Iterable[str]
) -> list[str]:
    """A warning for each allowed path or dir that a selected container can write."""
    allowed = [
        (target, is_dir)
        for rule in policy.spec.rules
        if rule.action is RuleAction.ALLOW
        for target, is_dir in (*((p, False) for p in rule.match.paths),
                               *((d, True) for d in rule.match.dirs))
    ]  # fmt: skip
    if not allowed:
        return []
    wanted = set(selected)
    warnings: list[str] = []
    for container in containers:
        if container.id not in wanted or container.pid is None:
            continue
        uid = _container_uid(container.pid)
        for target, is_dir in allowed:
            if _writable(container.pid, target, uid):
                what = "directory" if is_dir else "file"
                warnings.append(
                    f"policy {policy.name} allows {target} in container {container.short_id}, "
                    f"and the container can write that {what} in place: run the container with "
                    "a read-only root filesystem (podman run --read-only, "
                    "readOnlyRootFilesystem: true)"
                )
    return warnings[:MAX_WARNINGS]


def _writable(pid: int, target: str, uid: int | None) -> bool:
    root = f"/proc/{pid}/root"
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        resolved = resolve_in_root(root_fd, target.rstrip("/") or "/", "/")
        inside = Path(root) / resolved.canonical.lstrip("/")
        stat = os.stat(inside)
        if os.statvfs(inside).f_flag & os.ST_RDONLY:
            return False
    except (OSError, ResolveError):
        return False
    finally:
        os.close(root_fd)
    if uid is None or uid == 0:
        return True  # root in the container (and so, in its root filesystem)
    if stat.st_uid == uid:
        return bool(stat.st_mode & 0o200)
    return bool(stat.st_mode & 0o022)  # its group may be the container user's


def _container_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])  # effective
    except (OSError, ValueError, IndexError):
        return None
    return None
