"""Tell systemd how the daemon is doing: the sd_notify protocol, with no dependency.

A service of `Type=notify` gets `$NOTIFY_SOCKET`, the address of a datagram
socket; each message is newline-separated `KEY=value` lines. `READY=1` ends
the start-up (the unit becomes active only then), `STATUS=` is shown by
`systemctl status`, `RELOADING=1` ... `READY=1` frames a reload, `STOPPING=1`
announces a shutdown and `WATCHDOG=1` is the keep-alive that `WatchdogSec=`
asks for. Outside systemd the variable is unset and every call does nothing,
so the daemon calls these unconditionally.

See sd_notify(3) and systemd.service(5).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


class Notifier:
    """Sends state changes to the service manager; a no-op when there is none.

    Never raises: a service manager that stopped listening is logged once, and
    the daemon goes on enforcing.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """`address` as in `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket)."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Reads `$NOTIFY_SOCKET` and the watchdog variables, then removes them.

        Removing them (as sd_notify's `unset_environment` does) keeps the
        programs the daemon runs, such as podman, from talking to systemd in
        its name. `environ` defaults to `os.environ`.
        """
        env = os.environ if environ is None else environ
        address = env.pop(NOTIFY_SOCKET, None)
        usec = env.pop(WATCHDOG_USEC, None)
        pid = env.pop(WATCHDOG_PID, None)
        return cls(address, _watchdog_usec(usec, pid))

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to tell."""
        return self._address is not None

    def ready(self, status: str) -> None:
        """Start-up or reload done: the daemon enforces from now on."""
        self.send(f"READY=1\nSTATUS={_one_line(status)}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """A one-line state for `systemctl status`."""
        self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        """A reload starts; `ready()` ends it.

        systemd 253+ (`Type=notify-reload`) wants the monotonic time with it;
        older versions ignore the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """The daemon is shutting down."""
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """The keep-alive: without one every `WatchdogSec`, systemd restarts the daemon."""
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half the watchdog timeout), or None when there is none."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, message: str) -> bool:
        """Sends one raw message; True when the service manager got it."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), self._address)
        except OSError as e:
            if not self._failed:
                log.warning("cannot notify the service manager on %r: %s", self._address, e)
            self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(address: str) -> str | bytes | None:
    """`@name` is an abstract socket: a leading NUL byte instead of the '@'."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    # systemd 254+ may also hand out vsock: addresses, for VMs; not a host daemon's case.
    log.warning("ignoring %s=%r: only unix socket paths and @names are supported",
                NOTIFY_SOCKET, address)  # fmt: skip
    return None


def _watchdog_usec(usec: str | None, pid: str | None) -> int | None:
    """The watchdog timeout, when it is set for this process (sd_watchdog_enabled)."""
    if usec is None:
        return None
    try:
        value = int(usec)
        if pid is not None and int(pid) != os.getpid():
            return None  # meant for a process that started us, not for us
    except ValueError:
        log.warning("ignoring malformed %s=%r or %s=%r", WATCHDOG_USEC, usec, WATCHDOG_PID, pid)
        return None
    return value if value > 0 else None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value assignment.
    return " ".join(text.splitlines())
