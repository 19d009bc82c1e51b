"""The namespaces a process is in, as the inode numbers `ls -Li /proc/PID/ns/*` shows."""

from __future__ import annotations

import os
from pathlib import Path

# The kernel's thread-making thread: always pid 2, in the initial namespaces.
KTHREADD_PID = 2


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


def host_mount_namespace() -> int:
    """The host's mount namespace: init's, else kthreadd's, else this process's own.

    A service runs in the host's; a DaemonSet pod sees init's (hostPID).
    Where init's namespaces are hidden (a VM's init may hide them), kernel
    threads still show the initial ones.
    """
    for pid in (1, KTHREADD_PID, os.getpid()):
        if inode := namespace_inode(pid, "mnt"):
            return inode
    return 0


def in_host_mount_namespace(pid: int) -> bool:
    """Whether a process still runs in the host's mount namespace.

    In a new container's cgroup that is the runtime's own work (runc
    re-executing itself before it makes the container's namespaces), never
    the container's: no policy default applies to it.
    """
    inode = namespace_inode(pid, "mnt")
    return inode is not None and inode == host_mount_namespace()
