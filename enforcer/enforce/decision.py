"""The kernel's per-exec decision, replayed in userspace for held execs.

An exec the kernel stopped (in a cgroup still pending, or a script whose own
path the daemon resolves) is decided here exactly as bpf/exec_enforcer.c
would have: for each file that runs (the program, and a script's own file),
the longest path entry (exact path or directory) of its resolved path, its
inode, its basenames; each (policy, rule) counts once. A hit with conditions
counts where they hold: the calling program (`caller`, as the kernel read it)
and the arguments (`argv`, as the new program got them); where either is
unknown, hits that act count and allow hits do not (fail closed).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from enforcer.bpf import abi
from enforcer.bpf.abi import Action
from enforcer.enforce import keys
from enforcer.enforce.compiler import path_targets
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.map_contents import Hit, MapContents
from enforcer.enforce.resolve import RootView
from enforcer.policy.model import DefaultAction, ExecPolicy, RuleAction


@dataclass(frozen=True)
class FileIdentity:
    """One file that an exec runs, as the kernel (or the resolver) found it."""

    path: str  # resolved inside the caller's root
    names: tuple[str, ...]  # its basename, and the ones it was invoked by
    inode: tuple[int, int] | None = None  # (kernel dev, ino)
    path_cut: bool = False  # the kernel's walk did not reach the root


@dataclass(frozen=True)
class ExecContext:
    """What conditional rules test: the calling program and the arguments (None: unknown)."""

    caller: FileIdentity | None = None
    argv: Sequence[bytes] | None = None  # argv[0] included, as /proc/PID/cmdline holds it


UNKNOWN = ExecContext()


def decide(
    maps: MapContents,
    set_id: int,
    files: Iterable[FileIdentity],
    *,
    runtime_exec: bool = False,
    context: ExecContext = UNKNOWN,
) -> tuple[Hit, ...]:
    """The hits the kernel would have reported, one per (policy, rule).

    A held exec is already past the hook, so a deny rule can only kill it:
    its hits say kill, as the non-LSM hooks' do. `runtime_exec`: the exec
    runs in the host's mount namespace (the runtime's own), where no default
    applies.
    """
    if set_id == abi.NO_SET:
        return ()
    holds = _Conditions(maps, set_id, context)
    hits: dict[tuple[int, int], Hit] = {}
    for file in files:
        for found in _file_hits(maps, set_id, file):
            for hit in maps.expand(found):
                if holds(hit):
                    hits.setdefault((hit.policy_id, hit.rule_id), hit.counted(holds.caller_id))
    named = {policy_id for policy_id, _ in hits}
    for default in () if runtime_exec else maps.defaults.get(set_id, ()):
        if default.policy_id not in named:  # no rule of its policy names the exec
            hits[(default.policy_id, default.rule_id)] = default
    return tuple(
        replace(h, action=Action.KILL) if h.action is Action.DENY else h
        for h in hits.values()
        if h.action is not Action.ALLOW
    )


def kills(hits: tuple[Hit, ...]) -> bool:
    return any(hit.action is Action.KILL for hit in hits)


def _file_hits(maps: MapContents, set_id: int, file: FileIdentity) -> Iterable[Hit]:
    for name in file.names:
        if name:
            yield from maps.names.get((set_id, name), ())
    if file.inode is not None:
        yield from maps.inodes.get((set_id, *file.inode), ())
    if file.path_cut:
        yield from maps.cut.get(set_id, ())
    else:
        yield from _longest_path_entry(maps, set_id, file.path)


def _longest_path_entry(maps: MapContents, set_id: int, filename: str) -> tuple[Hit, ...]:
    return longest_entry(maps.paths, set_id, filename, ())


Entry = TypeVar("Entry")


def longest_entry(
    table: Mapping[tuple[int, str], Entry], set_id: int, filename: str, none: Entry
) -> Entry:
    """The kernel's LPM lookup: the exact path's entry, else the deepest directory's."""
    key = keys.path_key(filename)
    exact = table.get((set_id, key))
    if exact is not None:
        return exact
    for directory in reversed(list(keys.dirs_above(key))):
        found = table.get((set_id, directory))
        if found is not None:
            return found
    return none


