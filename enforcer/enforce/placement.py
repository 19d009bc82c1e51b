"""Which set of rules the kernel applies to each cgroup, between and after compiles.

A compile places every container known then. Containers and cgroups that
appear later are placed here one by one: a few map writes when a container
joins a set already compiled, a recompile (the engine's) when its set is new.
The bookkeeping also remembers whose each cgroup is, for naming its counts
and events.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from enforcer.bpf.abi import MAX_COUNTERS
from enforcer.containers.model import Container
from enforcer.enforce.compiler import (
    HOST_VIEW,
    Compiled,
    inode_entries,
    path_targets,
    set_key,
)
from enforcer.enforce.denials import HOST
from enforcer.enforce.ids import Ids
from enforcer.enforce.resolve import HOST_ROOT, ResolveError, RootView, container_root, root_view
from enforcer.enforce.selection import select
from enforcer.enforce.tables import RuleTables
from enforcer.errors import EnforcerError
from enforcer.policy.loader import LoadedPolicy
from enforcer.policy.model import ExecPolicy

log = logging.getLogger(__name__)


@dataclass
class InForce:
    """What the kernel enforces now: the policies, the containers and the maps compiled.

    The engine replaces all three at each compile; placement adds containers
    and cgroups, and inode entries, between compiles. Both under one lock.
    """

    policies: tuple[LoadedPolicy, ...] = ()
    containers: list[Container] = field(default_factory=list)
    compiled: Compiled | None = None


class Placement:
    """Cgroups -> sets, and cgroups -> their containers."""

    def __init__(
        self,
        in_force: InForce,
        rules: RuleTables,
        *,
        ids: Ids,
        lock: threading.Lock,
        netns: Callable[[], Mapping[str, int]],
        recompile: Callable[[list[Container]], str | None],
    ) -> None:
        self._in_force = in_force
        self._rules = rules
        self._ids = ids
        self._lock = lock
        self._netns = netns
        # Compiles the policies in force for these containers: why it failed, or None.
        self._recompile = recompile
        self._cgroup_owner: dict[int, Container] = {}
        # Owners of removed sub-cgroups, oldest first (see forget_cgroup).
        self._departed: OrderedDict[int, Container] = OrderedDict()
        # cgroup id -> set number for cgroups placed since the last compile,
        # None for those found to be host cgroups.
        self._placed: dict[int, int | None] = {}
        # Cgroups of containers that could not be placed: their held execs are
        # decided by AnyRule alone (fail closed).
        self._unplaceable: dict[int, str] = {}

    def compiled(self, compiled: Compiled, containers: Sequence[Container]) -> None:
        """A compile placed these containers' cgroups; the host cgroups placed before stay."""
        self._placed = {cg: None for cg, number in self._placed.items() if number is None}
        self._placed.update(compiled.maps.cgroup_sets)
        for container in containers:
            for cgroup_id in container.cgroup_ids:
                self._cgroup_owner[cgroup_id] = container

    def metadata_unknown(self, cgroup_id: int) -> bool:
        """Whether a policy selects by metadata this cgroup's runtime did not give."""
        container = self._cgroup_owner.get(cgroup_id)
        if container is None or container.metadata_known:
            return False
        return any(
            c.names or c.images or c.labels
            for p in self._in_force.policies
            if (c := p.policy.spec.selector.containers) is not None
        )

    def needs_pid(self) -> bool:
        """Whether placing a container needs its process (namespace selectors do)."""
        return any(p.policy.spec.selector.namespaces for p in self._in_force.policies)

    def set_of(self, cgroup_id: int) -> int | None:
        """The set number a cgroup is enforced with, or None if it was never placed."""
        if cgroup_id not in self._placed:
            return None
        number = self._placed[cgroup_id]
        return self._host_set() if number is None else number

    def enforced_set(self, cgroup_id: int) -> int:
        """The set the kernel applies to a cgroup it has classified: its own, else the host's."""
        number = self.set_of(cgroup_id)
        return self._host_set() if number is None else number

    def _host_set(self) -> int:
        compiled = self._in_force.compiled
        return compiled.maps.host_set_id if compiled else 0

    def place(self, container: Container) -> int:
        """Enforces the current policies on a container that appeared; returns its set.

        A few map writes when the container joins a set already compiled (its
        cgroups, and the inodes its policy paths resolve to); a full recompile
        when its set is new.
        """
        with self._lock:
            in_force = self._in_force
            containers = [c for c in in_force.containers if c.id != container.id] + [container]
            compiled = in_force.compiled
            netns = self._netns()
            chosen = [
                p.policy
                for p in in_force.policies
                if container.id in select(p.policy, containers, netns).container_ids
            ]
            members = frozenset(p.name for p in chosen)
            view = policy_view(chosen, container_root(container.pid)) if chosen else {}
            key = set_key(members, chosen, view)
            number = compiled.sets.get(key) if compiled and members else 0
            if number is None or compiled is None:
                return self._place_by_compiling(container, containers)
            if number:
                self._join_set(compiled, number, chosen, view)
            self._rules.assign_cgroups({cg: number for cg in container.cgroup_ids})
            in_force.containers = containers
            for cgroup_id in container.cgroup_ids:
                self._placed[cgroup_id] = number
                self._cgroup_owner[cgroup_id] = container
        log.info(
            "container %s (%s%s) placed: %s",
            container.short_id,
            container.runtime,
            f", {container.name}" if container.name else "",
            ", ".join(sorted(members)) or "no policy selects it",
        )
        return number

    def _place_by_compiling(self, container: Container, containers: list[Container]) -> int:
        """Places a container whose set is new: a recompile, or the container unplaceable."""
        error = self._recompile(containers)
        if error is not None:
            self._unplaceable.update(dict.fromkeys(container.cgroup_ids, "cannot compile"))
            raise EnforcerError(f"container {container.short_id} cannot be placed: {error}")
        return self._placed[container.cgroup_ids[0]] or 0

    def _join_set(
        self, compiled: Compiled, number: int, chosen: list[ExecPolicy], view: RootView
    ) -> None:
        """Adds the files a new member's policy paths resolve to to its set."""
        chosen = sorted(chosen, key=lambda p: p.name)
        entries = inode_entries(chosen, number, self._ids, view)
        fresh = {k: v for k, v in entries.rules.items() if k not in compiled.maps.inodes}
        callers = {k: v for k, v in entries.callers.items() if k not in compiled.maps.caller_inodes}
        if fresh:
            self._rules.add_inodes(fresh)
        if callers:
            self._rules.add_caller_inodes(callers)
        if fresh or callers:
            maps = replace(
                compiled.maps,
                inodes={**compiled.maps.inodes, **fresh},
                caller_inodes={**compiled.maps.caller_inodes, **callers},
            )
            self._in_force.compiled = replace(compiled, maps=maps)

    def place_below(self, cgroup_id: int, path: str) -> bool:
        """Places a new cgroup made inside a placed container as that container's.

        The kernel gave it the container's set at mkdir already; this records
        whose it is, with no runtime asked and no cgroup tree walked, so a
        mkdir flood inside a container costs the daemon one lookup each.
        Returns False when no placed container holds the path.
        """
        with self._lock:
            containers = self._in_force.containers
            owner = next(
                (c for c in containers
                 if path.startswith(c.cgroup_path.rstrip("/") + "/")
                 and c.cgroup_ids and c.cgroup_ids[0] in self._placed),
                None,
            )  # fmt: skip
            if owner is None:
                return False
            number = self._placed[owner.cgroup_ids[0]]
            self._rules.assign_cgroups({cgroup_id: number})
            self._placed[cgroup_id] = number
            # A container's cgroups are what the next compile writes: this one too.
            grown = replace(owner, cgroup_ids=(*owner.cgroup_ids, cgroup_id))
            self._in_force.containers = [grown if c is owner else c for c in containers]
            self._cgroup_owner[cgroup_id] = grown
        return True

    def unplaceable(self, cgroup_id: int) -> bool:
        """Whether the cgroup's container could not be placed under its policies."""
        return cgroup_id in self._unplaceable

    def place_host(self, cgroup_id: int) -> None:
        """Marks a new cgroup as a host cgroup: the host policies apply to it."""
        with self._lock:
            self._rules.assign_cgroups({cgroup_id: None})
            self._placed[cgroup_id] = None

    def forget_cgroup(self, cgroup_id: int) -> None:
        """A cgroup was removed; a container whose own cgroup it was is gone."""
        with self._lock:
            self._placed.pop(cgroup_id, None)
            self._unplaceable.pop(cgroup_id, None)
            containers = self._in_force.containers
            gone = [c for c in containers if c.cgroup_ids and c.cgroup_ids[0] == cgroup_id]
            if gone:
                self._in_force.containers = [c for c in containers if c not in gone]
                log.info("container %s stopped", gone[0].short_id)
                return
            # A sub-cgroup: its container keeps running without it. Whose it
            # was stays known for the counts made there, as long as the
            # counters map could hold one of them (bounded: a mkdir/rmdir
            # loop inside a container leaves nothing behind past that).
            self._in_force.containers = [
                replace(c, cgroup_ids=tuple(i for i in c.cgroup_ids if i != cgroup_id))
                if cgroup_id in c.cgroup_ids[1:] else c
                for c in containers
            ]  # fmt: skip
            owner = self._cgroup_owner.pop(cgroup_id, None)
            if owner is not None:
                self._departed[cgroup_id] = owner
                while len(self._departed) > MAX_COUNTERS:
                    self._departed.popitem(last=False)

    def container_of(self, cgroup_id: int) -> Container | None:
        """The container a cgroup is (in), as placed; None for the host's and unknown ones."""
        return self._cgroup_owner.get(cgroup_id)

    def owner(self, cgroup_id: int) -> tuple[str, str]:
        """(container id, container name) of a cgroup, or ("host", "") for the rest."""
        container = self._cgroup_owner.get(cgroup_id) or self._departed.get(cgroup_id)
        return (container.id, container.name) if container else (HOST, "")


def root_views(
    policies: Sequence[ExecPolicy], containers: Sequence[Container], netns: Mapping[str, int]
) -> dict[str, RootView]:
    """How each selected container's (and the host's) policy paths resolve in its root."""
    chosen: dict[str, list[ExecPolicy]] = {}
    views: dict[str, RootView] = {}
    for policy in policies:
        if not path_targets([policy]):
            continue
        selection = select(policy, containers, netns)
        for container_id in selection.container_ids:
            chosen.setdefault(container_id, []).append(policy)
        if selection.host:
            chosen.setdefault(HOST_VIEW, []).append(policy)
    pids = {c.id: c.pid for c in containers}
    for owner, owner_policies in chosen.items():
        root = HOST_ROOT if owner == HOST_VIEW else container_root(pids.get(owner))
        views[owner] = policy_view(owner_policies, root)
    return views


def policy_view(policies: Sequence[ExecPolicy], root: Path | None) -> RootView:
    """The policies' paths resolved in `root`; empty (taken as written) where it cannot be read."""
    targets = path_targets(policies)
    if not targets or root is None:
        return {}
    try:
        return root_view(root, targets)
    except ResolveError as e:
        log.warning("policy paths taken as written in %s: %s", root, e)
        return {}
