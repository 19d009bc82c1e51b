"""What enforcer knows about one container: its identity and the cgroups it runs in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SHORT_ID_LENGTH = 12


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Container:
    """A running container as seen from the host.

    `cgroup_ids` is what the BPF side matches on: `bpf_get_current_cgroup_id()`
    returns the inode number of the calling task's cgroup v2 directory, and a
    container's processes may sit in sub-cgroups it creates itself (systemd in a
    container, podman's `--cgroups=split`), so the container's own directory and
    every directory below it are listed.
    """

    id: str
    runtime: str
    name: str = ""
    image: str = ""
    # Excluded from the hash: a mapping is not hashable, and id plus cgroup
    # already tell containers apart.
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    cgroup_path: str = "/"  # relative to the cgroup v2 root, e.g. "/<id>"
    cgroup_ids: tuple[int, ...] = ()
    pid: int | None = None
    # Inode numbers of the init process's namespaces (`ls -Li /proc/PID/ns/pid`),
    # for namespace selectors; None when no process of the container is known.
    pid_ns: int | None = None
    net_ns: int | None = None
    # False when the runtime could not be asked (timeout, not installed): the
    # name, image and labels above are then unknown, not empty.
    metadata_known: bool = True

    def __post_init__(self) -> None:
        # Copy into a read-only view so that the caller's dict, mutated later,
        # cannot change a container that is frozen everywhere else.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def short_id(self) -> str:
        """The first 12 characters of the id, as `docker ps` and `runc list` users know it."""
        return self.id[:SHORT_ID_LENGTH]


# The labels the kubelet puts on every container it asks a CRI runtime for;
# enforcer gives them to CRI containers too, so selectors can name pods.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
# What the kubelet, dockershim and CRI-O call a pod's sandbox (pause) container.
SANDBOX_CONTAINER_NAME = "POD"


@dataclass(frozen=True)
class RuntimeMetadata:
    """What a container runtime says about one of its containers, beyond its cgroup.

    `pid` is the runtime's idea of the init process on the host, when it says
    (podman's and Docker's records do; CRI annotations do not).
    """

    name: str = ""
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    pid: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
