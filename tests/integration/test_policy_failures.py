"""Policies that are valid each but cannot be enforced together never take the daemon down.

Two policies of 17,000 names each are more than the kernel's name map holds
(half of abi.MAX_NAME_ENTRIES, the other half being the switch's): the
compile fails, the maps in force stay, the daemon goes on, and status says
why. And more rules naming one program than one map entry holds
(abi.MAX_HITS) compile, kill, and count each rule. The policies reach the
host, so they name only a program made for the test (and names no program
has).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, host_policy, requested_backend, start_daemon

from enforcer.bpf import abi
from tests.support.daemon import spawn
from tests.support.policies import HOST, exec_policy, rule
from tests.support.wait import eventually

pytestmark = pytest.mark.root

RELOAD_TIMEOUT_S = 20.0
# Each of two policies: more than half of what the name map can hold.
NAMES_EACH = abi.MAX_NAME_ENTRIES // 4 + 600


def many_rules(program: Path, name: str, rules: int, action: str = "kill") -> str:
    named = [rule(f"r{i}", action, names=[program.name]) for i in range(rules)]
    return exec_policy(name, HOST, named)


def many_names(program: Path, name: str) -> str:
    """A kill rule naming the program and NAMES_EACH - 1 names no program has."""
    names = [program.name, *(f"absent-{name}-{i}" for i in range(NAMES_EACH - 1))]
    return exec_policy(name, HOST, [rule("many", "kill", names=names)])


def rule_counts(daemon: RunningDaemon) -> dict[tuple[str, str], int]:
    return {
        (p["name"], r["name"]): r["blocked"]
        for p in daemon.ask("stats")["policies"]
        for r in p["rules"]
    }


def wait_for(daemon: RunningDaemon, done: Any) -> dict[str, Any]:
    return daemon.wait_for_status(done, RELOAD_TIMEOUT_S)


def killed(program: Path, tmp_path: Path) -> bool:
    marker = tmp_path / "ran"
    marker.unlink(missing_ok=True)
    code = subprocess.run([str(program), str(marker)], check=False).returncode
    return code == -signal.SIGKILL and not marker.exists()


def test_more_rules_on_one_program_than_an_entry_holds_kill_and_count_each(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    half = abi.MAX_HITS // 2 + 1
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "first.yaml").write_text(many_rules(program, "first", half))
    (policies / "second.yaml").write_text(many_rules(program, "second", half, action="audit"))
    daemon = daemon_factory(policies)
    assert daemon.ask("status")["enforce_error"] is None
    assert killed(program, tmp_path)
    counts = rule_counts(daemon)
    assert counts == {
        (p, f"r{i}"): int(p == "first") for p in ("first", "second") for i in range(half)
    }
    audited = {
        r["name"]: r["audited"]
        for p in daemon.ask("stats")["policies"]
        if p["name"] == "second"
        for r in p["rules"]
    }
    assert audited == {f"r{i}": 1 for i in range(half)}


def test_a_combination_that_cannot_compile_keeps_the_policies_in_force(
    tmp_path: Path, program: Path, daemon_factory: Any
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "first.yaml").write_text(many_names(program, "first"))
    daemon = daemon_factory(policies)
    assert killed(program, tmp_path)

    (policies / "second.yaml").write_text(many_names(program, "second"))
    status = wait_for(daemon, lambda s: s["enforce_error"])
    assert "exceed the kernel map's room" in status["enforce_error"]
    assert [p["name"] for p in status["policies"]] == ["first"]  # what is in force
    assert daemon.process.poll() is None
    assert killed(program, tmp_path)  # the first policy still kills
    printed = daemon.cli("status")
    assert printed.returncode == 0 and "exceed the kernel map" in printed.stderr

    (policies / "second.yaml").unlink()
    status = wait_for(daemon, lambda s: s["enforce_error"] is None)
    assert killed(program, tmp_path)


def test_a_start_whose_policies_cannot_compile_runs_and_applies_a_fix(
    tmp_path: Path, program: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "first.yaml").write_text(many_names(program, "first"))
    (policies / "second.yaml").write_text(many_names(program, "second"))
    daemon = _start_unready(policies, tmp_path)
    try:
        status = wait_for(daemon, lambda s: s["enforce_error"])
        assert status["enforcing"] is False
        assert daemon.cli("status").returncode != 0
        (policies / "second.yaml").write_text(host_policy(program, name="second"))
        wait_for(daemon, lambda s: s["enforcing"] and s["enforce_error"] is None)
        assert killed(program, tmp_path)
    finally:
        daemon.stop()


def test_a_restart_with_policies_that_cannot_compile_leaves_the_old_program_enforcing(
    tmp_path: Path, program: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "first.yaml").write_text(host_policy(program, name="first"))
    first = start_daemon(policies, tmp_path)
    assert first.pin_dir is not None
    try:
        first.process.kill()  # a crash: the program stays in the kernel
        first.process.wait()
        (policies / "first.yaml").write_text(many_names(program, "first"))
        (policies / "second.yaml").write_text(many_names(program, "second"))
        second = subprocess.run(
            _daemon_argv(policies, tmp_path, first.pin_dir),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode != 0
        assert "keeps enforcing the policies it had" in second.stderr
        assert killed(program, tmp_path)  # the crashed daemon's program goes on
    finally:
        first.stop()


def _daemon_argv(policies: Path, workdir: Path, pin_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "enforcer", "run", "--policies", str(policies),
        "--pin-dir", str(pin_dir), "--state-dir", str(workdir / "state"),
        "--socket", str(workdir / "second.sock"), "--backend", requested_backend(),
    ]  # fmt: skip


def _start_unready(policies: Path, workdir: Path) -> RunningDaemon:
    """Starts a daemon without waiting for it to enforce (it will not, at first)."""
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-unready-{workdir.name[-8:]}")
    options = ["--pin-dir", str(pin_dir), "--state-dir", str(workdir / "state")]
    options += ["--backend", requested_backend()]
    started = spawn(policies, workdir / "unready.sock", workdir / "unready.log", options)
    daemon = RunningDaemon(started.process, started.socket, started.log, pin_dir)

    def listening() -> bool:
        if daemon.process.poll() is not None:
            raise AssertionError(daemon.log.read_text())
        return daemon.socket.exists()

    eventually(listening, 120, what=f"the daemon listening on {daemon.socket}", interval=0.1)
    return daemon
