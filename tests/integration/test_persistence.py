"""What outlives the daemon: pinned counters, and the program itself.

Counters are kept in a pinned map across restarts and crashes. The program's
links are pinned too, so the kernel goes on enforcing while no daemon runs,
and the next daemon takes over with no gap and nothing counted twice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningDaemon, host_policy, start_daemon

from enforcer.containers.cgroup import find_cgroup2_mount
from tests.support.wait import eventually

pytestmark = pytest.mark.root


def policy_dir(tmp_path: Path, program: Path, name: str) -> Path:
    """A policy directory with one host policy that names only `program`."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy(program, name=name))
    return policies


def blocked(daemon: RunningDaemon) -> int:
    return int(daemon.ask("stats")["policies"][0]["blocked"])


def kill_attempts(program: Path, times: int) -> None:
    for _ in range(times):
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == -9


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_counters_survive_a_restart(tmp_path: Path, program: Path, stop: str) -> None:
    policies = policy_dir(tmp_path, program, "persistent")
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    first = start_daemon(policies, tmp_path, pin_dir=pin_dir)
    second: RunningDaemon | None = None
    try:
        kill_attempts(program, 2)
        assert blocked(first) == 2
        if stop == "kill -9":
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
        else:
            assert first.stop(keep_pins=True) == 0
        second = start_daemon(policies, tmp_path, pin_dir=pin_dir)
        assert blocked(second) == 2
        kill_attempts(program, 1)
        assert blocked(second) == 3
    finally:
        first.stop(keep_pins=second is not None)
        if second is not None:
            second.stop()


# The program is left in the kernel when the daemon dies; it enforces alone
# until the next daemon takes over from it.


def pin_dir_for_test() -> Path:
    return Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")


def linked_generations(pin_dir: Path) -> list[str]:
    return sorted(p.name for p in pin_dir.glob("links-*"))


class AttemptLoop:
    """Runs `program` over and over on a thread, keeping how each run ended."""

    def __init__(self, program: Path) -> None:
        self.program = program
        self.endings: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ran = subprocess.run([str(self.program), "/dev/null"], check=False, timeout=10)
            self.endings.append(ran.returncode)
            time.sleep(0.005)

    def __enter__(self) -> AttemptLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("next_program", ["the same", "another"])
def test_enforcement_has_no_gap_across_kill_9_and_restart(
    tmp_path: Path, program: Path, next_program: str
) -> None:
    """The same program is reused as it is; another (an upgrade) takes over as generation 2."""
    policies = policy_dir(tmp_path, program, "no-gap")
    pin_dir = pin_dir_for_test()
    first = start_daemon(policies, tmp_path, pin_dir=pin_dir)
    second: RunningDaemon | None = None
    try:
        with AttemptLoop(program) as attempts:
            time.sleep(0.3)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            if next_program == "another":  # as an older version pinned it: no program key
                (pin_dir / "links-1" / "program-key").unlink()
            killed_at = len(attempts.endings)
            time.sleep(0.5)
            second = start_daemon(policies, tmp_path, pin_dir=pin_dir)
            during_restart = len(attempts.endings) - killed_at
            time.sleep(0.3)
        escaped = [code for code in attempts.endings if code != -signal.SIGKILL]
        assert escaped == [], f"{len(escaped)} of {len(attempts.endings)} runs were not killed"
        assert during_restart >= 10, "too few runs while no daemon ran to show anything"
        # Each run counted once: by the old program or the new, never by both.
        assert blocked(second) == len(attempts.endings)
        assert linked_generations(pin_dir) == [
            "links-1" if next_program == "the same" else "links-2"
        ]
        reused = "reused: nothing compiled or loaded" in second.log.read_text()
        assert reused == (next_program == "the same")
    finally:
        first.stop(keep_pins=True)
        if second is not None:
            second.stop()
        shutil.rmtree(pin_dir, ignore_errors=True)


def test_sigterm_ends_enforcement_unless_kept(tmp_path: Path, program: Path) -> None:
    policies = policy_dir(tmp_path, program, "ends")
    daemon = start_daemon(policies, tmp_path)
    assert daemon.pin_dir is not None
    assert linked_generations(daemon.pin_dir) == ["links-1"]
    try:
        assert daemon.stop(keep_pins=True) == 0
        assert linked_generations(daemon.pin_dir) == []
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == 0
    finally:
        daemon.stop()


