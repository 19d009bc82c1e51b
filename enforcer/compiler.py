"""Policies plus the containers that exist -> the contents of the BPF maps.

A pure function: no I/O, no kernel. The kernel side looks up, per exec, the
policy *set* of the caller's cgroup (the distinct combination of policies that
select it), then the executed path and basename within that set. Each hit
names a (policy, rule, target) and its action, with the policy's mode folded
in, so switching a policy between enforce and audit is a map update.

Ids are stable across recompiles: `Ids` hands out the same number for the same
policy, rule and target name, so counters keep their meaning over a reload.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from enforcer import abi
from enforcer.abi import Action
from enforcer.containers.model import Container
from enforcer.errors import EnforcerError
from enforcer.policy.images import image_matches
from enforcer.policy.model import (
    ContainerSelector,
    ExecPolicy,
    Mode,
    NamespaceSelector,
    RuleAction,
    Selector,
)

K = TypeVar("K")

# Named network namespaces (`ip netns list`) -> inode number; the caller reads /run/netns.
NO_NETNS: Mapping[str, int] = MappingProxyType({})


class CompileError(EnforcerError):
    """Raised when valid policies cannot fit the kernel's fixed-size maps."""


class TargetKind(StrEnum):
    NAME = "name"
    PATH = "path"
    DIR = "dir"


@dataclass(frozen=True, order=True)
class Target:
    """One entry of a rule's match lists."""

    kind: TargetKind
    value: str

    def __str__(self) -> str:
        return self.value if self.kind is not TargetKind.DIR else f"{self.value.rstrip('/')}/*"


@dataclass(frozen=True, order=True)
class Hit:
    """What one lookup result tells the kernel: who matched and what to do."""

    policy_id: int
    rule_id: int
    target_id: int
    action: Action


class Numbering(Generic[K]):
    """Hands out 1, 2, 3... to keys, the same number for the same key, and back."""

    def __init__(self) -> None:
        self._numbers: dict[K, int] = {}
        self._keys: dict[int, K] = {}

    def number(self, key: K) -> int:
        if key not in self._numbers:
            if len(self._numbers) >= abi.MAX_ID16:
                raise CompileError(
                    f"more than {abi.MAX_ID16} distinct names were numbered; restart the daemon"
                )
            self._numbers[key] = len(self._numbers) + 1
            self._keys[self._numbers[key]] = key
        return self._numbers[key]

    def key(self, number: int) -> K | None:
        return self._keys.get(number)

    def items(self) -> list[tuple[K, int]]:
        return list(self._numbers.items())

    def restore(self, items: Iterable[tuple[K, int]]) -> None:
        """Takes back numbers handed out earlier (by a previous run of the daemon)."""
        for key, number in items:
            self._numbers[key] = number
            self._keys[number] = key

    def __len__(self) -> int:
        return len(self._numbers)


@dataclass
class Ids:
    """Stable small integers for policy names, (policy, rule) names and targets."""

    policies: Numbering[str] = field(default_factory=Numbering)
    rules: Numbering[tuple[str, str]] = field(default_factory=Numbering)
    targets: Numbering[Target] = field(default_factory=Numbering)


class IdsOf(Protocol):
    """Anything carrying the three ids of a hit: hits, counter keys, events."""

    @property
    def policy_id(self) -> int: ...
    @property
    def rule_id(self) -> int: ...
    @property
    def target_id(self) -> int: ...


@dataclass(frozen=True)
class CounterName:
    policy: str
    rule: str
    target: Target | str


def describe(ids: Ids, item: IdsOf) -> CounterName:
    """The names behind a hit's ids ("?" for an id this daemon never handed out)."""
    rule = ids.rules.key(item.rule_id)
    return CounterName(
        policy=ids.policies.key(item.policy_id) or f"?{item.policy_id}",
        rule=rule[1] if rule else f"?{item.rule_id}",
        target=ids.targets.key(item.target_id) or f"?{item.target_id}",
    )


@dataclass(frozen=True)
class MapContents:
    """Exactly what goes into the BPF maps (see bpf/enforcer.h)."""

    cgroup_sets: Mapping[int, int]
    host_set_id: int
    names: Mapping[tuple[int, str], tuple[Hit, ...]]
    # Keys are exact paths ending in "\0" or directories ending in "/": the
    # kernel's LPM trie returns the longest, so each entry already carries the
    # hits of every directory above it.
    paths: Mapping[tuple[int, str], tuple[Hit, ...]]


@dataclass(frozen=True)
class Selection:
    """Which containers a policy selects, and why a reference selected none."""

    policy: str
    container_ids: tuple[str, ...]
    host: bool
    unresolved: tuple[str, ...]


