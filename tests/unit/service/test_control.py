"""The control socket end to end: a real server on a unix socket, the real client."""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.errors import DaemonUnavailableError
from enforcer.service.control import ControlServer, UnknownCommandError, ask, request, stream
from enforcer.service.protocol import JsonObject, ProtocolError, ReloadReply

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server chowns its socket to root")


class Handler:
    """Answers `reload` and `ticks` (a stream); counts the ticks a client took."""

    def __init__(self) -> None:
        self.stream_ended = threading.Event()
        self.sent = 0

    def __call__(self, command: str, arguments: JsonObject) -> JsonObject | Iterator[JsonObject]:
        if command == "reload":
            return {"reloading": True}
        if command == "bad":
            raise ProtocolError("follow", "expected bool, got 'yes'")
        if command == "ticks":
            return self._ticks()
        raise UnknownCommandError(f"unknown command {command!r}; this daemon knows reload, ticks")

    def _ticks(self) -> Iterator[JsonObject]:
        try:
            for n in itertools.count():
                self.sent = n + 1
                yield {"tick": n}
        finally:
            self.stream_ended.set()


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def server(tmp_path: Path, handler: Handler) -> Iterator[ControlServer]:
    running = ControlServer(tmp_path / "run" / "enforcer.sock", handler)
    running.start()
    yield running
    running.close()


@needs_root
def test_a_reply_is_the_result(server: ControlServer) -> None:
    assert request(server.path, "reload") == {"reloading": True}
    assert ask(server.path, "reload", ReloadReply) == ReloadReply(reloading=True)


@needs_root
def test_an_error_reply_says_why(server: ControlServer) -> None:
    with pytest.raises(DaemonUnavailableError, match=r"refused 'nope'.*knows reload, ticks"):
        request(server.path, "nope")

    with pytest.raises(DaemonUnavailableError, match=r"refused 'bad'.*follow: expected bool"):
        request(server.path, "bad")


@needs_root
def test_a_reply_of_the_wrong_shape_is_refused_by_the_client(server: ControlServer) -> None:
    # The server answers `ticks` with {"tick": 0}: no ReloadReply.
    with pytest.raises(ProtocolError, match="unknown field 'tick'"):
        ask(server.path, "ticks", ReloadReply)


@needs_root
@pytest.mark.parametrize("line", [b"not json\n", b'["stats"]\n', b'{"follow": true}\n'])
def test_a_malformed_line_gets_an_error_reply(server: ControlServer, line: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(server.path))
        conn.sendall(line)
        answer = conn.makefile("rb").readline()

    assert answer.startswith(b'{"ok": false, "error": "malformed request: ')


@needs_root
def test_a_stream_ends_when_the_client_leaves(server: ControlServer, handler: Handler) -> None:
    ticks = stream(server.path, "ticks", timeout=5)
    assert [next(ticks) for _ in range(3)] == [{"tick": 0}, {"tick": 1}, {"tick": 2}]

    ticks.close()  # the client hangs up

    assert handler.stream_ended.wait(5)
    assert handler.sent >= 3


def test_no_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailableError, match="enforcer run"):
        request(tmp_path / "nobody.sock", "status")


@needs_root
def test_the_socket_is_for_root_and_group_enforcer(server: ControlServer) -> None:
    assert server.path.stat().st_mode & 0o777 == 0o660
    assert server.path.parent.stat().st_mode & 0o777 == 0o750
