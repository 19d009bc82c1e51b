"""Host processes: a killed program runs none of its own code; reloads switch cleanly.

The policy here reaches the host, so it names only programs made for the test.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, bpf_unavailable_reason, host_policy

pytestmark = pytest.mark.root

RELOAD_TIMEOUT_S = 10.0


@pytest.fixture
def programs(tmp_path: Path, marker_binary: Path) -> tuple[Path, Path]:
    """Two copies of the marker program with names unique to this test run."""
    reason = bpf_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(4)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    blocked = bin_dir / f"enforcer-test-{tag}-blocked"
    allowed = bin_dir / f"enforcer-test-{tag}-allowed"
    shutil.copy2(marker_binary, blocked)
    shutil.copy2(marker_binary, allowed)
    return blocked, allowed


def run_marker(program: Path, marker: Path) -> int:
    return subprocess.run([str(program), str(marker)], check=False).returncode


def wait_for(daemon: RunningDaemon, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return daemon.wait_for_status(done, RELOAD_TIMEOUT_S)


def host_counts(daemon: RunningDaemon) -> tuple[int, int]:
    policy = next(p for p in daemon.ask("stats")["policies"] if p["name"] == "host-test")
    return policy["blocked"], policy["audited"]


def test_killed_program_runs_none_of_its_own_code(
    tmp_path: Path, programs: tuple[Path, Path], daemon_factory: Any
) -> None:
    blocked, allowed = programs
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "host.yaml").write_text(host_policy(blocked, mode="enforce"))
    daemon = daemon_factory(policies)

    assert run_marker(blocked, tmp_path / "blocked-ran") == -signal.SIGKILL
    assert not (tmp_path / "blocked-ran").exists()
    assert run_marker(allowed, tmp_path / "allowed-ran") == 0
    assert (tmp_path / "allowed-ran").exists()
    assert host_counts(daemon) == (1, 0)


def test_sighup_reload_switches_enforce_to_audit(
    tmp_path: Path, programs: tuple[Path, Path], daemon_factory: Any
) -> None:
    blocked, _ = programs
    policies = tmp_path / "policies"
    policies.mkdir()
    policy_file = policies / "host.yaml"
    policy_file.write_text(host_policy(blocked, mode="enforce"))
    daemon = daemon_factory(policies)
    assert run_marker(blocked, tmp_path / "first") == -signal.SIGKILL

    policy_file.write_text(host_policy(blocked, mode="audit"))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(daemon, lambda s: s["policies"][0]["mode"] == "audit")

    assert run_marker(blocked, tmp_path / "second") == 0
    assert (tmp_path / "second").exists()
    assert host_counts(daemon) == (1, 1)


def test_bad_policy_on_reload_changes_nothing(
    tmp_path: Path, programs: tuple[Path, Path], daemon_factory: Any
) -> None:
    blocked, _ = programs
    policies = tmp_path / "policies"
    policies.mkdir()
    policy_file = policies / "host.yaml"
    policy_file.write_text(host_policy(blocked, mode="enforce"))
    daemon = daemon_factory(policies)

    audit = host_policy(blocked, mode="audit")
    policy_file.write_text(audit + "  typo: 1\n")
    typo_line = len(audit.splitlines()) + 1
    daemon.process.send_signal(signal.SIGHUP)
    status = wait_for(daemon, lambda s: bool(s["problems"]))

    assert f"host.yaml:{typo_line}: spec.typo: unknown key 'typo'" in status["problems"][0]
    assert status["policies"][0]["mode"] == "enforce"
    assert run_marker(blocked, tmp_path / "still-blocked") == -signal.SIGKILL
    assert not (tmp_path / "still-blocked").exists()