@dataclass(frozen=True)
class Compiled:
    maps: MapContents
    selections: tuple[Selection, ...]
    ids: Ids
    # The set number of each distinct combination of policies, so a container
    # that appears later and joins an existing combination is one map write.
    sets: Mapping[frozenset[str], int]


def compile_policies(
    policies: Sequence[ExecPolicy],
    containers: Sequence[Container],
    ids: Ids | None = None,
    netns: Mapping[str, int] = NO_NETNS,
) -> Compiled:
    """Compiles policies against the containers and named network namespaces that exist now."""
    ids = ids if ids is not None else Ids()
    selections = tuple(select(p, containers, netns) for p in policies)
    by_policy = {p.name: p for p in policies}
    cgroup_policies = _policies_per_cgroup(selections, containers)
    host_policies = frozenset(s.policy for s in selections if s.host)
    set_ids = _number_sets([*cgroup_policies.values(), host_policies])
    names: dict[tuple[int, str], list[Hit]] = defaultdict(list)
    paths: dict[tuple[int, str], list[Hit]] = defaultdict(list)
    for members, set_id in set_ids.items():
        for policy_name in sorted(members):
            _add_policy(by_policy[policy_name], set_id, ids, names, paths)
    maps = MapContents(
        cgroup_sets={
            cg: set_ids.get(members, abi.NO_SET) for cg, members in cgroup_policies.items()
        },
        host_set_id=set_ids.get(host_policies, abi.NO_SET),
        names=_freeze(names),
        paths=_freeze(_inherit_dir_hits(paths)),
    )
    _check_capacity(maps)
    return Compiled(maps=maps, selections=selections, ids=ids, sets=set_ids)


