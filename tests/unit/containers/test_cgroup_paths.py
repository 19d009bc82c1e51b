"""Recognising container cgroups, and reading cgroup v2 facts from /proc text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enforcer.containers import (
    cgroup_ids_below,
    cgroup_inode,
    cgroup_v2_path_of_pid,
    find_cgroup2_mount,
    parse_container_cgroup,
    parse_proc_cgroup,
)
from enforcer.containers.cgroup import unidentified_container_cgroup, walk_cgroups
from enforcer.errors import KernelSupportError

ID = "397a255943b5e82a9aea1106aa36ef1c99867e676973ca0423a6326ac9a37e2b"
ID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
POD_UID = "8b7a6c5d-1e2f-4a3b-9c8d-7e6f5a4b3c2d"
POD_UID_SYSTEMD = POD_UID.replace("-", "_")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # Docker, systemd driver and cgroupfs driver.
        (f"/system.slice/docker-{ID}.scope", ("docker", ID)),
        (f"/docker/{ID}", ("docker", ID)),
        # Docker in Docker: the inner container is the deepest.
        (f"/docker/{ID}/docker/{ID2}", ("docker", ID2)),
        # Podman, systemd driver (with and without a split sub-cgroup) and cgroupfs.
        (f"/machine.slice/libpod-{ID}.scope", ("podman", ID)),
        (f"/machine.slice/libpod-{ID}.scope/container", ("podman", ID)),
        (
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
            ("podman", ID),
        ),
        (f"/libpod_parent/libpod-{ID}", ("podman", ID)),
        # containerd and CRI-O outside Kubernetes.
        (f"/system.slice/cri-containerd-{ID}.scope", ("containerd", ID)),
        (f"/system.slice/crio-{ID}.scope", ("crio", ID)),
        # runc with --systemd-cgroup: a 64-hex id, or any name runc accepts.
        (f"/system.slice/runc-{ID}.scope", ("runc", ID)),
        ("/system.slice/runc-web_1.scope", ("runc", "web_1")),
        # Kubernetes, cgroupfs driver: the runtime is not in the name.
        (f"/kubepods/burstable/pod{POD_UID}/{ID}", ("kubernetes", ID)),
        (f"/kubepods/besteffort/pod{POD_UID}/{ID}", ("kubernetes", ID)),
        (f"/kubepods/pod{POD_UID}/{ID}", ("kubernetes", ID)),
        (f"/kubepods/burstable/pod{POD_UID}/crio-{ID}", ("crio", ID)),
        # Kubernetes, systemd driver.
        (
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_UID_SYSTEMD}.slice/cri-containerd-{ID}.scope",
            ("containerd", ID),
        ),
        (
            "/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{POD_UID_SYSTEMD}.slice/docker-{ID}.scope",
            ("docker", ID),
        ),
        (
            f"/kubepods.slice/kubepods-pod{POD_UID_SYSTEMD}.slice/crio-{ID}.scope",
            ("crio", ID),
        ),
    ],
)
def test_container_cgroups_are_recognised(path: str, expected: tuple[str, str]) -> None:
    assert parse_container_cgroup(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/init.scope",
        "/system.slice/ssh.service",
        "/system.slice/docker.service",
        "/system.slice/containerd.service",
        "/user.slice/user-1000.slice/session-3.scope",
        "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
        # conmon, the monitor beside a podman or CRI-O container, is not the container.
        f"/machine.slice/libpod-conmon-{ID}.scope",
        f"/libpod_parent/libpod-conmon-{ID}",
        f"/kubepods.slice/kubepods-pod{POD_UID_SYSTEMD}.slice/crio-conmon-{ID}.scope",
        # Pod and QoS slices hold containers but are not one.
        "/kubepods/burstable",
        f"/kubepods/burstable/pod{POD_UID}",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice",
        # A bare 64-hex name anywhere else could be anything.
        f"/{ID}",
        f"/somewhere/{ID}",
        # Near misses: short id, upper case, wrong suffix.
        f"/system.slice/docker-{ID[:12]}.scope",
        f"/system.slice/docker-{ID.upper()}.scope",
        f"/system.slice/docker-{ID}.service",
    ],
)
def test_other_cgroups_are_not_containers(path: str) -> None:
    assert parse_container_cgroup(path) is None


HYBRID_PROC_CGROUP = f"""\
9:name=systemd:/{ID}
8:pids:/{ID}
4:memory:/some/parent/{ID}
1:cpu:/{ID}
0::/{ID}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HYBRID_PROC_CGROUP, f"/{ID}"),
        (f"0::/system.slice/docker-{ID}.scope\n", f"/system.slice/docker-{ID}.scope"),
        ("0::/\n", "/"),
    ],
)
def test_proc_cgroup_gives_the_v2_path(text: str, expected: str) -> None:
    assert parse_proc_cgroup(text) == expected


