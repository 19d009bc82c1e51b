"""List the containers running on this host, and find one by what a person typed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from enforcer.containers.cgroup import (
    cgroup_ids_below,
    cgroup_v2_path_of_pid,
    find_cgroup2_mount,
    parse_container_cgroup,
    walk_cgroups,
)
from enforcer.containers.model import Container
from enforcer.containers.runc import DEFAULT_RUNC_ROOTS, RuncState, read_runc_states
from enforcer.errors import ContainerLookupError

log = logging.getLogger(__name__)

RUNC = "runc"

# How many known containers a "no match" message lists before "and N more".
_LISTED_IN_ERRORS = 5


class NoSuchContainerError(ContainerLookupError):
    """Raised when no container's id, id prefix or name matches what was asked for."""

    def __init__(self, ref: str, known: Sequence[Container]) -> None:
        self.ref = ref
        self.known = tuple(known)
        if not known:
            hint = (
                "no containers are running on this host "
                "(looked at runc's state files and the cgroup v2 tree)"
            )
        else:
            hint = "known containers: " + _describe(known)
        super().__init__(f"no container matches {ref!r}; {hint}")


class AmbiguousContainerError(ContainerLookupError):
    """Raised when an id prefix matches more than one container."""

    def __init__(self, ref: str, candidates: Sequence[Container]) -> None:
        self.ref = ref
        self.candidates = tuple(candidates)
        super().__init__(
            f"{ref!r} matches {len(candidates)} containers: {_describe(candidates)}; "
            "give more characters of the id"
        )


def _describe(containers: Sequence[Container]) -> str:
    shown = [_describe_one(c) for c in containers[:_LISTED_IN_ERRORS]]
    more = len(containers) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _describe_one(container: Container) -> str:
    # runc's names are the ids themselves: not worth printing twice.
    if container.name and container.name != container.id:
        return f"{container.short_id} ({container.runtime}, {container.name})"
    return f"{container.short_id} ({container.runtime})"


def discover(
    cgroup_root: Path | None = None,
    runc_roots: Sequence[Path] = DEFAULT_RUNC_ROOTS,
    proc: Path = Path("/proc"),
) -> list[Container]:
    """Return every container running now, each once.

    First runc's own state (which knows the init pid and the labels), then
    every cgroup whose name marks a container of a known runtime (Docker,
    podman, containerd, CRI-O, Kubernetes) that runc's state did not cover.
    `cgroup_root` defaults to where cgroup v2 is mounted.
    """
    root = find_cgroup2_mount() if cgroup_root is None else cgroup_root
    found: dict[str, Container] = {}
    for state in read_runc_states(runc_roots, proc):
        container = _from_runc_state(state, root, proc)
        if container is not None:
            found.setdefault(container.id, container)
    for container in _from_cgroup_tree(root):
        found.setdefault(container.id, container)
    return list(found.values())


def _from_runc_state(state: RuncState, root: Path, proc: Path) -> Container | None:
    try:
        rel = cgroup_v2_path_of_pid(state.pid, proc)
        if rel == "/":
            # A container left in the root cgroup shares its cgroup id with the
            # host's own processes; selecting it would select the whole host.
            log.warning(
                "ignoring runc container %s: it runs in the root cgroup, so it cannot be told "
                "apart from the host; give it its own cgroup (linux.cgroupsPath in config.json)",
                state.id,
            )
            return None
        ids = cgroup_ids_below(root, rel)
    except (FileNotFoundError, ProcessLookupError):
        # The container stopped since its state file was read.
        log.debug("runc container %s stopped while being listed", state.id)
        return None
    # runc under Docker, containerd or CRI-O leaves a cgroup name that says
    # which of them manages the container; that is the more useful runtime.
    recognised = parse_container_cgroup(rel)
    runtime = recognised[0] if recognised is not None and recognised[1] == state.id else RUNC
    return Container(
        id=state.id,
        runtime=runtime,
        name=state.id,  # runc has no names
        image="",
        labels=state.labels,
        cgroup_path=rel,
        cgroup_ids=ids,
        pid=state.pid,
    )


def _from_cgroup_tree(root: Path) -> list[Container]:
    tree = list(walk_cgroups(root))
    containers: dict[str, Container] = {}
    for index, (rel, _) in enumerate(tree):
        recognised = parse_container_cgroup(rel)
        # Parents come before children in the walk, so the first cgroup of an
        # id is the container's own; later ones are its sub-cgroups.
        if recognised is None or recognised[1] in containers:
            continue
        runtime, container_id = recognised
        containers[container_id] = Container(
            id=container_id,
            runtime=runtime,
            cgroup_path=rel,
            cgroup_ids=_ids_at_and_below(tree, index),
        )
    return list(containers.values())


def _ids_at_and_below(tree: list[tuple[str, int]], index: int) -> tuple[int, ...]:
    # The walk is depth first, so a cgroup's descendants directly follow it.
    top = tree[index][0]
    prefix = top.rstrip("/") + "/"
    ids = [tree[index][1]]
    for rel, inode in tree[index + 1 :]:
        if not rel.startswith(prefix):
            break
        ids.append(inode)
    return tuple(ids)


def resolve_container(ref: str, containers: Sequence[Container]) -> Container:
    """Return the container that `ref` names: its full id, its name, or a unique id prefix.

    A full id or an exact name wins over a prefix, as with `docker`, so a
    container named like the start of another's id can still be chosen.
    """
    if not ref:
        raise NoSuchContainerError(ref, containers)
    for candidates in (
        [c for c in containers if c.id == ref],
        [c for c in containers if c.name == ref],
        [c for c in containers if c.id.startswith(ref)],
    ):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AmbiguousContainerError(ref, candidates)
    raise NoSuchContainerError(ref, containers)
