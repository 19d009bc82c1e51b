"""Container discovery: which containers run here, and which cgroup ids are theirs."""

from enforcer.containers.cgroup import (
    cgroup_ids_below,
    cgroup_inode,
    cgroup_v2_path_of_pid,
    find_cgroup2_mount,
    parse_container_cgroup,
    parse_proc_cgroup,
)
from enforcer.containers.inventory import (
    AmbiguousContainerError,
    NoSuchContainerError,
    discover,
    resolve_container,
)
from enforcer.containers.model import Container
from enforcer.containers.runc import DEFAULT_RUNC_ROOTS, RuncState, parse_state, read_runc_states

__all__ = [
    "DEFAULT_RUNC_ROOTS",
    "AmbiguousContainerError",
    "Container",
    "NoSuchContainerError",
    "RuncState",
    "cgroup_ids_below",
    "cgroup_inode",
    "cgroup_v2_path_of_pid",
    "discover",
    "find_cgroup2_mount",
    "parse_container_cgroup",
    "parse_proc_cgroup",
    "parse_state",
    "read_runc_states",
    "resolve_container",
]
