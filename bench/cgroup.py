"""A cgroup v2 directory of the benchmark's own, removed when it is done."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from enforcer.containers.cgroup import find_cgroup2_mount

RMDIR_ATTEMPTS = 50


@contextmanager
def bench_cgroup() -> Iterator[tuple[Path, int]]:
    """(path, cgroup id) of a new, empty cgroup; the id is what BPF sees for its tasks."""
    path = find_cgroup2_mount() / f"enforcer-bench-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path, path.stat().st_ino
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    # The last task may take a moment to leave after it was reaped.
    for _ in range(RMDIR_ATTEMPTS):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
    path.rmdir()
