"""Watch the policy paths with inotify and ask for a reload when they change.

Covers what operators and tools do to a policy directory: files added,
changed, removed and renamed, editors writing a temporary file and renaming
it over the old one, and Kubernetes ConfigMap volumes, which swap a `..data`
symlink atomically. Bursts of events (an editor's save is several) are
coalesced: the reload runs once the directory has been quiet for a moment.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)

# Quiet time before reloading, and the most a burst may delay it: together
# they keep a change enforced well within 100 ms.
SETTLE_MS = 15
MAX_DELAY_MS = 60
WATCHED = (
    flags.CREATE
    | flags.DELETE
    | flags.MOVED_TO
    | flags.MOVED_FROM
    | flags.CLOSE_WRITE
    | flags.ATTRIB
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)


class PolicyWatcher:
    """Calls `on_change` from its own thread after the watched paths change."""

    def __init__(self, paths: Iterable[Path], on_change: Callable[[], object]) -> None:
        self._on_change = on_change
        self._inotify = INotify()
        self._stop_r, self._stop_w = os.pipe()
        for directory in _directories(paths):
            self._inotify.add_watch(str(directory), WATCHED)
            log.info("watching %s for policy changes", directory)
        self._thread = threading.Thread(target=self._run, name="policy-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        self._inotify.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self) -> None:
        while self._wait(timeout_ms=None) is _Wait.EVENTS:
            budget = MAX_DELAY_MS
            while budget > 0:
                outcome = self._wait(timeout_ms=SETTLE_MS)
                if outcome is _Wait.STOP:
                    return
                if outcome is _Wait.QUIET:
                    break
                budget -= SETTLE_MS
            try:
                self._on_change()
            except Exception:
                log.exception("reloading policies after a change failed")

    def _wait(self, timeout_ms: int | None) -> _Wait:
        """Waits for inotify events and drains them."""
        timeout = None if timeout_ms is None else timeout_ms / 1000
        ready, _, _ = select.select([self._inotify.fileno(), self._stop_r], [], [], timeout)
        if self._stop_r in ready:
            return _Wait.STOP
        if not ready:
            return _Wait.QUIET
        for event in self._inotify.read(timeout=0):
            log.debug("policy path event: %s", event)
        return _Wait.EVENTS


class _Wait(Enum):
    EVENTS = 1
    QUIET = 2
    STOP = 3


def _directories(paths: Iterable[Path]) -> list[Path]:
    """The directories to watch: each policy directory, or a named file's directory."""
    result = []
    for path in paths:
        directory = path if path.is_dir() else path.parent
        if directory.is_dir():
            result.append(directory)
        else:
            log.warning("policy path %s does not exist: not watched", path)
    return list(dict.fromkeys(result))
