"""List the containers running on this host, and find one by what a person typed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from enforcer.containers.cgroup import (
    cgroup_ids_below,
    cgroup_v2_path_of_pid,
    find_cgroup2_mount,
    find_container_cgroup,
    parse_container_cgroup,
    unidentified_container_cgroup,
    walk_cgroups,
)
from enforcer.containers.metadata import (
    DEFAULT_SOURCES,
    MetadataSources,
    Sighting,
    fetch_metadata,
    runtime_of,
)
from enforcer.containers.model import Container, RuntimeMetadata
from enforcer.containers.namespaces import pid_and_net_namespaces
from enforcer.containers.runc import (
    DEFAULT_RUNC_ROOTS,
    STATE_FILE,
    RuncState,
    is_running,
    read_runc_states,
    read_state,
    state_dirs_of,
)
from enforcer.errors import ContainerLookupError

log = logging.getLogger(__name__)

# How long identify() waits for runc to write the state of a container whose
# state directory and cgroup exist already: runc writes it milliseconds later.
STATE_WAIT_S = 1.0
_STATE_POLL_S = 0.01
_UNKNOWN = RuntimeMetadata()
# What a cgroup in a runtime's tree that names no container is called:
# "unidentified:" plus its cgroup path, runtime "unidentified".
UNIDENTIFIED_RUNTIME = "unidentified"
UNIDENTIFIED = f"{UNIDENTIFIED_RUNTIME}:"

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
    sources: MetadataSources = DEFAULT_SOURCES,
) -> list[Container]:
    """Return every container running now, each once, with what its runtime says about it.

    First runc's own state (which knows the init pid and the annotations),
    then every cgroup whose name marks a container of a known runtime
    (Docker, podman, containerd, CRI-O, Kubernetes) that runc's state did not
    cover. Then each runtime is asked for names, images and labels (podman
    once for all its containers; see `enforcer.containers.metadata`), and the
    init process's pid and network namespaces are read. `cgroup_root`
    defaults to where cgroup v2 is mounted.
    """
    root = find_cgroup2_mount() if cgroup_root is None else cgroup_root
    found: dict[str, Sighting] = {}
    for state in read_runc_states(runc_roots, proc):
        sighting = _from_runc_state(state, root, proc)
        if sighting is not None:
            found.setdefault(sighting.id, sighting)
    for sighting in _from_cgroup_tree(root):
        found.setdefault(sighting.id, sighting)
    return _with_metadata(list(found.values()), sources, proc)


def identify(
    cgroup_path: str,
    pid: int | None,
    cgroup_root: Path | None = None,
    *,
    runc_roots: Sequence[Path] = DEFAULT_RUNC_ROOTS,
    proc: Path = Path("/proc"),
    sources: MetadataSources = DEFAULT_SOURCES,
    state_wait_s: float = STATE_WAIT_S,
) -> Container | None:
    """Tell whether a cgroup is (in) a container, and return that container if so.

    For lifecycle events: a new cgroup, or a process (`pid`) found in one.
    `cgroup_path` is relative to the cgroup v2 root, as /proc/PID/cgroup
    prints it. It is a container's when a component of it is named the way a
    runtime names its containers (`parse_container_cgroup`), or is the id of
    a runc state directory, as plain runc names a container's cgroup
    `/<id>`. A sub-cgroup of a container gives that container, with its own
    cgroup as `cgroup_path` and the ids of it and all below.

    Anything else is decided with a few stat calls and no subprocess. For a
    container, the runtime is asked as in `discover()`; podman is asked with
    `podman container inspect`, which waits while podman is still starting
    the container. runc makes a container's state directory before its
    cgroup but writes `state.json` only after: when the directory is there
    without it, this waits up to `state_wait_s` for it, and if it does not
    come, returns the container without what the state would tell (pid,
    annotations). `pid`, when given, is the pid whose namespaces are read;
    otherwise the init pid from the state or the runtime. Returns None when
    the cgroup is no container's, or is gone already.
    """
    rel = "/" + cgroup_path.strip("/")
    recognised = find_container_cgroup(rel)
    if recognised is not None:
        container_id, own, cgroup_runtime = recognised.id, recognised.path, recognised.runtime
        state_dirs = state_dirs_of(container_id, runc_roots)
    else:
        plain = _plain_runc_cgroup(rel, runc_roots)
        if plain is None:
            return _unidentified(rel, cgroup_root, pid)
        container_id, own, state_dirs = plain
        cgroup_runtime = None
    state = _wait_for_state(state_dirs, container_id, state_wait_s) if state_dirs else None
    root = find_cgroup2_mount() if cgroup_root is None else cgroup_root
    try:
        ids = cgroup_ids_below(root, own)
    except FileNotFoundError:
        log.debug("cgroup %s is gone before it could be identified", own)
        return None
    if pid is None and state is not None and is_running(state, proc):
        pid = state.pid
    sighting = Sighting(
        id=container_id,
        runtime=runtime_of(cgroup_runtime, state),
        cgroup_path=own,
        cgroup_ids=ids,
        pid=pid,
        annotations=state.labels if state is not None else None,
    )
    return _with_metadata([sighting], sources, proc)[0]


def _unidentified(rel: str, cgroup_root: Path | None, pid: int | None) -> Container | None:
    """A cgroup in a runtime's container tree that names no container, or None."""
    if not unidentified_container_cgroup(rel):
        return None
    root = find_cgroup2_mount() if cgroup_root is None else cgroup_root
    try:
        ids = cgroup_ids_below(root, rel)
    except FileNotFoundError:
        return None
    log.warning("cgroup %s lies in a container runtime's tree but names no container: "
                "the policies for all containers apply to it", rel)  # fmt: skip
    pid_ns, net_ns = pid_and_net_namespaces(pid, Path("/proc"))
    return Container(
        id=f"{UNIDENTIFIED}{rel}",
        runtime=UNIDENTIFIED_RUNTIME,
        cgroup_path=rel,
        cgroup_ids=ids,
        pid=pid,
        pid_ns=pid_ns,
        net_ns=net_ns,
        metadata_known=False,
    )


