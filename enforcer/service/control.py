"""The control socket: the daemon answers, the CLI asks.

One JSON object per line each way: {"command": "stats"} ->
{"ok": true, "result": {...}} or {"ok": false, "error": "..."}. The results
are the models of service/protocol.py; a stream sends one reply per item.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from enforcer.errors import DaemonUnavailableError, EnforcerError
from enforcer.service.protocol import JsonObject, parse

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/run/enforcer/enforcer.sock")
CONTROL_GROUP = "enforcer"
MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")
# A command's name and arguments -> its reply, or an iterator of replies (a stream).
Handler = Callable[[str, JsonObject], JsonObject | Iterator[JsonObject]]


class UnknownCommandError(EnforcerError):
    """Raised by a handler for a command the daemon does not know."""


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handle_command: Handler


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            request = json.loads(line)
            command = str(request.pop("command"))
            result = self.server.handle_command(command, request)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self._send({"ok": False, "error": f"malformed request: {e}"})
            return
        except EnforcerError as e:
            self._send({"ok": False, "error": str(e)})
            return
        if not isinstance(result, Iterator):
            self._send({"ok": True, "result": result})
            return
        try:  # a stream: one reply per item until the client goes away
            for item in result:
                self._send({"ok": True, "result": item})
        except (BrokenPipeError, ConnectionResetError):
            return

    def _send(self, reply: dict[str, object]) -> None:
        self.wfile.write(json.dumps(reply).encode() + b"\n")
        self.wfile.flush()


class ControlServer:
    """Serves requests on a unix socket from a background thread."""

    def __init__(self, path: Path, handle_command: Handler) -> None:
        self.path = path
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()  # left by a daemon that did not shut down cleanly
        self._server = _Server(str(path), _RequestHandler)
        self._server.handle_command = handle_command
        _restrict(path)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("control socket listening on %s", self.path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def _restrict(path: Path) -> None:
    """Root, and members of group `enforcer` if it exists, may connect."""
    try:
        gid = grp.getgrnam(CONTROL_GROUP).gr_gid
    except KeyError:
        gid = 0
    for target in (path.parent, path):
        os.chown(target, 0, gid)
    os.chmod(path.parent, 0o750)
    os.chmod(path, 0o660)


def ask(path: Path, command: str, reply: type[T], **arguments: object) -> T:
    """Sends one command to the daemon and returns its result as a `reply` model."""
    return parse(reply, request(path, command, **arguments))


def ask_stream(path: Path, command: str, item: type[T], **arguments: object) -> Iterator[T]:
    """Sends one command and yields each result as an `item` model, until the daemon hangs up."""
    for result in stream(path, command, None, **arguments):
        yield parse(item, result)


def request(path: Path, command: str, **arguments: object) -> Any:
    """Sends one command to the daemon and returns its result, decoded JSON (for scripts)."""
    for result in stream(path, command, timeout=CLIENT_TIMEOUT_SECONDS, **arguments):
        return result
    raise DaemonUnavailableError(f"the daemon on {path} hung up without answering '{command}'")


def stream(
    path: Path, command: str, timeout: float | None = None, **arguments: object
) -> Iterator[Any]:
    """Sends one command and yields each result the daemon sends back, until it hangs up."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(json.dumps({"command": command, **arguments}).encode() + b"\n")
            for line in conn.makefile("rb"):
                yield _result(json.loads(line), command)
    except PermissionError as e:
        raise DaemonUnavailableError(
            f"permission denied on {path}: only root and members of group '{CONTROL_GROUP}' "
            f"may talk to the daemon (use sudo, or `usermod -aG {CONTROL_GROUP} $USER`)"
        ) from e
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise DaemonUnavailableError(
            f"the enforcer daemon is not running (no one listens on {path}); start it with "
            "`enforcer run` or `systemctl start enforcer`"
        ) from e
    except (OSError, ValueError) as e:
        raise DaemonUnavailableError(f"no valid answer from the daemon on {path}: {e}") from e


def _result(reply: object, command: str) -> object:
    if not isinstance(reply, dict):
        raise ValueError(f"expected a JSON object, got {reply!r}")
    if not reply.get("ok"):
        raise DaemonUnavailableError(f"the daemon refused '{command}': {reply.get('error')}")
    return reply["result"]
