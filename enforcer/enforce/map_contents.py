"""Exactly what goes into the BPF maps: the hits of each entry, per policy set.

`Hit` is what one lookup result tells the kernel; `MapContents` holds every
entry the compiler made (bpf/enforcer.h lays the maps out), and
`check_capacity` refuses contents the maps cannot hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from enforcer.bpf import abi
from enforcer.bpf.abi import Action
from enforcer.enforce.conditions import CallerEntry
from enforcer.errors import CompileError

# The policy id of a group hit: one kernel hit standing for the rules past
# abi.MAX_HITS on one entry. Real policy ids start at 1.
GROUP_POLICY_ID = 0
# The key of the host's own root in `views`.


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
    # A group hit's rule id -> the hits it stands for (see rule_entries.RuleEntries._pack).
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


def check_capacity(maps: MapContents) -> None:
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
