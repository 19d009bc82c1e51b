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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from enforcer import abi
from enforcer.abi import Action
from enforcer.containers.model import Container
from enforcer.errors import EnforcerError
from enforcer.policy.model import ExecPolicy, Mode, RuleAction

K = TypeVar("K")


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


def compile_policies(
    policies: Sequence[ExecPolicy], containers: Sequence[Container], ids: Ids | None = None
) -> Compiled:
    """Compiles policies against the containers that exist now."""
    ids = ids if ids is not None else Ids()
    selections = tuple(select(p, containers) for p in policies)
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
    return Compiled(maps=maps, selections=selections, ids=ids)


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


def select(policy: ExecPolicy, containers: Sequence[Container]) -> Selection:
    """The containers one policy's selector picks out of those that exist."""
    selector = policy.spec.selector
    if selector.all_containers:
        return Selection(policy.name, tuple(c.id for c in containers), selector.host, ())
    chosen: list[str] = []
    unresolved: list[str] = []
    refs = selector.containers.ids if selector.containers else ()
    for ref in refs:
        matches = [c.id for c in containers if c.id.startswith(ref)]
        if len(matches) == 1 or ref in matches:
            chosen.append(ref if ref in matches else matches[0])
        else:
            why = "matches no running container" if not matches else "matches several containers"
            unresolved.append(f"{ref}: {why}")
    return Selection(policy.name, tuple(dict.fromkeys(chosen)), selector.host, tuple(unresolved))


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
        kills = policy.spec.mode is Mode.ENFORCE and rule.action is RuleAction.KILL
        action = Action.KILL if kills else Action.AUDIT
        rule_id = ids.rules.number((policy.name, rule.name))
        for target, table, key in _targets(rule.match.names, rule.match.paths, rule.match.dirs):
            hit = Hit(policy_id, rule_id, ids.targets.number(target), action)
            (names if table == "names" else paths)[(set_id, key)].append(hit)


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