class _Conditions:
    """Whether a hit's conditions hold for one exec, as bpf/exec_enforcer.c tests them."""

    def __init__(self, maps: MapContents, set_id: int, context: ExecContext) -> None:
        caller = _caller_entry(maps, set_id, context.caller)
        self._caller = caller.bits if caller is not None else None
        self.caller_id = caller.caller_id if caller is not None else 0
        self._args = _arg_bits(maps, set_id, context.argv)

    def __call__(self, hit: Hit) -> bool:
        return _bit_holds(hit, hit.caller, self._caller) and _bit_holds(hit, hit.args, self._args)


def _bit_holds(hit: Hit, condition: int, bits: int | None) -> bool:
    if not condition:
        return True
    if bits is None:  # unknown: fail closed
        return hit.action is not Action.ALLOW
    return bool(bits >> (condition - 1) & 1)


def _caller_entry(
    maps: MapContents, set_id: int, caller: FileIdentity | None
) -> CallerEntry | None:
    """The bits of the conditions the caller satisfies, and the id of the most specific
    entry naming it (inode, path, name: match_caller's order)."""
    if caller is None or caller.path_cut:
        return None
    found = [
        maps.caller_inodes.get((set_id, *caller.inode)) if caller.inode is not None else None,
        longest_entry(maps.caller_paths, set_id, caller.path, None),
        *(maps.caller_names.get((set_id, name)) for name in caller.names),
    ]
    entries = [entry for entry in found if entry is not None]
    bits = functools.reduce(operator.or_, (entry.bits for entry in entries), 0)
    return CallerEntry(bits, entries[0].caller_id if entries else 0)


def _arg_bits(maps: MapContents, set_id: int, argv: Sequence[bytes] | None) -> int | None:
    if argv is None:
        return None
    bits = 0
    for arg in argv[1 : 1 + abi.MATCH_ARGS]:
        if len(arg) < abi.ARG_KEY_LEN - 1:  # whole in the kernel's key
            bits |= maps.arg_values.get((set_id, arg.decode(errors="surrogateescape")), 0)
        elif len(arg) > abi.ARG_SKIP_MAX:  # the kernel's search ends at it
            break
    return bits


class AnyRule:
    """Whether any rule of any policy names a program, wherever it runs.

    Lets a held exec that no rule names go on at once, before its cgroup is
    even identified: the container runtime's own execs (runc re-executing
    itself, for one) must never wait for the metadata the runtime is busy
    producing. Paths and dirs are compared as they resolve in the held
    process's own root (`view`), so an alias of a named file is named.
    """

    def __init__(self, policies: Iterable[ExecPolicy]) -> None:
        policies = list(policies)
        # A default other than allow may apply to any program: each is named.
        self._any_default = any(p.spec.default is not DefaultAction.ALLOW for p in policies)
        matches = [
            rule.match
            for policy in policies
            for rule in policy.spec.rules
            if rule.action is not RuleAction.ALLOW
        ]
        self._names = {name for m in matches for name in m.names}
        self._paths = {path for m in matches for path in m.paths}
        self._dirs = {d for m in matches for d in m.dirs}
        self.targets = path_targets(policies)

    def names(
        self, files: Sequence[FileIdentity], view: RootView, *, runtime_exec: bool = False
    ) -> bool:
        """Whether a rule (or a default, except for the runtime's own execs) names the files."""
        if self._any_default and not runtime_exec:
            return True
        return any(self._names_file(file, view) for file in files)

    def _names_file(self, file: FileIdentity, view: RootView) -> bool:
        if any(name in self._names for name in file.names):
            return True
        if file.path_cut and (self._paths or self._dirs):
            return True
        for path in self._paths:
            resolved = view.get(path)
            canonical = resolved.canonical if resolved else path
            if file.path == canonical or (resolved and file.inode and resolved.inode == file.inode):
                return True
        for directory in self._dirs:
            resolved = view.get(directory)
            below = keys.dir_key(resolved.canonical if resolved else directory)
            if file.path.startswith(below):
                return True
        return False
