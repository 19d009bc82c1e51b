"""Containers that start, restart and stop while the daemon runs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, start_daemon
from runc_helpers import run_foreground, runc_container

from tests.support.policies import container_ids, exec_policy, rule, write_policy
from tests.support.wait import eventually

pytestmark = [pytest.mark.root, pytest.mark.runc]

KILLED = 137
APPEAR_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def future_id() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def daemon(future_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    policies = workdir / "policies"
    policy = exec_policy(
        "future-container", container_ids(future_id), [rule("no-whoami", names=["whoami"])]
    )
    write_policy(policies, "future.yaml", policy)
    running = start_daemon(policies, workdir)
    yield running
    assert running.stop() == 0, running.log.read_text()


def known_containers(daemon: RunningDaemon) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in daemon.ask("containers")["containers"]}


def wait_until(condition: Any, what: str) -> float:
    """Seconds until `condition` held; fails the test after APPEAR_TIMEOUT_S."""
    started = time.monotonic()
    eventually(condition, APPEAR_TIMEOUT_S, what=what, interval=0.01)
    return time.monotonic() - started


def test_entrypoint_of_a_container_started_later_is_killed(
    daemon: RunningDaemon, future_id: str, tmp_path: Path
) -> None:
    result = run_foreground(tmp_path, ["/bin/whoami"], id=future_id)
    assert (result.returncode, result.stdout) == (KILLED, "")
    blocked = daemon.ask("stats")["policies"][0]["blocked"]
    assert blocked >= 1


def test_entrypoint_no_rule_names_runs_in_a_container_started_later(
    daemon: RunningDaemon, future_id: str, tmp_path: Path
) -> None:
    result = run_foreground(tmp_path, ["/bin/echo", "entrypoint-ran"], id=future_id)
    assert (result.returncode, result.stdout) == (0, "entrypoint-ran\n")


def test_unselected_container_started_later_runs_the_named_program(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    result = run_foreground(tmp_path, ["/bin/whoami"])
    assert (result.returncode, result.stdout) == (0, "root\n")


def test_container_appears_restarts_and_leaves(
    daemon: RunningDaemon, future_id: str, tmp_path: Path
) -> None:
    cgroups = []
    for _ in range(2):  # started, then started again after removal: a restart
        with runc_container(tmp_path, id=future_id) as container:
            wait_until(lambda: future_id in known_containers(daemon), "container listed")
            listed = known_containers(daemon)[future_id]
            assert listed["policies"] == ["future-container"]
            cgroups.append(listed["cgroup_id"])
            assert container.exec(["whoami"]).returncode == KILLED
        wait_until(lambda: future_id not in known_containers(daemon), "container dropped")
    assert cgroups[0] != cgroups[1]
