"""Policy changes on disk take effect without a restart or a signal.

The policy here selects the host, so it names only a program made for the test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import host_policy

from tests.support.wait import eventually

pytestmark = pytest.mark.root

CHANGE_TIMEOUT_S = 5.0
KILLED = -signal.SIGKILL


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir(mode=0o755)
    return directory


def outcome(program: Path) -> int:
    marker = program.with_name(f"ran-{secrets.token_hex(4)}")
    return subprocess.run([str(program), str(marker)], check=False).returncode


def write_policy(path: Path, program: Path, mode: str = "enforce", name: str = "hot") -> None:
    path.write_text(host_policy(program, name=name, mode=mode))
    path.chmod(0o644)


def becomes(check: Callable[[], bool], what: str) -> None:
    eventually(check, CHANGE_TIMEOUT_S, what=what, interval=0.01)


def test_added_changed_and_removed_files_apply(
    policies: Path, program: Path, daemon_factory: Any
) -> None:
    daemon_factory(policies)
    assert outcome(program) == 0
    write_policy(policies / "hot.yaml", program)
    becomes(lambda: outcome(program) == KILLED, "added file enforced")
    write_policy(policies / "hot.yaml", program, mode="audit")
    becomes(lambda: outcome(program) == 0, "changed file (audit) applied")
    write_policy(policies / "hot.yaml", program)
    becomes(lambda: outcome(program) == KILLED, "changed back to enforce")
    (policies / "hot.yaml").unlink()
    becomes(lambda: outcome(program) == 0, "removed file dropped")


def test_renames_and_editor_temporary_files(
    policies: Path, program: Path, daemon_factory: Any
) -> None:
    daemon_factory(policies)
    swap = policies / ".hot.yaml.swp"
    write_policy(swap, program)  # an editor's temporary file is not a policy
    time.sleep(0.3)
    assert outcome(program) == 0
    swap.rename(policies / "hot.yaml")  # the editor's save: rename over the target
    becomes(lambda: outcome(program) == KILLED, "renamed-in file enforced")
    (policies / "hot.yaml").rename(policies / "hot.yaml.disabled")
    becomes(lambda: outcome(program) == 0, "renamed-away file dropped")


def test_configmap_symlink_swap(policies: Path, program: Path, daemon_factory: Any) -> None:
    """The layout kubelet gives a ConfigMap volume, and its atomic update."""
    first = policies / "..2026_11_25_01"
    first.mkdir(mode=0o755)
    write_policy(first / "hot.yaml", program)
    (policies / "..data").symlink_to(first.name)
    (policies / "hot.yaml").symlink_to("..data/hot.yaml")
    daemon = daemon_factory(policies)
    assert outcome(program) == KILLED

    second = policies / "..2026_11_25_02"
    second.mkdir(mode=0o755)
    write_policy(second / "hot.yaml", program, mode="audit")
    (policies / "..data_tmp").symlink_to(second.name)
    os.rename(policies / "..data_tmp", policies / "..data")
    becomes(lambda: outcome(program) == 0, "swapped-in version applied")
    assert [p["name"] for p in daemon.ask("status")["policies"]] == ["hot"]


def test_bad_file_keeps_its_last_good_version(
    policies: Path, program: Path, daemon_factory: Any, tmp_path: Path
) -> None:
    other = program.with_name(f"{program.name}-other")
    shutil.copy2(program, other)
    write_policy(policies / "hot.yaml", program)
    daemon = daemon_factory(policies)
    assert outcome(program) == KILLED

    (policies / "hot.yaml").write_text("apiVersion: enforcer/v1\nkind: ExecPolicy\nspec: [\n")
    write_policy(policies / "other.yaml", other, name="other")
    becomes(lambda: outcome(other) == KILLED, "the good file's change applied")
    status: dict[str, Any] = daemon.ask("status")
    assert any("hot.yaml" in problem for problem in status["problems"])
    assert outcome(program) == KILLED  # last good version still in force


def test_policy_file_others_can_write_is_refused(
    policies: Path, program: Path, daemon_factory: Any
) -> None:
    write_policy(policies / "hot.yaml", program)
    daemon = daemon_factory(policies)
    (policies / "hot.yaml").chmod(0o666)
    becomes(lambda: bool(daemon.ask("status")["problems"]), "refusal reported")
    problem = daemon.ask("status")["problems"][0]
    assert "writable by its group and everyone" in problem
    assert "chmod go-w" in problem
    assert outcome(program) == KILLED  # the last good version stays