def test_proc_cgroup_without_v2_line_is_a_kernel_support_error() -> None:
    with pytest.raises(KernelSupportError, match="cgroup v1 only"):
        parse_proc_cgroup("2:cpu:/\n1:name=systemd:/init.scope\n")


def test_cgroup_v2_path_of_pid_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text(HYBRID_PROC_CGROUP)
    assert cgroup_v2_path_of_pid(42, proc=tmp_path) == f"/{ID}"


def test_cgroup_v2_path_of_a_gone_pid_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cgroup_v2_path_of_pid(42, proc=tmp_path)


HYBRID_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""

UNIFIED_MOUNTS = """\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
none /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HYBRID_MOUNTS, Path("/sys/fs/cgroup/unified")),
        (UNIFIED_MOUNTS, Path("/sys/fs/cgroup")),
        # The kernel escapes a space in a mount point as \040.
        ("cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n", Path("/mnt/my cgroups")),
    ],
)
def test_cgroup2_mount_is_found(text: str, expected: Path) -> None:
    assert find_cgroup2_mount(text) == expected


def test_missing_cgroup2_mount_is_a_kernel_support_error() -> None:
    v1_only = HYBRID_MOUNTS.replace("cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n", "")
    with pytest.raises(KernelSupportError, match="mount -t cgroup2"):
        find_cgroup2_mount(v1_only)


def test_cgroup_ids_are_the_inodes_of_the_dir_and_its_descendants(tmp_path: Path) -> None:
    (tmp_path / "c" / "a" / "deep").mkdir(parents=True)
    (tmp_path / "c" / "b").mkdir()
    (tmp_path / "c" / "cgroup.procs").write_text("")  # files are not cgroups

    ids = cgroup_ids_below(tmp_path, "/c")

    expected = [tmp_path / "c", tmp_path / "c/a", tmp_path / "c/a/deep", tmp_path / "c/b"]
    assert ids == tuple(os.stat(p).st_ino for p in expected)
    assert cgroup_inode(tmp_path, "/c") == ids[0]


def test_cgroup_ids_of_a_missing_cgroup_raise_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cgroup_ids_below(tmp_path, "/gone")


def test_cgroups_vanishing_during_the_walk_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "c" / "a" / "deep").mkdir(parents=True)
    (tmp_path / "c" / "b" / "deeper").mkdir(parents=True)
    walk = walk_cgroups(tmp_path, "/c")
    assert [next(walk)[0], next(walk)[0]] == ["/c", "/c/a"]

    # A container below /c stops after /c was listed but before /c/b was.
    (tmp_path / "c" / "b" / "deeper").rmdir()
    (tmp_path / "c" / "b").rmdir()

    assert [path for path, _ in walk] == ["/c/a/deep", "/c/b"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/libpod_parent/something-new", True),
        ("/libpod_parent/pod-x/inner", True),
        ("/docker/not-an-id", True),
        ("/kubepods/burstable/pod0a1b2c3d-0000-1111-2222-333344445555/new", True),
        ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b_2c.slice/x", True),
        # The trees themselves, and what lies beside them, are the host's.
        ("/libpod_parent", False),
        ("/docker", False),
        ("/kubepods/burstable", False),
        ("/system.slice/sshd.service", False),
        ("/user.slice/user-0.slice/session-1.scope", False),
        # conmon runs host programs on a container's behalf: the host's.
        ("/libpod_parent/conmon", False),
        (f"/libpod_parent/libpod-conmon-{'a' * 64}", False),
    ],
)
def test_cgroups_in_a_runtime_tree_are_taken_for_containers(path: str, expected: bool) -> None:
    assert unidentified_container_cgroup(path) is expected


def test_a_pod_like_name_outside_kubepods_is_the_hosts() -> None:
    assert not unidentified_container_cgroup("/system.slice/pod1/worker")
