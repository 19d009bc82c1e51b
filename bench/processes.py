"""Stopping what the suite started: asked politely first, killed if it does not go."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], signum: int, timeout_s: float) -> None:
    """Sends `signum`, waits up to timeout_s, then SIGKILL; returns once the process is reaped."""
    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
