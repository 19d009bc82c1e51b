"""Polling until something holds, and failing loudly when it does not in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# A poll a few times a second catches most changes within a test's patience
# without keeping a CPU busy; callers that time what they wait for ask for less.
DEFAULT_INTERVAL_S = 0.05


def _truthy(value: object) -> bool:
    return bool(value)


def eventually(
    probe: Callable[[], T],
    timeout: float,
    *,
    what: str,
    until: Callable[[T], bool] = _truthy,
    ignoring: tuple[type[Exception], ...] = (),
    interval: float = DEFAULT_INTERVAL_S,
) -> T:
    """Calls `probe` until `until` holds for what it returns, and returns that value.

    An exception of a type in `ignoring` counts as "not yet" (a socket not
    listening yet); any other propagates at once. At the deadline this raises
    AssertionError naming `what` it waited for and the last value (or
    exception) seen: it never returns without the condition holding.
    """
    deadline = time.monotonic() + timeout
    last: object = "nothing (no probe finished)"
    while True:
        try:
            value = probe()
        except ignoring as e:
            last = e
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}; last seen: {last!r}")
        time.sleep(interval)
