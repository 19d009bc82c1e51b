"""The control socket: who may use it, and the denial events it serves."""

from __future__ import annotations

import grp
import json
import queue
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningDaemon, host_policy, start_daemon

from tests.support.wait import eventually

pytestmark = pytest.mark.root

NOBODY = 65534
FOLLOW_TIMEOUT_S = 30.0


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A socket directory others can reach, as /run/enforcer is."""
    directory = Path(f"/run/enforcer-test-{secrets.token_hex(4)}")
    directory.mkdir(mode=0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemon(tmp_path: Path, program: Path, run_dir: Path) -> Iterator[RunningDaemon]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy(program, name="socket-test"))
    running = start_daemon(policies, tmp_path, socket=run_dir / "control" / "enforcer.sock")
    yield running
    running.stop()


def cli_as(uid: int, gid: int, groups: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        f"--groups={groups}" if groups else "--clear-groups",
    ]
    return subprocess.run(
        [*argv, sys.executable, "-m", "enforcer", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def first_event_line(daemon: RunningDaemon) -> str:
    """Events reach the daemon asynchronously: ask until the first one is there."""

    def listed() -> list[str]:
        return daemon.cli("events", "--json").stdout.splitlines()

    lines = eventually(listed, FOLLOW_TIMEOUT_S, what="an event in `enforcer events --json`")
    return lines[0]


def test_events_show_the_denial_with_its_arguments(daemon: RunningDaemon, program: Path) -> None:
    killed = subprocess.run([str(program), "/nonexistent/first", "second"], check=False)
    assert killed.returncode == -9
    listed = json.loads(first_event_line(daemon))
    assert (listed["policy"], listed["rule"], listed["action"]) == (
        "socket-test",
        "forbidden",
        "kill",
    )
    assert (listed["container_id"], listed["pid"]) == ("host", listed["pid"])
    assert listed["filename"] == str(program)
    assert listed["argv"][1:] == ["/nonexistent/first", "second"]
    assert str(program).startswith(listed["argv"][0])  # each argument is cut to ARG_LEN bytes


def test_events_follow_prints_each_new_denial(daemon: RunningDaemon, program: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "enforcer",
        "events",
        "--follow",
        "--json",
        "--socket",
        str(daemon.socket),
    ]
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in follower.stdout or ()], daemon=True
    )
    reader.start()
    try:
        for attempt in range(2):
            subprocess.run([str(program), f"/attempt-{attempt}"], check=False)
            event = json.loads(lines.get(timeout=FOLLOW_TIMEOUT_S))
            assert event["argv"][1] == f"/attempt-{attempt}"
    finally:
        follower.terminate()
        follower.wait(10)


def test_socket_refuses_a_user_outside_the_group(daemon: RunningDaemon) -> None:
    refused = cli_as(NOBODY, NOBODY, "", "status", "--socket", str(daemon.socket))
    assert refused.returncode == 2
    assert "permission denied" in refused.stderr
    assert "group 'enforcer'" in refused.stderr


@pytest.fixture
def enforcer_gid() -> Iterator[int]:
    """Group `enforcer` (as `make install` creates it); made for the test if missing."""
    try:
        yield grp.getgrnam("enforcer").gr_gid
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", "enforcer"], check=True)
    try:
        yield grp.getgrnam("enforcer").gr_gid
    finally:
        subprocess.run(["groupdel", "enforcer"], check=False)


def test_socket_admits_members_of_group_enforcer(
    enforcer_gid: int, tmp_path: Path, program: Path, run_dir: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy(program, name="socket-test"))
    daemon = start_daemon(policies, tmp_path, socket=run_dir / "control" / "enforcer.sock")
    try:
        member = cli_as(NOBODY, NOBODY, str(enforcer_gid), "status", "--socket", str(daemon.socket))
        assert member.returncode == 0, member.stderr
    finally:
        daemon.stop()
