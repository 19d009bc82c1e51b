"""The namespaces a process is in, as the inode numbers `ls -Li /proc/PID/ns/*` shows."""

from __future__ import annotations

import os
from pathlib import Path


def namespace_inode(pid: int, kind: str, proc: Path = Path("/proc")) -> int | None:
    """Return the inode number of namespace `kind` ("pid", "net", ...) of a process.

    None when the process is gone or its namespaces cannot be read.
    """
    try:
        # stat follows the magic link to the namespace's nsfs inode.
        return os.stat(proc / str(pid) / "ns" / kind).st_ino
    except OSError:
        return None


def pid_and_net_namespaces(
    pid: int | None, proc: Path = Path("/proc")
) -> tuple[int | None, int | None]:
    """Return (pid namespace, network namespace) inode numbers of a process; Nones if unknown."""
    if pid is None:
        return None, None
    return namespace_inode(pid, "pid", proc), namespace_inode(pid, "net", proc)
