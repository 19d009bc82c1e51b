"""Exclusive flocks that say one process is the only one doing something.

The kernel lets go of a flock when its file descriptor closes, so a daemon
that dies, however it dies, leaves nothing locked behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(path: Path, *, directory: bool = False) -> int | None:
    """Locks `path` (a directory, or a file made if missing): its fd, or None if taken.

    The lock lasts until the fd is closed or the process exits.
    """
    if directory:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
