"""Container discovery against a real runc container and the real cgroup v2 tree."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from runc_helpers import runc_container

from enforcer.containers import (
    cgroup_v2_path_of_pid,
    discover,
    find_cgroup2_mount,
    resolve_container,
)

pytestmark = [pytest.mark.root, pytest.mark.runc]


@pytest.fixture
def cgroup_root() -> Path:
    return find_cgroup2_mount()


@pytest.fixture
def scratch_cgroup(cgroup_root: Path) -> Iterator[Path]:
    """A cgroup of our own at the top of the tree, removed (with its children) afterwards."""
    top = cgroup_root / f"enforcer-test-{secrets.token_hex(4)}"
    top.mkdir()
    try:
        yield top
    finally:
        # Cgroup directories are removed with rmdir, deepest first; they hold
        # no processes here.
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            os.rmdir(dirpath)


def test_discover_finds_a_running_runc_container(tmp_path: Path, cgroup_root: Path) -> None:
    with runc_container(tmp_path) as container:
        rel = cgroup_v2_path_of_pid(container.pid)
        # runc names the container's cgroup after its id (here "/<id>").
        assert rel.endswith("/" + container.id)
        own_dir = cgroup_root / rel.lstrip("/")
        # A sub-cgroup such as a container's own systemd would make.
        sub_dir = own_dir / "sub"
        sub_dir.mkdir()
        try:
            found = resolve_container(container.id, discover())
            assert found.runtime == "runc"
            assert found.pid == container.pid
            assert found.name == container.id
            assert found.cgroup_path == rel
            assert found.cgroup_ids == (os.stat(own_dir).st_ino, os.stat(sub_dir).st_ino)
            assert "bundle" not in found.labels
            assert resolve_container(container.id[:12], discover()) == found
        finally:
            sub_dir.rmdir()

        container.delete()
        assert container.id not in {c.id for c in discover()}


def test_discover_finds_containers_by_cgroup_name(scratch_cgroup: Path, cgroup_root: Path) -> None:
    container_id = secrets.token_hex(32)
    own_dir = scratch_cgroup / f"libpod-{container_id}"
    child_dir = own_dir / "container"
    child_dir.mkdir(parents=True)
    (scratch_cgroup / f"libpod-conmon-{secrets.token_hex(32)}").mkdir()

    found = resolve_container(container_id, discover(runc_roots=()))

    assert found.runtime == "podman"
    assert found.pid is None
    assert found.cgroup_path == "/" + str(own_dir.relative_to(cgroup_root))
    assert found.cgroup_ids == (os.stat(own_dir).st_ino, os.stat(child_dir).st_ino)
    assert not any("conmon" in c.cgroup_path for c in discover(runc_roots=()))
