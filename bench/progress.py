"""One line to stderr per step, so a long run shows where it is."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} bench: {message}", file=sys.stderr, flush=True)
