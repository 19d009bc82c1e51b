"""`enforcer run` in a child process: started, waited for until it enforces, stopped.

The integration tests' RunningDaemon (tests/integration/conftest.py) and the
benchmarks' daemon (bench/daemon.py) both start theirs here; each passes the
options it wants (pins and state of its own, a backend, a cache).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.errors import DaemonUnavailableError
from enforcer.service.control import request
from tests.support.wait import eventually


@dataclass
class DaemonProcess:
    """`enforcer run` in a child process, with its socket and its log (stdout and stderr)."""

    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, command: str) -> Any:
        """The daemon's answer to `command` on its control socket."""
        return request(self.socket, command)

    def wait_enforcing(self, timeout_s: float, interval_s: float) -> None:
        """Returns once `status` says enforcing; AssertionError if it exits or is too slow."""
        eventually(
            self._enforcing,
            timeout_s,
            what=f"`enforcer run` enforcing (its log: {self.log})",
            ignoring=(DaemonUnavailableError,),
            interval=interval_s,
        )

    def _enforcing(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"`enforcer run` exited with {self.process.returncode} (its log: {self.log})"
            )
        return bool(self.ask("status")["enforcing"])

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, SIGKILL if it has not exited within `timeout_s`; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def spawn(
    policies: Path,
    socket: Path,
    log: Path,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> DaemonProcess:
    """Starts `enforcer run --policies POLICIES --socket SOCKET OPTIONS...`, logging to `log`.

    Returns at once: call `wait_enforcing` for the daemon to be ready.
    """
    argv = [sys.executable, "-m", "enforcer", "run", "--policies", str(policies)]
    argv += ["--socket", str(socket), *options]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    return DaemonProcess(process, socket, log)
