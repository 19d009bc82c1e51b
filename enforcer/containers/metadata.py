"""Which runtime made a container, and what that runtime says about it.

A container is first *sighted*: by its cgroup's name, or by runc's state file.
This module then decides which runtime manages it and asks that runtime, in
its own way, for the container's name, image and labels:

- podman (cgroup `libpod-<id>`, or annotation `io.container.manager=libpod`):
  `podman container inspect`, one call for all of them;
- docker (cgroup `docker-<id>.scope` or `/docker/<id>`, or runc root `.../moby`):
  `/var/lib/docker/containers/<id>/config.v2.json`;
- containerd (annotation `io.kubernetes.cri.container-type`, or cgroup
  `cri-containerd-<id>.scope`): the CRI annotations in the runc state;
- crio (annotation `io.container.manager=cri-o`, or cgroup `crio-<id>`): the
  CRI-O annotations in the runc state;
- runc (a runc state and nothing else): the name is the id, the labels are
  the OCI annotations.

Metadata that cannot be had leaves the name, image and labels empty; the
container is still known by its cgroup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from enforcer.containers import containerd, crio, docker, podman
from enforcer.containers.model import RuntimeMetadata
from enforcer.containers.runc import RuncState

PODMAN = "podman"
DOCKER = "docker"
CONTAINERD = "containerd"
CRIO = "crio"
RUNC = "runc"
# Kubernetes' cgroupfs driver names a container's cgroup by its bare id, which
# does not say whether containerd or CRI-O made it.
KUBERNETES = "kubernetes"

_LIBPOD = "libpod"
# Docker runs runc with this root (a namespace of /run/docker/runtime-runc).
_DOCKER_RUNC_NAMESPACE = "moby"


@dataclass(frozen=True)
class MetadataSources:
    """Where runtimes keep what enforcer reads about their containers (tests use fixtures)."""

    docker_root: Path = docker.DOCKER_ROOT
    podman_command: tuple[str, ...] = podman.PODMAN_COMMAND
    podman_timeout_s: float = podman.PODMAN_TIMEOUT_S


DEFAULT_SOURCES = MetadataSources()


@dataclass(frozen=True)
class Sighting:
    """A container found by its cgroup or its runc state, before its runtime was asked about it."""

    id: str
    runtime: str
    cgroup_path: str
    cgroup_ids: tuple[int, ...]
    pid: int | None = None
    # The OCI annotations from the runc state; None when there is no state.
    annotations: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.annotations is not None:
            object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))


def runtime_of(cgroup_runtime: str | None, state: RuncState | None) -> str:
    """Decide which runtime manages a container, from its cgroup's name and its runc state.

    The annotations are the surer sign: the cgroupfs driver of Kubernetes
    names no runtime, and podman's annotations include some `io.kubernetes.cri-o.*`.
    """
    if state is not None:
        annotations = state.labels
        if containerd.is_cri_container(annotations):
            return CONTAINERD
        if crio.is_crio_container(annotations):
            return CRIO
        if annotations.get(crio.CONTAINER_MANAGER) == _LIBPOD:
            return PODMAN
    if cgroup_runtime is not None:
        return cgroup_runtime
    if state is not None and state.root is not None and state.root.name == _DOCKER_RUNC_NAMESPACE:
        return DOCKER
    return RUNC


def fetch_metadata(
    sightings: Sequence[Sighting], sources: MetadataSources = DEFAULT_SOURCES
) -> dict[str, RuntimeMetadata]:
    """Return each runtime's metadata for the sighted containers, by id, where it can be had.

    podman is asked once for all of its containers; every other source is a
    file or the annotations already read. Never raises: failures are logged
    by the runtime's module and leave that container out of the answer.
    """
    podman_ids = [s.id for s in sightings if s.runtime == PODMAN]
    found = (
        podman.inspect(podman_ids, sources.podman_command, sources.podman_timeout_s)
        if podman_ids
        else {}
    )
    for sighting in sightings:
        if sighting.runtime != PODMAN:
            metadata = _local_metadata(sighting, sources)
            if metadata is not None:
                found[sighting.id] = metadata
    return found


def _local_metadata(sighting: Sighting, sources: MetadataSources) -> RuntimeMetadata | None:
    annotations = sighting.annotations
    if sighting.runtime == DOCKER:
        return docker.read_metadata(sighting.id, sources.docker_root)
    if sighting.runtime == RUNC:
        # runc has no names; its labels are the OCI annotations of the bundle.
        return RuntimeMetadata(name=sighting.id, labels=annotations or {})
    if annotations is None:
        return None
    if sighting.runtime == CONTAINERD and containerd.is_cri_container(annotations):
        return containerd.metadata_from_annotations(annotations)
    if sighting.runtime == CRIO:
        return crio.metadata_from_annotations(annotations)
    return None
