"""Find cgroup v2, read which cgroup a process is in, and recognise container cgroups.

Paths called `rel` here are relative to the cgroup v2 root and start with "/",
exactly as the `0::` line of /proc/<pid>/cgroup prints them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from enforcer.errors import KernelSupportError
from enforcer.kernel.mounts import first_mount_of

_ID = r"(?P<id>[0-9a-f]{64})"

# One cgroup directory name -> (runtime, id). Checked against each path
# component from the deepest up, so the first hit is the innermost container.
_NAMED_SCOPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Docker with the systemd cgroup driver (alone or under kubepods.slice).
    (re.compile(rf"docker-{_ID}\.scope"), "docker"),
    # Podman: systemd driver `libpod-<id>.scope`, cgroupfs driver `libpod-<id>`.
    (re.compile(rf"libpod-{_ID}(?:\.scope)?"), "podman"),
    # containerd's CRI plugin with the systemd driver.
    (re.compile(rf"cri-containerd-{_ID}\.scope"), "containerd"),
    # CRI-O: `.scope` with the systemd driver, bare with cgroupfs.
    (re.compile(rf"crio-{_ID}(?:\.scope)?"), "crio"),
    # runc itself with --systemd-cgroup (`system.slice:runc:<id>`): its ids
    # are any name runc accepts, not only 64 hex digits.
    (re.compile(r"runc-(?P<id>[A-Za-z0-9][A-Za-z0-9_+.-]*)\.scope"), "runc"),
)

# conmon is the monitor process podman and CRI-O start beside each container;
# it runs host binaries on the container's behalf and is not the container.
_CONMON = re.compile(r"(?:libpod|crio)-conmon-[0-9a-f]{64}(?:\.scope)?")

# Directories under which runtimes put only containers: podman's cgroupfs
# parent, Docker's, and a Kubernetes pod's (cgroupfs `pod<uid>`, systemd
# `kubepods-...-pod<uid>.slice`). A cgroup below one that names no container
# is still taken for one (`unidentified_container_cgroup`).
_CONTAINER_TREES = (
    re.compile(r"libpod_parent"),
    re.compile(r"docker"),
    re.compile(r"kubepods(?:-[a-z]+)?-pod[0-9a-f_]+\.slice"),
)

_BARE_ID = re.compile(_ID)
# cgroupfs driver pod directories: `pod<uid>`; the uid has dashes, or is a
# 32-hex config hash for static pods.
_CGROUPFS_POD = re.compile(r"pod[0-9a-f][0-9a-f_-]*")


def find_cgroup2_mount(mounts_text: str | None = None) -> Path:
    """Return where cgroup v2 is mounted, from /proc/self/mounts or the given text.

    Hybrid hosts mount it at /sys/fs/cgroup/unified, unified ones at
    /sys/fs/cgroup. When there are several cgroup2 mounts (a bind mount into a
    container, say), the first is the one the host set up at boot.
    """
    found = first_mount_of("cgroup2", mounts_text)
    if found is not None:
        return found
    raise KernelSupportError(
        "cgroup v2 is not mounted, and enforcer identifies containers by their cgroup v2 id; "
        "mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified` "
        "or boot with systemd.unified_cgroup_hierarchy=1"
    )


def parse_proc_cgroup(text: str) -> str:
    """Return the cgroup v2 path from the text of /proc/<pid>/cgroup.

    The v2 line is `0::/path` on both hybrid hosts (after the v1 lines) and
    unified ones (alone).
    """
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[len("0::") :] or "/"
    raise KernelSupportError(
        "no cgroup v2 line (`0::/...`) in /proc/<pid>/cgroup: this host runs cgroup v1 only; "
        "mount cgroup v2 with `mount -t cgroup2 none /sys/fs/cgroup/unified` "
        "or boot with systemd.unified_cgroup_hierarchy=1"
    )


def cgroup_v2_path_of_pid(pid: int, proc: Path = Path("/proc")) -> str:
    """Return the cgroup v2 path of a process, relative to the cgroup v2 root.

    Raises FileNotFoundError or ProcessLookupError if the process has exited.
    """
    return parse_proc_cgroup((proc / str(pid) / "cgroup").read_text())


def parse_container_cgroup(path: str) -> tuple[str, str] | None:
    """Return (runtime, full container id) if a cgroup path belongs to a container.

    The innermost container wins: a container nested in another (docker in
    docker) or a sub-cgroup a container made inside its own is attributed to
    the deepest container component of the path. Bare 64-hex directory names
    count only under `/docker/` or a kubepods pod directory, where the cgroupfs
    driver puts them; elsewhere they could be anything. A pod's sandbox (pause)
    container looks like any other container here.
    """
    found = find_container_cgroup(path)
    return None if found is None else (found.runtime, found.id)


@dataclass(frozen=True)
class ContainerCgroup:
    """A container recognised from a cgroup path, and where its own cgroup is."""

    runtime: str
    id: str
    # The container's own cgroup: the path itself, or the ancestor of a
    # sub-cgroup the container made, e.g. `/machine.slice/libpod-<id>.scope`.
    path: str


def find_container_cgroup(path: str) -> ContainerCgroup | None:
    """Like `parse_container_cgroup`, and also say which ancestor is the container's own cgroup."""
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts) - 1, -1, -1):
        name = parts[depth]
        own = "/" + "/".join(parts[: depth + 1])
        if _CONMON.fullmatch(name):
            return None
        for pattern, runtime in _NAMED_SCOPES:
            match = pattern.fullmatch(name)
            if match:
                return ContainerCgroup(runtime, match.group("id"), own)
        if _BARE_ID.fullmatch(name):
            runtime_of_bare = _runtime_of_bare_id(parts[:depth])
            if runtime_of_bare is not None:
                return ContainerCgroup(runtime_of_bare, name, own)
    return None


