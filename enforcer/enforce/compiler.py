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

Ids are stable across recompiles: `Ids` hands out the same number for the same
policy, rule and target name, so counters keep their meaning over a reload.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from enforcer.bpf import abi
from enforcer.bpf.abi import Action, SetFlag
from enforcer.containers.model import Container
from enforcer.enforce import keys
from enforcer.enforce.conditions import CallerEntry, Conditions
from enforcer.enforce.resolve import ResolvedPath, RootView
from enforcer.errors import CompileError
from enforcer.policy.images import image_matches
from enforcer.policy.model import (
    ContainerSelector,
    DefaultAction,
    ExecPolicy,
    Mode,
    NamespaceSelector,
    RuleAction,
    Selector,
)

K = TypeVar("K")

# Named network namespaces (`ip netns list`) -> inode number; the caller reads /run/netns.
NO_NETNS: Mapping[str, int] = MappingProxyType({})
NO_VIEWS: Mapping[str, RootView] = MappingProxyType({})
# The policy id of a group hit: one kernel hit standing for the rules past
# abi.MAX_HITS on one entry. Real policy ids start at 1.
GROUP_POLICY_ID = 0
# The key of the host's own root in `views`.
HOST_VIEW = ""
# The rule name of a policy's default in counters, events and metrics.
DEFAULT_RULE = "(default)"
# What a default hit names, where a rule hit names its target.
DEFAULT_TARGET = "(any program no rule names)"


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
    """What one lookup result tells the kernel: who matched and what to do.

    `caller` and `args` are the rule's conditions (calledBy, args): 0 for none, else 1 + the
    bit of its set's caller or args mask that must be set for the hit to count.
    """

    policy_id: int
    rule_id: int
    target_id: int
    action: Action
    caller: int = 0
    args: int = 0
    # Counted hits only (not in the kernel's struct hit): for a calledBy rule, the target
    # id of the calledBy entry that named the caller, as counter_key.caller_id.
    caller_id: int = 0

    @property
    def conditional(self) -> bool:
        return bool(self.caller or self.args)

    def counted(self, caller_id: int) -> Hit:
        """The hit as counters and events carry it: its conditions held."""
        return replace(self, caller=0, args=0, caller_id=caller_id if self.caller else 0)


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
    """Anything carrying the ids of a hit: hits, counter keys."""

    @property
    def policy_id(self) -> int: ...
    @property
    def rule_id(self) -> int: ...
    @property
    def target_id(self) -> int: ...
    @property
    def caller_id(self) -> int: ...


@dataclass(frozen=True)
class CounterName:
    policy: str
    rule: str
    target: Target | str
    caller: Target | str | None = None  # a calledBy rule's: the entry that named the caller


def describe(ids: Ids, item: IdsOf) -> CounterName:
    """The names behind a hit's ids ("?" for an id this daemon never handed out)."""
    rule = ids.rules.key(item.rule_id)
    default = rule is not None and rule[1] == DEFAULT_RULE
    return CounterName(
        policy=ids.policies.key(item.policy_id) or f"?{item.policy_id}",
        rule=rule[1] if rule else f"?{item.rule_id}",
        target=DEFAULT_TARGET
        if default
        else ids.targets.key(item.target_id) or f"?{item.target_id}",
        caller=(ids.targets.key(item.caller_id) or f"?{item.caller_id}")
        if item.caller_id
        else None,
    )


