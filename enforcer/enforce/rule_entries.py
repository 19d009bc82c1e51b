"""A policy set's rules -> the entries of the kernel's rule maps, with their hits.

Each name, path and dir a rule names becomes an entry of its set (keyed as
`enforcer.enforce.keys` spells it, paths and dirs as they resolve in the set's
root), holding a hit: the (policy, rule, target) and the action, with the
policy's mode folded in. Past `abi.MAX_HITS` on one entry, hits are grouped.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from enforcer.bpf import abi
from enforcer.bpf.abi import Action, SetFlag
from enforcer.enforce import keys
from enforcer.enforce.conditions import CallerEntry, Conditions
from enforcer.enforce.ids import DEFAULT_RULE, Ids, Target, TargetKind
from enforcer.enforce.map_contents import GROUP_POLICY_ID, Hit, MapContents
from enforcer.enforce.resolve import ResolvedPath, RootView
from enforcer.errors import CompileError
from enforcer.policy.model import DefaultAction, ExecPolicy, Mode, RuleAction


class RuleEntries:
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

    def add_policy(self, policy: ExecPolicy, set_id: int, canonical: Mapping[str, str]) -> None:
        """One policy's rules into a set, its paths and dirs as they resolve there."""
        ids = self.ids
        policy_id = ids.policies.number(policy.name)
        for rule in policy.spec.rules:
            action = _action(policy.spec.mode, rule.action)
            rule_id = ids.rules.number((policy.name, rule.name))
            caller = self.conditions.caller(set_id, rule.match.called_by, canonical)
            args = self.conditions.args(set_id, rule.match.args)
            for target in _targets(rule.match.names, rule.match.paths, rule.match.dirs):
                hit = Hit(policy_id, rule_id, ids.targets.number(target), action, caller, args)
                self.add(set_id, target, _resolved_key(target, canonical), hit)

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