def _check_capacity(maps: MapContents) -> None:
    """Refuses contents the kernel maps cannot hold, before anything is written.

    Rule entries get half of each map: during a switch the old set and the new
    one are both in it (see bpf_program.ExecProgram.apply).
    """
    limits = (
        ("container cgroups", len(maps.cgroup_sets), abi.MAX_CGROUPS),
        (
            "program names (per distinct set of policies)",
            len(maps.names),
            abi.MAX_NAME_ENTRIES // 2,
        ),
        ("paths and directories (per set)", len(maps.paths), abi.MAX_PATH_ENTRIES // 2),
    )
    for what, count, limit in limits:
        if count > limit:
            raise CompileError(
                f"{count} {what} exceed the kernel map's room for {limit}; select fewer "
                "containers, or give containers that share rules the same policies"
            )


def select(
    policy: ExecPolicy, containers: Sequence[Container], netns: Mapping[str, int] = NO_NETNS
) -> Selection:
    """The containers one policy's selector picks out of those that exist, in their order.

    A container is picked when it passes every check the selector's keys ask for (see
    `enforcer.policy.model.Selector`). `netns` maps network namespace names to inode numbers,
    as the caller found them in /run/netns. An id that resolves to no single container and a
    network namespace name missing from `netns` select nothing and are listed as unresolved.
    """
    selector = policy.spec.selector
    if selector.all_containers:
        return Selection(policy.name, _distinct(c.id for c in containers), selector.host, ())
    checks, unresolved = _checks(selector, containers, netns)
    chosen = (c.id for c in containers if checks and all(check(c) for check in checks))
    return Selection(policy.name, _distinct(chosen), selector.host, tuple(unresolved))


ContainerCheck = Callable[[Container], bool]


def _checks(
    selector: Selector, containers: Sequence[Container], netns: Mapping[str, int]
) -> tuple[list[ContainerCheck], list[str]]:
    """One check per container or namespace key the selector gives, and what did not resolve."""
    checks: list[ContainerCheck] = []
    unresolved: list[str] = []
    if selector.containers is not None:
        checks.extend(_container_checks(selector.containers, containers, unresolved))
    if selector.namespaces is not None:
        checks.extend(_namespace_checks(selector.namespaces, netns, unresolved))
    return checks, unresolved


def _container_checks(
    by: ContainerSelector, containers: Sequence[Container], unresolved: list[str]
) -> Iterable[ContainerCheck]:
    if by.ids:
        ids = _resolve_ids(by.ids, containers, unresolved)
        yield lambda c: c.id in ids
    if by.names:
        # A container without a name matches no pattern, not even '*'.
        yield lambda c: bool(c.name) and any(fnmatchcase(c.name, p) for p in by.names)
    if by.images:
        yield lambda c: any(image_matches(pattern, c.image) for pattern in by.images)
    if by.labels:
        yield lambda c: all(c.labels.get(key) == value for key, value in by.labels.items())


def _namespace_checks(
    by: NamespaceSelector, netns: Mapping[str, int], unresolved: list[str]
) -> Iterable[ContainerCheck]:
    if by.pid:
        pid_inodes = frozenset(by.pid)
        yield lambda c: c.pid_ns is not None and c.pid_ns in pid_inodes
    if by.net:
        net_inodes = _resolve_net(by.net, netns, unresolved)
        yield lambda c: c.net_ns is not None and c.net_ns in net_inodes


def _resolve_ids(
    refs: Iterable[str], containers: Sequence[Container], unresolved: list[str]
) -> frozenset[str]:
    """The container ids that full ids or unique prefixes name; the others go to `unresolved`."""
    chosen: set[str] = set()
    for ref in refs:
        matches = [c.id for c in containers if c.id.startswith(ref)]
        if ref in matches:  # a full id, even if it is also a prefix of another id
            chosen.add(ref)
        elif len(matches) == 1:
            chosen.add(matches[0])
        else:
            why = "matches no running container" if not matches else "matches several containers"
            unresolved.append(f"{ref}: {why}")
    return frozenset(chosen)


def _resolve_net(
    refs: Iterable[int | str], netns: Mapping[str, int], unresolved: list[str]
) -> frozenset[int]:
    inodes: set[int] = set()
    for ref in refs:
        if isinstance(ref, int):
            inodes.add(ref)
        elif ref in netns:
            inodes.add(netns[ref])
        else:
            unresolved.append(f"network namespace {ref!r} does not exist")
    return frozenset(inodes)


def _distinct(container_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(container_ids))


def _policies_per_cgroup(
    selections: Iterable[Selection], containers: Sequence[Container]
) -> dict[int, frozenset[str]]:
    """Every known container cgroup, with the policies selecting it (maybe none).

    Unselected containers are listed too, so the kernel does not mistake them
    for host processes.
    """
    by_container: dict[str, set[str]] = defaultdict(set)
    for s in selections:
        for container_id in s.container_ids:
            by_container[container_id].add(s.policy)
    result: dict[int, frozenset[str]] = {}
    for container in containers:
        members = frozenset(by_container.get(container.id, ()))
        for cgroup_id in container.cgroup_ids:
            result[cgroup_id] = result.get(cgroup_id, frozenset()) | members
    return result


def _number_sets(sets: Iterable[frozenset[str]]) -> dict[frozenset[str], int]:
    distinct = sorted({s for s in sets if s}, key=sorted)
    return {members: number for number, members in enumerate(distinct, start=1)}


def _add_policy(
    policy: ExecPolicy,
    set_id: int,
    ids: Ids,
    names: dict[tuple[int, str], list[Hit]],
    paths: dict[tuple[int, str], list[Hit]],
) -> None:
    policy_id = ids.policies.number(policy.name)
    for rule in policy.spec.rules:
        action = _action(policy.spec.mode, rule.action)
        rule_id = ids.rules.number((policy.name, rule.name))
        for target, table, key in _targets(rule.match.names, rule.match.paths, rule.match.dirs):
            hit = Hit(policy_id, rule_id, ids.targets.number(target), action)
            (names if table == "names" else paths)[(set_id, key)].append(hit)


def _action(mode: Mode, action: RuleAction) -> Action:
    """A rule's action with its policy's mode folded in: audit mode only audits."""
    if mode is not Mode.ENFORCE or action is RuleAction.AUDIT:
        return Action.AUDIT
    return Action.DENY if action is RuleAction.DENY else Action.KILL


def _targets(
    names: Iterable[str], paths: Iterable[str], dirs: Iterable[str]
) -> Iterable[tuple[Target, str, str]]:
    for name in names:
        yield Target(TargetKind.NAME, name), "names", name
    for path in paths:
        yield Target(TargetKind.PATH, path), "paths", path + "\0"
    for directory in dirs:
        key = directory if directory.endswith("/") else directory + "/"
        yield Target(TargetKind.DIR, key), "paths", key


def _inherit_dir_hits(paths: dict[tuple[int, str], list[Hit]]) -> dict[tuple[int, str], list[Hit]]:
    """Adds to each path entry the hits of every directory entry above it."""
    result: dict[tuple[int, str], list[Hit]] = {}
    for (set_id, key), hits in paths.items():
        merged = list(hits)
        for cut in range(len(key) - 1):
            if key[cut] == "/":
                merged.extend(paths.get((set_id, key[: cut + 1]), ()))
        result[(set_id, key)] = merged
    return result


def _freeze(table: dict[tuple[int, str], list[Hit]]) -> dict[tuple[int, str], tuple[Hit, ...]]:
    frozen: dict[tuple[int, str], tuple[Hit, ...]] = {}
    for key, hits in table.items():
        unique = tuple(sorted(set(hits)))
        if len(unique) > abi.MAX_HITS:
            raise CompileError(
                f"{len(unique)} rules match {key[1].rstrip(chr(0))!r} in one selection; at most "
                f"{abi.MAX_HITS} can. Merge rules that name the same program."
            )
        frozen[key] = unique
    return frozen
