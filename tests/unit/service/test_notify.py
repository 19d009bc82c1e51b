"""The sd_notify protocol, against a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.service.notify import Notifier

RECEIVE_TIMEOUT_S = 2.0


class FakeManager:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as it would appear in $NOTIFY_SOCKET

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[FakeManager]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = tmp_path / "notify"
        sock.bind(str(path))
        sock.settimeout(RECEIVE_TIMEOUT_S)
        yield FakeManager(sock, str(path))


@pytest.fixture
def abstract_manager() -> Iterator[FakeManager]:
    name = f"enforcer-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECEIVE_TIMEOUT_S)
        yield FakeManager(sock, "@" + name)


def test_ready_says_ready_status_and_main_pid(manager: FakeManager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": manager.address})
    notifier.ready("enforcing 3 policies")
    assert manager.receive() == {
        "READY": "1",
        "STATUS": "enforcing 3 policies",
        "MAINPID": str(os.getpid()),
    }


def test_abstract_socket_name_with_at_sign(abstract_manager: FakeManager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": abstract_manager.address})
    notifier.status("loading")
    assert abstract_manager.receive() == {"STATUS": "loading"}


def test_each_message(manager: FakeManager) -> None:
    notifier = Notifier(manager.address)
    notifier.stopping()
    assert manager.receive() == {"STOPPING": "1"}
    notifier.watchdog()
    assert manager.receive() == {"WATCHDOG": "1"}
    notifier.status("reloading policies")
    assert manager.receive() == {"STATUS": "reloading policies"}


def test_reloading_carries_the_monotonic_clock(manager: FakeManager) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(manager.address).reloading()
    message = manager.receive()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_a_newline_in_a_status_cannot_inject_an_assignment(manager: FakeManager) -> None:
    Notifier(manager.address).status("bad file\nREADY=1")
    assert manager.receive() == {"STATUS": "bad file READY=1"}


def test_without_notify_socket_every_call_is_a_no_op(manager: FakeManager) -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    notifier.ready("enforcing")
    notifier.status("x")
    notifier.reloading()
    notifier.watchdog()
    notifier.stopping()
    assert notifier.send("READY=1") is False
    assert manager.nothing_pending()


def test_a_vanished_manager_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.enabled
    notifier.ready("enforcing")
    notifier.watchdog()
    assert notifier.send("WATCHDOG=1") is False
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1


def test_an_unsupported_address_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "only unix socket paths" in caplog.text


def test_from_environment_removes_the_variables_so_children_do_not_inherit_them(
    manager: FakeManager,
) -> None:
    env = {
        "NOTIFY_SOCKET": manager.address,
        "WATCHDOG_USEC": "10000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    Notifier.from_environment(env)
    assert env == {"PATH": "/usr/bin"}


def test_from_environment_defaults_to_the_process_environment(
    manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    notifier = Notifier.from_environment()
    assert "NOTIFY_SOCKET" not in os.environ
    assert "WATCHDOG_USEC" not in os.environ
    assert notifier.watchdog_interval() == 2.0
    notifier.watchdog()
    assert manager.receive() == {"WATCHDOG": "1"}


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten seconds"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_when_meant_for_us(
    env: dict[str, str], interval: float | None
) -> None:
    assert Notifier.from_environment({"NOTIFY_SOCKET": "@x", **env}).watchdog_interval() == interval


def test_messages_come_from_this_process(manager: FakeManager) -> None:
    """systemd's NotifyAccess=main checks the sender's pid from the kernel's credentials."""
    manager.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    Notifier(manager.address).watchdog()
    _data, ancillary, _flags, _addr = manager.sock.recvmsg(4096, socket.CMSG_SPACE(12))
    level, kind, creds = ancillary[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    assert int.from_bytes(creds[:4], "little") == os.getpid()
