"""Floods from inside a container, and full maps: nothing fails open, no one waits forever.

Each test drives the real daemon and the real kernel: cgroups made in a real
runc container's cgroup, execs held while the daemon is stopped (SIGSTOP, so
only the kernel decides), the pinned held map filled to the brim.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import secrets
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RunningDaemon, host_policy, start_daemon
from runc_helpers import runc_container
from test_service import WATCHDOG_USEC, NotifySocket

from enforcer.bpf import abi
from enforcer.bpf.maps import open_pinned
from enforcer.containers import cgroup_v2_path_of_pid, find_cgroup2_mount
from tests.support.policies import ALL_CONTAINERS, container_ids, exec_policy, rule, write_policy

pytestmark = [pytest.mark.root, pytest.mark.runc]

KILLED = -signal.SIGKILL
DECIDED_TIMEOUT_S = 15.0

SECOND_RULE = """\
    - name: also-forbidden
      match:
        names: [enforcer-test-never-run]
"""


@contextmanager
def daemon_stopped(daemon: RunningDaemon) -> Iterator[None]:
    """The daemon frozen (SIGSTOP): what happens meanwhile is the kernel's doing alone."""
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        daemon.process.send_signal(signal.SIGCONT)


def exec_in_cgroup(cgroup: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """A host process that joins `cgroup` and then execs `argv`."""
    script = f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"'
    return subprocess.Popen(["/bin/sh", "-c", script, "sh", *argv], stdout=subprocess.DEVNULL)


def ended(process: subprocess.Popen[bytes]) -> int:
    """How the process ended; fails the test if it is still stopped or running."""
    try:
        return process.wait(DECIDED_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        state = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0]
        process.kill()
        process.wait()
        raise AssertionError(f"pid {process.pid} not decided within {DECIDED_TIMEOUT_S} s "
                             f"(state {state})") from None  # fmt: skip


def remove_cgroups(cgroups: list[Path]) -> None:
    for path in reversed(cgroups):
        with suppress(FileNotFoundError):
            path.rmdir()


@dataclass(frozen=True)
class Selected:
    """A running runc container, a daemon whose policy selects it, and its cgroup."""

    daemon: RunningDaemon
    cgroup: Path


@pytest.fixture
def selected(tmp_path: Path, program: Path) -> Iterator[Selected]:
    """The container's policy names `program`; the daemon must stop cleanly after."""
    with runc_container(tmp_path) as container:
        policies = tmp_path / "policies"
        forbidden = rule("forbidden", names=[program.name])
        policy = exec_policy("flood-container", container_ids(container.id), [forbidden])
        write_policy(policies, "flood.yaml", policy)
        daemon = start_daemon(policies, tmp_path)
        own = find_cgroup2_mount() / cgroup_v2_path_of_pid(container.pid).lstrip("/")
        try:
            yield Selected(daemon, own)
        finally:
            assert daemon.stop() == 0, daemon.log.read_text()


def test_a_cgroup_made_inside_a_selected_container_is_under_its_policies_at_mkdir(
    tmp_path: Path, program: Path, selected: Selected
) -> None:
    child = selected.cgroup / f"made-inside-{secrets.token_hex(4)}"
    try:
        # Frozen, the daemon cannot classify the new cgroup: the kernel's
        # entry, inherited at mkdir, is all there is. A pending cgroup
        # would hold the exec stopped until the timeout instead.
        with daemon_stopped(selected.daemon):
            child.mkdir()
            named = exec_in_cgroup(child, [str(program), str(tmp_path / "ran")])
            assert ended(named) == KILLED
            assert not (tmp_path / "ran").exists()
            unnamed = exec_in_cgroup(child, ["/bin/true"])
            assert ended(unnamed) == 0
        # A policy change recompiles every entry: the new cgroup's is kept.
        selected.daemon.wait_for_status(lambda s: s["classify_queued"] == 0, timeout_s=30)
        policy = tmp_path / "policies" / "flood.yaml"
        policy.write_text(policy.read_text() + SECOND_RULE)
        selected.daemon.wait_for_status(lambda s: s["policies"][0]["rules"] == 2, timeout_s=30)
        again = exec_in_cgroup(child, [str(program), str(tmp_path / "ran")])
        assert ended(again) == KILLED
        assert not (tmp_path / "ran").exists()
    finally:
        remove_cgroups([child])


def test_a_full_cgroup_map_fails_closed_inside_the_container_and_is_reported(
    tmp_path: Path, program: Path, selected: Selected
) -> None:
    own = selected.cgroup
    made: list[Path] = []
    try:
        for n in range(abi.MAX_CGROUPS):  # as a container with a writable cgroupfs can
            made.append(own / f"flood-{n}")
            made[-1].mkdir()
        last = own / "after-the-flood"
        last.mkdir()
        made.append(last)
        status = selected.daemon.wait_for_status(
            lambda s: s["full_maps"]["cgroups_unplaced"] > 0, timeout_s=30
        )
        assert status["enforcing"]
        ran = tmp_path / "ran"
        assert ended(exec_in_cgroup(last, [str(program), str(ran)])) == KILLED
        assert not ran.exists()
        assert ended(exec_in_cgroup(last, ["/bin/true"])) == 0
        # The host, which no policy selects, is untouched.
        host = subprocess.run([str(program), str(ran)], timeout=10, check=False)
        assert host.returncode == 0 and ran.exists()
        shown = selected.daemon.cli("status")
        assert "cgroups_unplaced" in shown.stderr, shown
    finally:
        remove_cgroups(made)


def fill_held(held_map: Path, count: int) -> None:
    """Parks `count` execs of processes that cannot exist, as the kernel would."""
    with closing(open_pinned(held_map, ctypes.c_uint32)) as held:
        value = held.Leaf()
        struct.pack_into("=I", value, 24, abi.SET_PENDING)  # held_exec.set_id
        for n in range(count):
            held[ctypes.c_uint32(0x7FFF0000 + n)] = value  # above any pid_max


def test_with_the_held_map_full_every_held_exec_is_still_decided(
    tmp_path: Path, program: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "host.yaml").write_text(host_policy(program))
    daemon = start_daemon(policies, tmp_path)
    assert daemon.pin_dir is not None
    new_cgroup = find_cgroup2_mount() / f"enforcer-test-{secrets.token_hex(4)}"
    try:
        with daemon_stopped(daemon):
            fill_held(daemon.pin_dir / abi.HELD_PIN, abi.MAX_HELD)
            new_cgroup.mkdir()  # pending: a new host cgroup, no daemon has seen it
            named = exec_in_cgroup(new_cgroup, [str(program)])
            unnamed = exec_in_cgroup(new_cgroup, ["/bin/true"])
            time.sleep(0.5)  # both held, stopped, with no room in the held map
        assert ended(named) == KILLED
        assert ended(unnamed) == 0
        status = daemon.ask("status")
        assert status["full_maps"]["held_unstored"] >= 2
        assert status["full_maps"]["held_lost"] == 0
    finally:
        remove_cgroups([new_cgroup])
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_mkdir_rmdir_loop_leaves_the_classify_queue_bounded(
    tmp_path: Path, program: Path, selected: Selected
) -> None:
    host_tree = find_cgroup2_mount() / f"enforcer-test-{secrets.token_hex(4)}"
    host_tree.mkdir()
    child = selected.cgroup / "after-the-churn"
    try:
        deadline = time.monotonic() + 5
        loops = 0
        while time.monotonic() < deadline:
            for parent in (selected.cgroup, host_tree):
                path = parent / f"churn-{loops % 4}"
                path.mkdir()
                path.rmdir()
            loops += 1
        status = selected.daemon.wait_for_status(lambda s: s["classify_queued"] == 0, timeout_s=30)
        assert status["enforcing"]
        print(f"{loops * 2} mkdir/rmdir pairs in 5 s")
        child.mkdir()
        ran = tmp_path / "ran"
        assert ended(exec_in_cgroup(child, [str(program), str(ran)])) == KILLED
        assert not ran.exists()
    finally:
        remove_cgroups([child, host_tree])


def test_an_exec_storm_never_starves_the_watchdog(
    tmp_path: Path, program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "host.yaml").write_text(host_policy(program))
    daemon = start_daemon(policies, tmp_path)
    keepalives: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            received = notify.receive(0.2)
            if received is not None and received[1].get("WATCHDOG") == "1":
                keepalives.append(time.monotonic())

    listener = threading.Thread(target=listen)
    listener.start()
    # Every exec is killed and reported: the event buffer is never empty.
    storm = [
        subprocess.Popen(
            ["/bin/sh", "-c", f'while :; do "{program}"; done'], stderr=subprocess.DEVNULL
        )
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        started = time.monotonic()
        time.sleep(10)
        status = daemon.ask("status")
        assert status["enforcing"]
    finally:
        for loop in storm:
            loop.kill()
            loop.wait()
        stop.set()
        listener.join()
        notify.close()
        assert daemon.stop() == 0, daemon.log.read_text()
    during = [started, *(t for t in keepalives if t >= started)]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    print(f"{len(gaps)} keep-alives in 10 s of storm, largest gap {max(gaps):.3f} s, "
          f"{status['event_drops']} events dropped")  # fmt: skip
    assert len(gaps) >= 5
    assert max(gaps) < WATCHDOG_USEC / 1e6


def test_a_cgroup_in_a_runtime_tree_that_names_no_container_fails_closed(
    tmp_path: Path, program: Path
) -> None:
    policies = tmp_path / "policies"
    forbidden = rule("forbidden", names=[program.name])
    write_policy(policies, "all.yaml", exec_policy("every-container", ALL_CONTAINERS, [forbidden]))
    tree = find_cgroup2_mount() / "libpod_parent"  # podman's, with the cgroupfs manager
    made_tree = not tree.exists()
    tree.mkdir(exist_ok=True)
    odd = tree / f"enforcer-test-{secrets.token_hex(4)}"
    daemon = start_daemon(policies, tmp_path)
    try:
        odd.mkdir()
        ran = tmp_path / "ran"
        assert ended(exec_in_cgroup(odd, [str(program), str(ran)])) == KILLED
        assert not ran.exists()
        assert ended(exec_in_cgroup(odd, ["/bin/true"])) == 0
        listed = {c["id"]: c for c in daemon.ask("containers")["containers"]}
        expected = f"unidentified:/libpod_parent/{odd.name}"
        assert listed[expected]["policies"] == ["every-container"]
        # The host stays the host.
        assert subprocess.run([str(program), str(ran)], timeout=10, check=False).returncode == 0
    finally:
        remove_cgroups([odd, *([tree] if made_tree else [])])
        assert daemon.stop() == 0, daemon.log.read_text()
