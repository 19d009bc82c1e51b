"""Counters outlive the daemon: kept in a pinned map across restarts and crashes."""

from __future__ import annotations

import secrets
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import RunningDaemon, host_policy, start_daemon

pytestmark = pytest.mark.root


def blocked(daemon: RunningDaemon) -> int:
    return int(daemon.ask("stats")["policies"][0]["blocked"])


def kill_attempts(program: Path, times: int) -> None:
    for _ in range(times):
        assert subprocess.run([str(program), "/dev/null"], check=False).returncode == -9


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_counters_survive_a_restart(tmp_path: Path, program: Path, stop: str) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy(program, name="persistent"))
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
