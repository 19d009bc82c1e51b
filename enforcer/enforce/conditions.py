"""A rule's conditions (match.calledBy, match.args) -> the bits the kernel tests per hit.

Each distinct calledBy and args of a policy set gets one bit (at most
abi.MAX_CONDITIONS of each). Per exec, the kernel looks up the calling
program's file (its basename, inode and resolved path) and each argument once,
and ORs up the bits of the entries found; a hit with a condition counts only
when its bit is set. So the cost stays one lookup per file and per argument,
whatever the number of rules, and nothing is read for rules without args.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from enforcer.bpf import abi
from enforcer.enforce import keys
from enforcer.enforce.resolve import RootView
from enforcer.errors import CompileError
from enforcer.policy.match import Args, CalledBy

Key = TypeVar("Key", tuple[int, str], tuple[int, int, int])


class CallerEntry(NamedTuple):
    """A calledBy lookup entry (struct caller_entry): the bits of the set's conditions
    that name this file, and the target id of the entry as written, which counters carry."""

    bits: int
    caller_id: int

    def adding(self, bits: int) -> CallerEntry:
        return CallerEntry(self.bits | bits, self.caller_id)


# A calledBy entry as written ("name", "path" or "dir", its text) -> its target id.
EntryNumber = Callable[[str, str], int]


class Conditions:
    """The conditions of the sets being compiled, and their lookup entries."""

    def __init__(self, number: EntryNumber) -> None:
        self._number_entry = number
        self._callers: dict[tuple[int, CalledBy], int] = {}
        self._args: dict[tuple[int, Args], int] = {}
        self._count: dict[tuple[int, str], int] = defaultdict(int)
        self.caller_names: dict[tuple[int, str], CallerEntry] = {}
        self.caller_paths: dict[tuple[int, str], CallerEntry] = {}
        self.caller_inodes: dict[tuple[int, int, int], CallerEntry] = {}
        self.arg_values: dict[tuple[int, str], int] = defaultdict(int)
        # (set, calledBy path as written) -> its entry, for the files it resolved to.
        self._by_path: dict[tuple[int, str], CallerEntry] = {}
        self.sets_with_callers: set[int] = set()

    def caller(self, set_id: int, called_by: CalledBy | None, canonical: Mapping[str, str]) -> int:
        """Hit.caller for a rule with this calledBy in this set: 0, or 1 + its bit."""
        if called_by is None:
            return 0
        key = (set_id, called_by)
        if key not in self._callers:
            bit = self._number(set_id, "calledBy")
            self._callers[key] = bit
            self._add_caller_entries(set_id, called_by, canonical, 1 << bit)
        self.sets_with_callers.add(set_id)
        return self._callers[key] + 1

    def args(self, set_id: int, args: Args | None) -> int:
        """Hit.args for a rule with these args in this set: 0, or 1 + its bit."""
        if args is None:
            return 0
        key = (set_id, args)
        if key not in self._args:
            bit = self._number(set_id, "args")
            self._args[key] = bit
            for value in args.any_of:
                self.arg_values[(set_id, value)] |= 1 << bit
        return self._args[key] + 1

    def add_inodes(self, set_id: int, view: RootView) -> None:
        """The files this root's calledBy paths resolved to, with those paths' bits."""
        for (entry_set, written), entry in self._by_path.items():
            resolved = view.get(written)
            if entry_set == set_id and resolved is not None and resolved.inode is not None:
                dev, ino = resolved.inode
                _add(self.caller_inodes, (set_id, dev, ino), entry)

    def _number(self, set_id: int, kind: str) -> int:
        bit = self._count[(set_id, kind)]
        if bit >= abi.MAX_CONDITIONS:
            raise CompileError(
                f"more than {abi.MAX_CONDITIONS} distinct {kind} conditions apply to the same "
                "containers; the kernel tests at most that many: give rules that differ only "
                f"in {kind} one rule each"
            )
        self._count[(set_id, kind)] = bit + 1
        return bit

    def _add_caller_entries(
        self, set_id: int, called_by: CalledBy, canonical: Mapping[str, str], bit: int
    ) -> None:
        for name in called_by.names:
            _add(self.caller_names, (set_id, name), self._entry("name", name, bit))
        for path in called_by.paths:
            entry = self._entry("path", path, bit)
            _add(self.caller_paths, (set_id, keys.path_key(canonical.get(path, path))), entry)
            _add(self._by_path, (set_id, path), entry)
        for directory in called_by.dirs:
            written = keys.dir_path(directory)
            below = keys.dir_key(canonical.get(written, written))
            entry = self._entry("dir", keys.dir_key(written), bit)
            _add(self.caller_paths, (set_id, below), entry)

    def _entry(self, kind: str, text: str, bit: int) -> CallerEntry:
        return CallerEntry(bit, self._number_entry(kind, text))


def _add(table: dict[Key, CallerEntry], key: Key, entry: CallerEntry) -> None:
    """One more condition's bit on an entry; the first entry written keeps the key's id."""
    found = table.get(key)
    table[key] = entry if found is None else found.adding(entry.bits)
