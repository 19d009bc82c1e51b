"""The same policy means the same thing on every backend: lsm, kprobe and tracepoint.

Each test runs the daemon with the backend tests/vm/ asks for through
$ENFORCER_BACKEND (the best this kernel has otherwise) and checks what a
person would see: the exit status of the exec, whether any of the program's
own code ran, and the counters. Only host processes are selected, so every
rule names a program made for the test.
"""

from __future__ import annotations

import errno
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, bpf_unavailable_reason, requested_backend

from tests.support.policies import HOST, exec_policy, rule, write_policy
from tests.support.wait import eventually

pytestmark = pytest.mark.root

EVENT_TIMEOUT_S = 10.0


@pytest.fixture
def program(tmp_path: Path, marker_binary: Path) -> Path:
    """A copy of the marker program with a name unique to this test."""
    reason = bpf_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    copy = bin_dir / f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2(marker_binary, copy)
    return copy


def start(daemon_factory: Any, tmp_path: Path, action: str, name: str) -> RunningDaemon:
    policies = tmp_path / "policies"
    named = rule("forbidden", action, names=[name])
    write_policy(
        policies, "policy.yaml", exec_policy("backend-test", HOST, [named], mode="enforce")
    )
    daemon: RunningDaemon = daemon_factory(policies)
    requested = requested_backend()
    if requested != "auto":
        assert daemon.ask("status")["backend"] == requested
    return daemon


def events(daemon: RunningDaemon, count: int) -> list[dict[str, Any]]:
    """The daemon's recent denials, once `count` have arrived from the kernel."""
    recent: list[dict[str, Any]] = eventually(
        lambda: daemon.ask("events")["events"],
        EVENT_TIMEOUT_S,
        what=f"{count} events",
        until=lambda recent: len(recent) >= count,
    )
    return recent


def counts(daemon: RunningDaemon) -> tuple[int, int]:
    policy = next(p for p in daemon.ask("stats")["policies"] if p["name"] == "backend-test")
    return policy["blocked"], policy["audited"]


def test_deny_fails_the_exec_with_eperm_on_lsm_and_kills_elsewhere(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    daemon = start(daemon_factory, tmp_path, "deny", program.name)
    marker = tmp_path / "ran"

    if lsm := daemon.ask("status")["backend"] == "lsm":
        with pytest.raises(PermissionError) as refused:
            subprocess.run([str(program), str(marker)], check=False)
        assert refused.value.errno == errno.EPERM
    else:
        assert subprocess.run([str(program), str(marker)], check=False).returncode == (
            -signal.SIGKILL
        )
        assert "deny rules kill instead" in daemon.log.read_text()
    assert not marker.exists()
    assert counts(daemon) == (1, 0)
    [event] = events(daemon, 1)
    assert (event["action"], event["filename"]) == ("deny" if lsm else "kill", str(program))


def test_deny_through_execveat_is_refused_by_name(
    tmp_path: Path, program: Path, daemon_factory: Any, execveat_binary: Path
) -> None:
    daemon = start(daemon_factory, tmp_path, "deny", program.name)
    marker = tmp_path / "ran"

    result = subprocess.run(
        [str(execveat_binary), str(program.parent), program.name, str(marker)],
        capture_output=True,
        text=True,
        check=False,
    )

    if daemon.ask("status")["backend"] == "lsm":
        # The caller goes on: its execveat returned EPERM.
        assert (result.returncode, result.stderr.strip()) == (
            127,
            "execveat: Operation not permitted",
        )
    else:
        assert result.returncode == -signal.SIGKILL
    assert not marker.exists()
    assert counts(daemon) == (1, 0)


def test_kill_runs_none_of_the_programs_code(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    daemon = start(daemon_factory, tmp_path, "kill", program.name)
    marker = tmp_path / "ran"

    # Short arguments: the kernel reports each cut to abi.ARG_LEN bytes.
    for args in (["ran"], ["ran", "x"]):
        run = subprocess.run([str(program), *args], cwd=tmp_path, check=False)
        assert run.returncode == -signal.SIGKILL

    assert not marker.exists()
    assert counts(daemon) == (2, 0)
    assert [(e["action"], e["filename"], e["argv"][1:]) for e in events(daemon, 2)] == [
        ("kill", str(program), ["ran"]),
        ("kill", str(program), ["ran", "x"]),
    ]


def test_audit_lets_the_program_run_and_counts_it(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    daemon = start(daemon_factory, tmp_path, "audit", program.name)
    marker = tmp_path / "ran"

    assert subprocess.run([str(program), str(marker)], check=False).returncode == 0

    assert marker.exists()
    assert counts(daemon) == (0, 1)


def test_a_script_counts_once_although_its_interpreter_is_loaded_too(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    """The LSM hook runs once for the script and again for its interpreter."""
    script = program.with_name(f"{program.name}-script")
    marker = tmp_path / "ran"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    daemon = start(daemon_factory, tmp_path, "audit", script.name)

    assert subprocess.run([str(script)], check=False).returncode == 0

    assert marker.exists()
    assert counts(daemon) == (0, 1)