@dataclass(frozen=True)
class MapContents:
    """Exactly what goes into the BPF maps (see bpf/enforcer.h)."""

    cgroup_sets: Mapping[int, int]
    host_set_id: int
    names: Mapping[tuple[int, str], tuple[Hit, ...]]
    # Keys are exact paths ending in "\0" or directories ending in "/", as
    # resolved in the set's root: the kernel's LPM trie returns the longest, so
    # each entry already carries the hits of every directory above it.
    paths: Mapping[tuple[int, str], tuple[Hit, ...]]
    # (set, kernel dev, inode) of the files policy paths resolved to.
    inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]] = field(default_factory=dict)
    # set -> the hits of all its path and dir rules: what a path too deep for
    # the kernel's walk matches (fail closed).
    cut: Mapping[int, tuple[Hit, ...]] = field(default_factory=dict)
    # set -> SET_* flags: the lookups the kernel makes for it.
    set_flags: Mapping[int, int] = field(default_factory=dict)
    # set -> bit N set where the set names a program N bytes long (in UTF-8):
    # the kernel looks up only names of those lengths.
    set_name_lengths: Mapping[int, int] = field(default_factory=dict)
    # A group hit's rule id -> the hits it stands for (see _pack).
    groups: Mapping[int, tuple[Hit, ...]] = field(default_factory=dict)
    # set -> the default hit of each of its policies whose default is not
    # allow, in the order of match_value.named's bits (at most MAX_DEFAULTS).
    defaults: Mapping[int, tuple[Hit, ...]] = field(default_factory=dict)
    # What the calling program's file and the exec's arguments are looked up
    # in: each entry holds the bits of the set's conditions naming it (Hit.caller
    # and Hit.args are 1 + such a bit). Caller paths are keyed as `paths` are,
    # each already carrying the bits of every directory above it.
    caller_names: Mapping[tuple[int, str], CallerEntry] = field(default_factory=dict)
    caller_paths: Mapping[tuple[int, str], CallerEntry] = field(default_factory=dict)
    caller_inodes: Mapping[tuple[int, int, int], CallerEntry] = field(default_factory=dict)
    arg_values: Mapping[tuple[int, str], int] = field(default_factory=dict)

    def expand(self, hit: Hit) -> tuple[Hit, ...]:
        """The rules' own hits behind one hit: itself, or a group's members."""
        if hit.policy_id != GROUP_POLICY_ID:
            return (hit,)
        return self.groups.get(hit.rule_id, (hit,))

    def named_mask(self, set_id: int, hits: Iterable[Hit]) -> int:
        """match_value.named of an entry with these hits: the defaults its rules' policies own."""
        order = {d.policy_id: i for i, d in enumerate(self.defaults.get(set_id, ()))}
        mask = 0
        for hit in hits:
            for member in self.expand(hit):
                if member.policy_id in order:
                    mask |= 1 << order[member.policy_id]
        return mask

    def flags_of(self, set_id: int) -> int:
        return self.set_flags.get(set_id, 0)

    def name_lengths_of(self, set_id: int) -> int:
        return self.set_name_lengths.get(set_id, 0)


@dataclass(frozen=True)
class Selection:
    """Which containers a policy selects, and why a reference selected none."""

    policy: str
    container_ids: tuple[str, ...]
    host: bool
    unresolved: tuple[str, ...]


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
    tables = _Tables(ids)
    for key, set_id in set_ids.items():
        for policy_name in sorted(key.members):
            _add_policy(by_policy[policy_name], set_id, ids, dict(key.resolution), tables)
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
    _check_capacity(maps)
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
    tables = _Tables(ids)
    for policy in policies:
        _add_policy(policy, set_id, ids, {}, tables)
    tables.add_inodes(set_id, view)
    contents = tables.contents({}, abi.NO_SET)
    return InodeEntries(dict(contents.inodes), dict(contents.caller_inodes))


def _canonical(target: str, view: RootView | None) -> str:
    resolved = view.get(target) if view is not None else None
    return resolved.canonical if resolved is not None else target