def _plain_runc_cgroup(rel: str, runc_roots: Sequence[Path]) -> tuple[str, str, list[Path]] | None:
    # The deepest component naming a runc state directory: the container's
    # own cgroup, with the path below it being its sub-cgroups.
    parts = [p for p in rel.split("/") if p]
    for depth in range(len(parts) - 1, -1, -1):
        state_dirs = state_dirs_of(parts[depth], runc_roots)
        if state_dirs:
            return parts[depth], "/" + "/".join(parts[: depth + 1]), state_dirs
    return None


def _wait_for_state(
    state_dirs: Sequence[Path], container_id: str, wait_s: float
) -> RuncState | None:
    deadline = time.monotonic() + wait_s
    while True:
        for state_dir in state_dirs:
            try:
                return read_state(state_dir / STATE_FILE)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                log.warning("cannot read runc state of container %s: %s", container_id, e)
                return None
        if time.monotonic() >= deadline:
            log.info(
                "runc has not written the state of container %s within %.1f s; "
                "identifying it without its annotations",
                container_id,
                wait_s,
            )
            return None
        time.sleep(_STATE_POLL_S)


def _with_metadata(
    sightings: Sequence[Sighting], sources: MetadataSources, proc: Path
) -> list[Container]:
    metadata = fetch_metadata(sightings, sources)
    return [_container(s, metadata.get(s.id), proc) for s in sightings]


def _container(sighting: Sighting, found: RuntimeMetadata | None, proc: Path) -> Container:
    metadata = found if found is not None else _UNKNOWN
    pid = sighting.pid if sighting.pid is not None else metadata.pid
    pid_ns, net_ns = pid_and_net_namespaces(pid, proc)
    return Container(
        id=sighting.id,
        runtime=sighting.runtime,
        name=metadata.name,
        image=metadata.image,
        labels=metadata.labels,
        cgroup_path=sighting.cgroup_path,
        cgroup_ids=sighting.cgroup_ids,
        pid=pid,
        pid_ns=pid_ns,
        net_ns=net_ns,
        metadata_known=found is not None,
    )


def _from_runc_state(state: RuncState, root: Path, proc: Path) -> Sighting | None:
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
    # runc under Docker, podman, containerd or CRI-O leaves a cgroup name that
    # says which of them manages the container; that is the more useful runtime.
    recognised = parse_container_cgroup(rel)
    cgroup_runtime = recognised[0] if recognised is not None and recognised[1] == state.id else None
    return Sighting(
        id=state.id,
        runtime=runtime_of(cgroup_runtime, state),
        cgroup_path=rel,
        cgroup_ids=ids,
        pid=state.pid,
        annotations=state.labels,
    )


def _from_cgroup_tree(root: Path) -> list[Sighting]:
    tree = list(walk_cgroups(root))
    sightings: dict[str, Sighting] = {}
    for index, (rel, _) in enumerate(tree):
        recognised = parse_container_cgroup(rel)
        if recognised is None and unidentified_container_cgroup(rel):
            if any(rel.startswith(s.cgroup_path + "/") for s in sightings.values()):
                continue  # below a container already sighted: one of its sub-cgroups
            recognised = (UNIDENTIFIED_RUNTIME, f"{UNIDENTIFIED}{rel}")
        # Parents come before children in the walk, so the first cgroup of an
        # id is the container's own; later ones are its sub-cgroups.
        if recognised is None or recognised[1] in sightings:
            continue
        runtime, container_id = recognised
        sightings[container_id] = Sighting(
            id=container_id,
            runtime=runtime,
            cgroup_path=rel,
            cgroup_ids=_ids_at_and_below(tree, index),
        )
    return list(sightings.values())


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
