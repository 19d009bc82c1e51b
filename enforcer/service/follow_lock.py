"""Only one enforcer at a time may hold new cgroups' execs.

Each instance's kernel program would stop such an exec, and each would let
go of it with SIGCONT by its own policies: one instance's SIGCONT would
release what another still holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from enforcer.service.locks import try_lock

log = logging.getLogger(__name__)

FOLLOW_LOCK = Path("/run/enforcer/follow.lock")


def follow_lock() -> int | None:
    """The lock's fd while this process may hold new cgroups' execs; None if another may."""
    FOLLOW_LOCK.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    lock = try_lock(FOLLOW_LOCK)
    if lock is None:
        log.warning(
            "another enforcer follows new containers (it holds %s): this one enforces only "
            "containers it has seen start, and a new container's first execs may escape it",
            FOLLOW_LOCK,
        )
    return lock