def unidentified_container_cgroup(path: str) -> bool:
    """Whether a cgroup that names no container lies where runtimes put only containers.

    Such a cgroup (a runtime's newer naming, a container made by hand in the
    runtime's tree) is handled as a container whose metadata is unknown: the
    policies for all containers apply, fail closed. conmon's cgroups are the
    host's.
    """
    parts = [p for p in path.split("/") if p]
    if any(p == "conmon" or _CONMON.fullmatch(p) for p in parts):
        return False
    above = parts[:-1]
    if "kubepods" in above and any(_CGROUPFS_POD.fullmatch(p) for p in above):
        return True
    return any(tree.fullmatch(p) for p in above for tree in _CONTAINER_TREES)


def _runtime_of_bare_id(parents: list[str]) -> str | None:
    if parents and parents[-1] == "docker":
        return "docker"
    if parents and _CGROUPFS_POD.fullmatch(parents[-1]) and "kubepods" in parents:
        # The cgroupfs driver does not say which runtime made the container.
        return "kubernetes"
    return None


def cgroup_dir(root: Path, rel: str) -> Path:
    """Return the directory of cgroup `rel` under the cgroup v2 mount `root`."""
    return root / rel.lstrip("/")


def cgroup_inode(root: Path, rel: str) -> int:
    """Return the cgroup id BPF reports for tasks in `rel`: its directory's inode number."""
    return os.stat(cgroup_dir(root, rel)).st_ino


def cgroup_ids_below(root: Path, rel: str) -> tuple[int, ...]:
    """Return the cgroup ids of `rel` and every cgroup below it, `rel` first.

    Raises FileNotFoundError if `rel` itself does not exist; sub-cgroups that
    vanish during the walk (a container stopping) are left out, not errors.
    """
    return tuple(inode for _, inode in walk_cgroups(root, rel))


def walk_cgroups(root: Path, rel: str = "/") -> Iterator[tuple[str, int]]:
    """Yield (path, cgroup id) for `rel` and each cgroup below it, parents before children.

    Raises FileNotFoundError if `rel` itself does not exist; sub-cgroups that
    vanish during the walk are skipped.
    """
    top = "/" + rel.strip("/")
    stack = [(top, cgroup_inode(root, top))]
    while stack:
        path, inode = stack.pop()
        yield path, inode
        prefix = path.rstrip("/")
        children = _child_cgroups(cgroup_dir(root, path))
        # Pushed in reverse so that they pop, and are yielded, in name order.
        stack.extend((f"{prefix}/{name}", child) for name, child in reversed(children))


def _child_cgroups(directory: Path) -> list[tuple[str, int]]:
    # Sorted so that walks, and the ids built from them, come out in the same
    # order on every run.
    children: list[tuple[str, int]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        children.append((entry.name, entry.stat(follow_symlinks=False).st_ino))
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(children)
