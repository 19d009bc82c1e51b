"""Policies plus the containers that exist -> the contents of the BPF maps.

A pure function: no I/O, no kernel. The kernel side looks up, per exec, the
policy *set* of the caller's cgroup, then the file that runs within that set:
its resolved path, its inode and its basenames. Each hit names a (policy,
rule, target) and its action, with the policy's mode folded in, so switching
a policy between enforce and audit is a map update.

A set is a distinct combination of policies *and* of how their paths resolve
in the container's root (`enforcer.enforce.resolve`, done by the caller): `/bin/sh` is
`/usr/bin/dash` in one container and `/bin/sh` in another, so the two get sets
of their own, while containers that resolve alike share one.

Each set's entries are made by `enforcer.enforce.rule_entries`; which
containers a policy selects, by `enforcer.enforce.selection`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from enforcer.bpf import abi
from enforcer.containers.model import Container
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.ids import Ids
from enforcer.enforce.map_contents import Hit, MapContents, check_capacity
from enforcer.enforce.resolve import RootView
from enforcer.enforce.rule_entries import RuleEntries
from enforcer.enforce.selection import NO_NETNS, Selection, select
from enforcer.policy.model import ExecPolicy

NO_VIEWS: Mapping[str, RootView] = MappingProxyType({})
# The key of the host's own root in `views`.
HOST_VIEW = ""


# How a set's policies' paths and dirs resolve: (as written, canonical) pairs.
Resolution = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SetKey:
    """What makes two cgroups share a policy set."""

    members: frozenset[str]
    resolution: Resolution = ()

    def order(self) -> tuple[list[str], Resolution]:
        return sorted(self.members), self.resolution


@dataclass(frozen=True)
class Compiled:
    maps: MapContents
    selections: tuple[Selection, ...]
    ids: Ids
    # The set number of each set key, so a container that appears later and
    # joins an existing set is a few map writes, not a recompile.
    sets: Mapping[SetKey, int]


def compile_policies(
    policies: Sequence[ExecPolicy],
    containers: Sequence[Container],
    ids: Ids | None = None,
    netns: Mapping[str, int] = NO_NETNS,
    views: Mapping[str, RootView] = NO_VIEWS,
) -> Compiled:
    """Compiles policies against the containers and named network namespaces that exist now.

    `views` holds, per container id (HOST_VIEW for the host), how the policies'
    paths and dirs resolve in its root; a path missing there is taken as written.
    """
    ids = ids if ids is not None else Ids()
    selections = tuple(select(p, containers, netns) for p in policies)
    by_policy = {p.name: p for p in policies}
    cgroup_keys, owners = _set_keys_per_cgroup(selections, containers, by_policy, views)
    host_members = frozenset(s.policy for s in selections if s.host)
    host_key = set_key(host_members, [by_policy[m] for m in host_members], views.get(HOST_VIEW))
    set_ids = _number_sets([*cgroup_keys.values(), host_key])
    tables = RuleEntries(ids)
    for key, set_id in set_ids.items():
        for policy_name in sorted(key.members):
            tables.add_policy(by_policy[policy_name], set_id, dict(key.resolution))
        tables.add_defaults(set_id, [by_policy[name] for name in sorted(key.members)])
    for cgroup_id, key in cgroup_keys.items():
        if key in set_ids:
            tables.add_inodes(set_ids[key], views.get(owners[cgroup_id], {}))
    if host_key in set_ids:
        tables.add_inodes(set_ids[host_key], views.get(HOST_VIEW, {}))
    maps = tables.contents(
        cgroup_sets={cg: set_ids.get(key, abi.NO_SET) for cg, key in cgroup_keys.items()},
        host_set_id=set_ids.get(host_key, abi.NO_SET),
    )
    check_capacity(maps)
    return Compiled(maps=maps, selections=selections, ids=ids, sets=set_ids)


def set_key(
    members: frozenset[str], policies: Sequence[ExecPolicy], view: RootView | None
) -> SetKey:
    """The set a cgroup with these policies and this root view belongs to."""
    if not members:
        return SetKey(members)
    resolution = tuple(
        sorted(
            (target, canonical)
            for target in path_targets(policies)
            if (canonical := _canonical(target, view)) != target
        )
    )
    return SetKey(members, resolution)


def path_targets(policies: Iterable[ExecPolicy]) -> list[str]:
    """Every path and dir the policies name, their calledBy's too, as written.

    These are what `enforcer.enforce.resolve` resolves in each container's root.
    """
    targets: dict[str, None] = {}
    for policy in policies:
        for rule in policy.spec.rules:
            for files in (rule.match, rule.match.called_by):
                if files is not None:
                    targets.update(dict.fromkeys(files.paths))
                    targets.update(dict.fromkeys(files.dirs))
    return list(targets)


@dataclass(frozen=True)
class InodeEntries:
    """What a container joining an existing set adds: the files its policy paths resolve to."""

    rules: Mapping[tuple[int, int, int], tuple[Hit, ...]]
    callers: Mapping[tuple[int, int, int], CallerEntry]


def inode_entries(
    policies: Sequence[ExecPolicy], set_id: int, ids: Ids, view: RootView
) -> InodeEntries:
    """The inode entries a container with this view adds to an existing set."""
    tables = RuleEntries(ids)
    for policy in policies:
        tables.add_policy(policy, set_id, {})
    tables.add_inodes(set_id, view)
    contents = tables.contents({}, abi.NO_SET)
    return InodeEntries(dict(contents.inodes), dict(contents.caller_inodes))


def _canonical(target: str, view: RootView | None) -> str:
    resolved = view.get(target) if view is not None else None
    return resolved.canonical if resolved is not None else target


def _set_keys_per_cgroup(
    selections: Iterable[Selection],
    containers: Sequence[Container],
    by_policy: Mapping[str, ExecPolicy],
    views: Mapping[str, RootView],
) -> tuple[dict[int, SetKey], dict[int, str]]:
    """Every known container cgroup, with its set key (maybe of no policy), and its container.

    Unselected containers are listed too, so the kernel does not mistake them
    for host processes.
    """
    by_container: dict[str, set[str]] = defaultdict(set)
    for s in selections:
        for container_id in s.container_ids:
            by_container[container_id].add(s.policy)
    keys: dict[int, SetKey] = {}
    owners: dict[int, str] = {}
    for container in containers:
        members = frozenset(by_container.get(container.id, ()))
        key = set_key(members, [by_policy[m] for m in members], views.get(container.id))
        for cgroup_id in container.cgroup_ids:
            if cgroup_id not in keys or not keys[cgroup_id].members:
                keys[cgroup_id], owners[cgroup_id] = key, container.id
    return keys, owners


def _number_sets(keys: Iterable[SetKey]) -> dict[SetKey, int]:
    distinct = sorted({key for key in keys if key.members}, key=SetKey.order)
    return {key: number for number, key in enumerate(distinct, start=1)}