class _Tables:
    """The map contents being built: entries with their hits, per set."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.groups: dict[int, tuple[Hit, ...]] = {}
        self.names: dict[tuple[int, str], list[Hit]] = defaultdict(list)
        self.paths: dict[tuple[int, str], list[Hit]] = defaultdict(list)
        self.inodes: dict[tuple[int, int, int], list[Hit]] = defaultdict(list)
        self.cut: dict[int, list[Hit]] = defaultdict(list)
        self.flags: dict[int, int] = defaultdict(int)
        self.name_lengths: dict[int, int] = defaultdict(int)
        self.defaults: dict[int, tuple[Hit, ...]] = {}
        # (set, path as written) -> its hits, for the files it resolved to.
        self.by_path_target: dict[tuple[int, str], list[Hit]] = defaultdict(list)
        self.conditions = Conditions(
            lambda kind, text: ids.targets.number(Target(TargetKind(kind), text))
        )

    def add(self, set_id: int, target: Target, key: str, hit: Hit) -> None:
        if target.kind is TargetKind.NAME:
            self.names[(set_id, key)].append(hit)
            self.flags[set_id] |= SetFlag.NAMES
            self.name_lengths[set_id] |= 1 << len(key.encode())
            return
        self.paths[(set_id, key)].append(hit)
        if hit.action is not Action.ALLOW:  # a cut path is never one an allow rule names
            self.cut[set_id].append(hit)
        self.flags[set_id] |= SetFlag.PATHS
        if hit.action is not Action.AUDIT:
            self.flags[set_id] |= SetFlag.HOLD_SCRIPTS
        if target.kind is TargetKind.PATH:
            # Looked up even before any file resolved: a container joining
            # the set later may bring some (see inode_entries).
            self.flags[set_id] |= SetFlag.INODES
            self.by_path_target[(set_id, target.value)].append(hit)

    def add_defaults(self, set_id: int, policies: Sequence[ExecPolicy]) -> None:
        """The defaults of a set's policies: one hit each, rule "(default)", target 0."""
        hits = tuple(
            Hit(
                policy_id=self.ids.policies.number(p.name),
                rule_id=self.ids.rules.number((p.name, DEFAULT_RULE)),
                target_id=0,
                action=_action(p.spec.mode, RuleAction(p.spec.default.value)),
            )
            for p in policies
            if p.spec.default is not DefaultAction.ALLOW
        )
        if len(hits) > abi.MAX_DEFAULTS:
            names = ", ".join(p.name for p in policies if p.spec.default is not DefaultAction.ALLOW)
            raise CompileError(
                f"{len(hits)} policies with a default select the same containers ({names}); "
                f"the kernel holds at most {abi.MAX_DEFAULTS} per container: merge some of them"
            )
        if hits:
            self.defaults[set_id] = hits
            self.flags[set_id] |= SetFlag.DEFAULTS

    def add_inodes(self, set_id: int, view: RootView) -> None:
        """The files this root's policy paths resolved to, with those paths' hits."""
        for (entry_set, written), hits in self.by_path_target.items():
            resolved: ResolvedPath | None = view.get(written)
            if entry_set == set_id and resolved is not None and resolved.inode is not None:
                dev, ino = resolved.inode
                entry = self.inodes[(set_id, dev, ino)]
                entry.extend(hit for hit in hits if hit not in entry)
        self.conditions.add_inodes(set_id, view)

    def contents(self, cgroup_sets: Mapping[int, int], host_set_id: int) -> MapContents:
        callers = self.conditions.sets_with_callers
        return MapContents(
            cgroup_sets=cgroup_sets,
            host_set_id=host_set_id,
            names=self._freeze(self.names),
            paths=self._freeze(_inherit_dir_hits(self.paths)),
            inodes=self._freeze(self.inodes),
            cut={set_id: self._pack(hits) for set_id, hits in self.cut.items()},
            set_flags={
                set_id: flags | (SetFlag.CALLERS if set_id in callers else 0)
                for set_id, flags in self.flags.items()
            },
            set_name_lengths=dict(self.name_lengths),
            groups=dict(self.groups),
            defaults=dict(self.defaults),
            caller_names=dict(self.conditions.caller_names),
            caller_paths=_inherit_dir_bits(self.conditions.caller_paths),
            caller_inodes=dict(self.conditions.caller_inodes),
            arg_values=dict(self.conditions.arg_values),
        )

    def _freeze(self, table: Mapping[EntryKey, list[Hit]]) -> dict[EntryKey, tuple[Hit, ...]]:
        return {key: self._pack(hits) for key, hits in table.items()}

    def _pack(self, hits: Iterable[Hit]) -> tuple[Hit, ...]:
        """An entry's hits as the kernel holds them: at most MAX_HITS, strictest first.

        Past MAX_HITS, the rest become one group hit: its action is the
        strictest of theirs (what the kernel needs to decide), and userspace
        counts each of its rules (MapContents.expand). Groups of the same
        rules share one id, stable across compiles, like the rules' own.
        """
        # Conditional hits first: the kernel tests each one's conditions, so none can be
        # folded into a group.
        ranked = sorted(set(hits), key=lambda h: (not h.conditional, _STRICTNESS[h.action], h))
        if len(ranked) <= abi.MAX_HITS:
            return tuple(ranked)
        kept, rest = ranked[: abi.MAX_HITS - 1], tuple(ranked[abi.MAX_HITS - 1 :])
        if any(hit.conditional for hit in rest):
            raise CompileError(
                f"more than {abi.MAX_HITS - 1} rules with calledBy or args name one program in "
                "the same containers; the kernel tests at most that many per program: merge "
                "rules that share their conditions"
            )
        digest = hashlib.sha1(repr(sorted(rest)).encode()).hexdigest()[:20]
        group_id = self.ids.rules.number(("", f"group {digest}"))
        self.groups[group_id] = rest
        return (*kept, Hit(GROUP_POLICY_ID, group_id, 0, rest[0].action))


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
        ("files that policy paths resolved to", len(maps.inodes), abi.MAX_PATH_ENTRIES // 2),
        (
            "calledBy names, paths and files (per set)",
            max(len(maps.caller_names), len(maps.caller_paths), len(maps.caller_inodes)),
            abi.MAX_CALLER_ENTRIES // 2,
        ),
        ("args values (per set)", len(maps.arg_values), abi.MAX_ARG_ENTRIES // 2),
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


def _add_policy(
    policy: ExecPolicy, set_id: int, ids: Ids, canonical: Mapping[str, str], tables: _Tables
) -> None:
    """One policy's rules into a set, its paths and dirs as they resolve there."""
    policy_id = ids.policies.number(policy.name)
    for rule in policy.spec.rules:
        action = _action(policy.spec.mode, rule.action)
        rule_id = ids.rules.number((policy.name, rule.name))
        caller = tables.conditions.caller(set_id, rule.match.called_by, canonical)
        args = tables.conditions.args(set_id, rule.match.args)
        for target in _targets(rule.match.names, rule.match.paths, rule.match.dirs):
            hit = Hit(policy_id, rule_id, ids.targets.number(target), action, caller, args)
            tables.add(set_id, target, _resolved_key(target, canonical), hit)


def _resolved_key(target: Target, canonical: Mapping[str, str]) -> str:
    """The key of a target in a set whose paths and dirs resolve as `canonical` says."""
    if target.kind is TargetKind.NAME:
        return target.value
    if target.kind is TargetKind.PATH:
        return keys.path_key(canonical.get(target.value, target.value))
    written = keys.dir_path(target.value)
    return keys.dir_key(canonical.get(written, written))


def _action(mode: Mode, action: RuleAction) -> Action:
    """A rule's action with its policy's mode folded in: audit mode only audits."""
    if action is RuleAction.ALLOW:
        return Action.ALLOW
    if mode is not Mode.ENFORCE or action is RuleAction.AUDIT:
        return Action.AUDIT
    return Action.DENY if action is RuleAction.DENY else Action.KILL


def _targets(names: Iterable[str], paths: Iterable[str], dirs: Iterable[str]) -> Iterable[Target]:
    for name in names:
        yield Target(TargetKind.NAME, name)
    for path in paths:
        yield Target(TargetKind.PATH, path)
    for directory in dirs:
        yield Target(TargetKind.DIR, keys.dir_key(directory))


def _inherit_dir_hits(paths: dict[tuple[int, str], list[Hit]]) -> dict[tuple[int, str], list[Hit]]:
    """Adds to each path entry the hits of every directory entry above it."""
    result: dict[tuple[int, str], list[Hit]] = {}
    for (set_id, key), hits in paths.items():
        merged = list(hits)
        for above in keys.dirs_above(key):
            merged.extend(paths.get((set_id, above), ()))
        result[(set_id, key)] = merged
    return result


def _inherit_dir_bits(
    paths: Mapping[tuple[int, str], CallerEntry],
) -> dict[tuple[int, str], CallerEntry]:
    """Adds to each caller path entry the bits of every directory entry above it."""
    result: dict[tuple[int, str], CallerEntry] = {}
    for (set_id, key), own in paths.items():
        above = (paths.get((set_id, directory)) for directory in keys.dirs_above(key))
        bits = (entry.bits for entry in above if entry is not None)
        result[(set_id, key)] = own.adding(functools.reduce(operator.or_, bits, 0))
    return result


EntryKey = TypeVar("EntryKey", tuple[int, str], tuple[int, int, int])
_STRICTNESS = {Action.KILL: 0, Action.DENY: 1, Action.AUDIT: 2, Action.ALLOW: 3}
