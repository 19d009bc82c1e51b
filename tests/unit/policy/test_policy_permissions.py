"""Policy files that anyone but root could change are refused, with what to fix."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
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


# --- Every directory up to / (sshd's safe_path), a sticky one (such as /tmp) excepted -----------

REPOSITORY = Path(__file__).resolve().parents[3]


def policies_below(above: Path) -> Path:
    """A safe policy directory, with one safe policy file, inside `above`."""
    above.mkdir(mode=0o755, exist_ok=True)
    directory = above / "policies"
    directory.mkdir(mode=0o755)
    (directory / "p.yaml").write_text(POLICY)
    (directory / "p.yaml").chmod(0o644)
    return directory


@needs_root
@pytest.mark.parametrize(
    ("mode", "who"), [(0o777, "its group and everyone"), (0o775, "its group"), (0o757, "everyone")]
)
def test_a_writable_directory_above_the_policies_is_refused(
    tmp_path: Path, mode: int, who: str
) -> None:
    above = tmp_path / "open"
    above.mkdir()
    above.chmod(mode)
    policies = policies_below(above / "etc")  # two levels up, not just the parent

    for named in (policies, policies / "p.yaml"):
        result = load_policies([named])
        assert not result.policies
        [problem] = result.problems
        assert problem.message == (
            f"refusing policies: directory {above} is writable by {who} (mode {mode:04o}); "
            f"run chmod go-w {above}"
        )


@needs_root
def test_a_directory_above_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    above = tmp_path / "theirs"
    above.mkdir(mode=0o755)
    policies = policies_below(above)
    os.chown(above, 65534, 65534)
    [problem] = load_policies([policies]).problems
    assert f"directory {above} is owned by uid 65534, not root" in problem.message


@needs_root
def test_a_sticky_directory_above_owned_by_root_is_fine(tmp_path: Path) -> None:
    # No one else may rename or remove what root owns in it: the way to the policies holds.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    policies = policies_below(sticky)
    assert unsafe_reason(policies) is None
    assert load_policies([policies]).ok


@needs_root
def test_a_sticky_directory_above_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    policies = policies_below(sticky)
    os.chown(sticky, 65534, 65534)
    assert not load_policies([policies]).ok


@needs_root
def test_a_symlink_on_the_way_that_another_user_owns_is_refused(tmp_path: Path) -> None:
    # The policies it points at are safe, but its owner may point it elsewhere at any time.
    real = policies_below(tmp_path / "real")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    link = sticky / "policies"
    link.symlink_to(real)
    os.lchown(link, 65534, 65534)
    [problem] = load_policies([link]).problems
    assert f"symlink {link} is owned by uid 65534, not root" in problem.message


@needs_root
def test_the_repository_policies_pass_where_the_repository_is() -> None:
    # What `make run` loads.
    assert load_policies([REPOSITORY / "policies"]).ok


@needs_root
def test_a_checkout_in_a_fresh_folder_below_tmp_passes() -> None:
    # CI clones into a fresh folder, possibly below /tmp (root's, mode 1777).
    if not Path("/tmp").stat().st_mode & stat.S_ISVTX:
        pytest.skip("/tmp is not sticky here")
    clone = Path(tempfile.mkdtemp(dir="/tmp", prefix="enforcer-clone-"))
    try:
        clone.chmod(0o755)  # as git leaves a checkout, with umask 022
        policies = clone / "policies"
        policies.mkdir(mode=0o755)
        for source in (REPOSITORY / "policies").glob("*.yaml"):
            shutil.copyfile(source, policies / source.name)
            (policies / source.name).chmod(0o644)
        result = load_policies([policies])
        assert result.ok, [str(p) for p in result.problems]
        assert result.policies
    finally:
        shutil.rmtree(clone)
