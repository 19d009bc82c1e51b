"""Policy files that anyone but root could change are refused, with what to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enforcer.policy.loader import load_policies
from enforcer.policy.permissions import unsafe_reason

POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: p
spec:
  selector:
    host: true
  rules:
    - name: r
      match:
        names: [enforcer-test-never-run]
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files owned by root need root")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir(mode=0o755)
    (directory / "p.yaml").write_text(POLICY)
    (directory / "p.yaml").chmod(0o644)
    return directory


@needs_root
def test_root_owned_files_not_writable_by_others_load(policy_dir: Path) -> None:
    assert unsafe_reason(policy_dir / "p.yaml") is None
    assert load_policies([policy_dir]).ok


@needs_root
def test_group_writable_file_is_refused_with_the_fix(policy_dir: Path) -> None:
    (policy_dir / "p.yaml").chmod(0o664)
    result = load_policies([policy_dir])
    assert not result.policies
    message = str(result.problems[0])
    assert "writable by its group (mode 0664)" in message
    assert f"chmod go-w {policy_dir / 'p.yaml'}" in message


@needs_root
def test_world_writable_directory_is_refused(policy_dir: Path) -> None:
    policy_dir.chmod(0o777)
    result = load_policies([policy_dir])
    assert not result.policies
    assert "directory" in str(result.problems[0])
    assert "everyone" in str(result.problems[0])


@needs_root
def test_file_owned_by_another_user_is_refused(policy_dir: Path) -> None:
    os.chown(policy_dir / "p.yaml", 65534, 65534)
    result = load_policies([policy_dir])
    assert "owned by uid 65534, not root" in str(result.problems[0])


@needs_root
def test_symlink_to_a_writable_file_is_refused(policy_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.yaml"
    target.write_text(POLICY.replace("name: p", "name: q"))
    target.chmod(0o666)
    (policy_dir / "q.yaml").symlink_to(target)
    result = load_policies([policy_dir])
    assert [p.policy.name for p in result.policies] == ["p"]
    assert "writable by its group and everyone" in str(result.problems[0])


@needs_root
def test_a_named_file_may_sit_in_a_sticky_directory(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "p.yaml").write_text(POLICY)
    (sticky / "p.yaml").chmod(0o644)
    assert load_policies([sticky / "p.yaml"]).ok
    assert not load_policies([sticky]).ok
