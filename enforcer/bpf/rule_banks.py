"""The rule maps, filled in two banks of set ids, and the cgroups pointed at their sets.

Set ids alternate between two banks so a new policy set is complete in the
maps before any cgroup is pointed at it (RuleBanks.apply): each exec sees the
old policy set or the new one, whole. How one entry looks as the kernel holds
it is rule_structs.py's.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

from enforcer.bpf import abi
from enforcer.bpf.abi import Action
from enforcer.bpf.config import ProgramConfig
from enforcer.bpf.maps import Map
from enforcer.bpf.rule_structs import (
    arg_value_key,
    caller_name_key,
    defaults_value,
    inode_key,
    match_value,
    name_key,
    path_key,
    set_of_key,
)
from enforcer.bpf.syscall import CData
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.map_contents import Hit, MapContents
from enforcer.errors import MapWriteError
from enforcer.kernel.backends import Backend

log = logging.getLogger(__name__)

BANK_BASES = (0, 1 << 31)
# The rule maps whose keys start with a set id, filled per bank.
RULE_MAPS = (
    "rule_names",
    "rule_paths",
    "rule_inodes",
    "cut_hits",
    "set_defaults",
    "caller_names",
    "caller_paths",
    "caller_inodes",
    "arg_values",
)
# A cgroup's entry in cgroup_sets: (set id, flags, name lengths).
CgroupEntry = tuple[int, int, int]


class RuleBanks:
    """The policy set in force in the kernel's maps, and which cgroup follows which set.

    `tables` are the program's maps by name; `reads_callers` says whether the
    program reads the calling program (for calledBy rules).
    """

    def __init__(
        self,
        tables: Mapping[str, Map],
        config: ProgramConfig,
        backend: Backend,
        *,
        reads_callers: bool,
    ) -> None:
        self._tables = tables
        self._config = config
        self._backend = backend
        self._reads_callers = reads_callers
        # A reused program's bank stays in force until the first apply.
        self._bank = config.bank()
        self._maps = MapContents(cgroup_sets={}, host_set_id=abi.NO_SET, names={}, paths={})

    @property
    def reads_callers(self) -> bool:
        """Whether this program reads the calling program (for calledBy rules)."""
        return self._reads_callers

    def apply(self, maps: MapContents) -> None:
        """Makes the kernel enforce `maps`, never passing through a state with neither.

        The new rule entries go into the unused set-id bank first, then every
        cgroup is switched to its new set, then the old bank's entries go.
        """
        if self._backend is not Backend.LSM and _has_deny(maps):
            log.warning(
                "deny rules kill instead on the %s backend: only the lsm backend can make an "
                "exec fail (run `enforcer doctor` to see why it is not used)",
                self._backend,
            )
        bank = 1 - self._bank
        base = BANK_BASES[bank]
        old = {name: self._keys_in_bank(name, self._bank) for name in RULE_MAPS}
        self._fill_bank(bank, maps)
        self._switch_to(bank, maps)
        host = maps.host_set_id
        self._config.update(
            host_set_id=_in_bank(base, host),
            host_flags=maps.flags_of(host),
            host_name_lengths=maps.name_lengths_of(host),
            bank=bank,
        )
        for name, keys in old.items():
            self._tables[name].discard(keys)
        self._bank = bank

    def _fill_bank(self, bank: int, maps: MapContents) -> None:
        base = BANK_BASES[bank]
        try:
            self._fill_matches(base, maps)
            self._fill_defaults(base, maps.defaults)
            self._fill_conditions(base, maps)
        except OSError as e:  # the kernel refused a write (maps.MapUpdateError)
            self._clear_bank(bank)
            raise MapWriteError(
                f"the kernel refused a policy map write ({e}); the policies in force stay. "
                "Check `enforcer status` for what the maps hold"
            ) from e

    def _switch_to(self, bank: int, maps: MapContents) -> None:
        """Points every cgroup at its set in `bank`; on a refusal, all go back."""
        in_force, self._maps = self._maps, maps
        cgroups = self._tables["cgroup_sets"]
        before = {k.value: (v.set_id, v.flags, v.name_lengths) for k, v in cgroups.items()}
        try:
            self._switch_cgroups(BANK_BASES[bank], maps.cgroup_sets)
        except OSError as e:
            self._restore_cgroups(before)
            self._maps = in_force
            self._clear_bank(bank)
            raise MapWriteError(
                f"the kernel refused a cgroup map write ({e}); every cgroup is back on the "
                "policies in force"
            ) from e

    def _clear_bank(self, bank: int) -> None:
        """Removes what a failed switch wrote into the unused bank."""
        for name in RULE_MAPS:
            self._tables[name].discard(self._keys_in_bank(name, bank))

    def _restore_cgroups(self, before: Mapping[int, CgroupEntry]) -> None:
        table = self._tables["cgroup_sets"]
        for cgroup_id, (set_id, flags, name_lengths) in before.items():
            value = table.Leaf()
            value.set_id, value.flags, value.name_lengths = set_id, flags, name_lengths
            table[ctypes.c_uint64(cgroup_id)] = value

    def _keys_in_bank(self, map_name: str, bank: int) -> list[CData]:
        base = BANK_BASES[bank]
        return [k for k in self._tables[map_name] if set_of_key(k) & BANK_BASES[1] == base]

    def add_inodes(
        self,
        inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]],
        base: int | None = None,
        maps: MapContents | None = None,
    ) -> None:
        """Inode entries into a bank, by default the one in force (a container joining a set)."""
        base = BANK_BASES[self._bank] if base is None else base
        maps = self._maps if maps is None else maps
        table = self._tables["rule_inodes"]
        for (set_id, dev, ino), hits in inodes.items():
            key = inode_key(table, base + set_id, dev, ino)
            table[key] = match_value(table, hits, maps, set_id)

    def add_caller_inodes(
        self, inodes: Mapping[tuple[int, int, int], CallerEntry], base: int | None = None
    ) -> None:
        """calledBy inode entries into a bank, by default the one in force."""
        base = BANK_BASES[self._bank] if base is None else base
        table = self._tables["caller_inodes"]
        for (set_id, dev, ino), entry in inodes.items():
            key = inode_key(table, base + set_id, dev, ino)
            table[key] = table.Leaf(entry.bits, entry.caller_id)

    def _fill_matches(self, base: int, maps: MapContents) -> None:
        """The entries that name what runs: by name, path, inode, and the cut hits."""
        names = self._tables["rule_names"]
        for (set_id, name), hits in maps.names.items():
            names[name_key(names, base + set_id, name)] = match_value(names, hits, maps, set_id)
        paths = self._tables["rule_paths"]
        for (set_id, path), hits in maps.paths.items():
            paths[path_key(paths, base + set_id, path)] = match_value(paths, hits, maps, set_id)
        self.add_inodes(maps.inodes, base, maps)
        cut = self._tables["cut_hits"]
        for set_id, hits in maps.cut.items():
            cut[ctypes.c_uint32(base + set_id)] = match_value(cut, hits, maps, set_id)

    def _fill_defaults(self, base: int, defaults: Mapping[int, tuple[Hit, ...]]) -> None:
        table = self._tables["set_defaults"]
        for set_id, hits in defaults.items():
            table[ctypes.c_uint32(base + set_id)] = defaults_value(table, hits)

    def _fill_conditions(self, base: int, maps: MapContents) -> None:
        names = self._tables["caller_names"]
        for (set_id, name), entry in maps.caller_names.items():
            key = caller_name_key(names, base + set_id, name)
            names[key] = names.Leaf(entry.bits, entry.caller_id)
        args = self._tables["arg_values"]
        for (set_id, value), bits in maps.arg_values.items():
            args[arg_value_key(args, base + set_id, value)] = args.Leaf(bits)
        paths = self._tables["caller_paths"]
        for (set_id, path), entry in maps.caller_paths.items():
            paths[path_key(paths, base + set_id, path)] = paths.Leaf(entry.bits, entry.caller_id)
        self.add_caller_inodes(maps.caller_inodes, base)

    def _switch_cgroups(self, base: int, cgroup_sets: Mapping[int, int]) -> None:
        table = self._tables["cgroup_sets"]
        # Pending cgroups are the lifecycle's to settle (assign_cgroups), not ours.
        stale = [
            k
            for k, v in table.items()
            if k.value not in cgroup_sets and v.set_id != abi.SET_PENDING
        ]
        self._write_cgroups(base, cgroup_sets)
        table.discard(stale)

    def _write_cgroups(self, base: int, cgroup_sets: Mapping[int, int]) -> None:
        table = self._tables["cgroup_sets"]
        for cgroup_id, set_id in cgroup_sets.items():
            value = table.Leaf()
            value.set_id = _in_bank(base, set_id)
            value.flags = self._maps.flags_of(set_id)
            value.name_lengths = self._maps.name_lengths_of(set_id)
            table[ctypes.c_uint64(cgroup_id)] = value

    def assign_cgroups(self, cgroup_sets: Mapping[int, int | None]) -> None:
        """Points cgroups at sets of the policy set in force; None makes one a host cgroup."""
        self._write_cgroups(
            BANK_BASES[self._bank], {k: v for k, v in cgroup_sets.items() if v is not None}
        )
        host = [ctypes.c_uint64(k) for k, v in cgroup_sets.items() if v is None]
        self._tables["cgroup_sets"].discard(host)

    def pending_cgroups(self) -> list[int]:
        return [
            k.value for k, v in self._tables["cgroup_sets"].items() if v.set_id == abi.SET_PENDING
        ]


def _has_deny(maps: MapContents) -> bool:
    return any(
        hit.action is Action.DENY
        for table in (maps.names, maps.paths, maps.inodes, maps.defaults)
        for hits in table.values()
        for hit in hits
    )


def _in_bank(base: int, set_id: int) -> int:
    return abi.NO_SET if set_id == abi.NO_SET else base + set_id