def test_keep_on_exit_enforces_until_unload(tmp_path: Path, program: Path) -> None:
    policies = policy_dir(tmp_path, program, "kept")
    daemon = start_daemon(policies, tmp_path, "--keep-on-exit")
    assert daemon.pin_dir is not None
    try:
        assert daemon.ask("status")["persistence"] == {
            "generation": 1, "outlives_daemon": True, "keep_on_exit": True,
        }  # fmt: skip
        assert daemon.stop(keep_pins=True) == 0
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == -9
        argv = [sys.executable, "-m", "enforcer", "unload", "--pin-dir", str(daemon.pin_dir)]
        unload = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert unload.returncode == 0, unload.stderr
        assert "unloaded" in unload.stdout
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == 0
    finally:
        daemon.stop()


def test_second_daemon_on_the_same_pin_dir_is_refused(tmp_path: Path, program: Path) -> None:
    policies = policy_dir(tmp_path, program, "first")
    daemon = start_daemon(policies, tmp_path)
    assert daemon.pin_dir is not None
    try:
        argv = [sys.executable, "-m", "enforcer", "run", "--policies", str(policies)]
        argv += ["--pin-dir", str(daemon.pin_dir), "--socket", str(tmp_path / "other.sock")]
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1
        assert f"another enforcer daemon is running with --pin-dir {daemon.pin_dir}" in (
            refused.stderr
        )
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == -9
    finally:
        daemon.stop()


@pytest.fixture
def new_cgroup() -> Iterator[Path]:
    path = find_cgroup2_mount() / f"enforcer-test-{secrets.token_hex(4)}"
    yield path
    if path.is_dir():
        for pid in (path / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        eventually(
            lambda: not (path / "cgroup.procs").read_text().strip(),
            5,
            what=f"{path} emptied of its processes",
        )
        path.rmdir()


def run_in_cgroup(cgroup: Path, program: str) -> subprocess.Popen[bytes]:
    script = f'echo $$ > "{cgroup}/cgroup.procs" && exec "{program}" /dev/null'
    return subprocess.Popen(["sh", "-c", script])


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, state: str) -> None:
    eventually(
        lambda: process_state(pid),
        10,
        what=f"pid {pid} in state {state}",
        until=lambda now: now == state,
        interval=0.02,
    )


def test_exec_in_a_cgroup_made_while_no_daemon_runs_waits_for_the_next(
    tmp_path: Path, program: Path, new_cgroup: Path
) -> None:
    policies = policy_dir(tmp_path, program, "held")
    pin_dir = pin_dir_for_test()
    first = start_daemon(policies, tmp_path, pin_dir=pin_dir)
    second: RunningDaemon | None = None
    try:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        new_cgroup.mkdir()
        held = run_in_cgroup(new_cgroup, str(program))
        wait_for_state(held.pid, "T")  # stopped by the program the first daemon left
        second = start_daemon(policies, tmp_path, pin_dir=pin_dir)
        assert held.wait(timeout=10) == -signal.SIGKILL
        assert blocked(second) == 1
    finally:
        first.stop(keep_pins=True)
        if second is not None:
            second.stop()
        shutil.rmtree(pin_dir, ignore_errors=True)


def kill_then_run_in_a_new_cgroup(
    daemon: RunningDaemon, program: Path, new_cgroup: Path, wait_s: float
) -> None:
    """SIGKILLs the daemon; `wait_s` later, an exec in a new cgroup must run, not be held."""
    try:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        time.sleep(wait_s)
        new_cgroup.mkdir()
        free = run_in_cgroup(new_cgroup, "/bin/true")
        assert free.wait(timeout=10) == 0
        # The policies the dead daemon left stay in force all the same.
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == -9
    finally:
        daemon.stop()


def test_no_exec_is_held_once_no_daemon_was_alive_for_the_grace(
    tmp_path: Path, program: Path, new_cgroup: Path
) -> None:
    policies = policy_dir(tmp_path, program, "grace")
    daemon = start_daemon(policies, tmp_path, "--hold-grace", "0.5")
    kill_then_run_in_a_new_cgroup(daemon, program, new_cgroup, wait_s=1)


def test_a_killed_daemon_that_holds_nothing_after_a_stop_holds_nothing(
    tmp_path: Path, program: Path, new_cgroup: Path
) -> None:
    """An agent in a pod (--hold-after-stop 0), killed: the next agent's new container runs.

    Its last renewal would have gone on holding for the grace (60 s here),
    and a next agent starting at once in a new container would wait for itself.
    """
    policies = policy_dir(tmp_path, program, "owner")
    daemon = start_daemon(policies, tmp_path, "--keep-on-exit", "--hold-after-stop", "0")
    kill_then_run_in_a_new_cgroup(daemon, program, new_cgroup, wait_s=0)
