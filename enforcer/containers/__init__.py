"""Container discovery: which containers run here, what their runtimes call them, and
which cgroup ids and namespaces are theirs."""

from enforcer.containers.cgroup import (
    ContainerCgroup,
    cgroup_ids_below,
    cgroup_inode,
    cgroup_v2_path_of_pid,
    find_cgroup2_mount,
    find_container_cgroup,
    parse_container_cgroup,
    parse_proc_cgroup,
)
from enforcer.containers.inventory import (
    STATE_WAIT_S,
    AmbiguousContainerError,
    NoSuchContainerError,
    discover,
    identify,
    resolve_container,
)
from enforcer.containers.metadata import DEFAULT_SOURCES, MetadataSources
from enforcer.containers.model import Container, RuntimeMetadata
from enforcer.containers.namespaces import pid_and_net_namespaces
from enforcer.containers.netns import named_netns
from enforcer.containers.runc import DEFAULT_RUNC_ROOTS, RuncState, parse_state, read_runc_states

__all__ = [
    "DEFAULT_RUNC_ROOTS",
    "DEFAULT_SOURCES",
    "STATE_WAIT_S",
    "AmbiguousContainerError",
    "Container",
    "ContainerCgroup",
    "MetadataSources",
    "NoSuchContainerError",
    "RuncState",
    "RuntimeMetadata",
    "cgroup_ids_below",
    "cgroup_inode",
    "cgroup_v2_path_of_pid",
    "discover",
    "find_cgroup2_mount",
    "find_container_cgroup",
    "identify",
    "named_netns",
    "parse_container_cgroup",
    "parse_proc_cgroup",
    "parse_state",
    "pid_and_net_namespaces",
    "read_runc_states",
    "resolve_container",
]
