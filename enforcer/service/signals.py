"""What signals ask of the daemon: SIGTERM and SIGINT stop it, SIGHUP reloads.

A handler only sets a flag: the main loop acts on it at its next turn
(within one poll timeout), outside the signal's context.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from types import FrameType


@dataclass
class Requests:
    """Set by the signal handlers (and the `reload` command), read by the main loop."""

    stop: bool = False
    reload: bool = False


def install(requests: Requests) -> None:
    """Makes SIGTERM and SIGINT request a stop, SIGHUP a reload."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        requests.stop = True

    def reload(signum: int, _frame: FrameType | None) -> None:
        requests.reload = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
