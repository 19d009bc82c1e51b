"""What the program counted: rule hits per cgroup, execs, lost events, failed signals, full maps.

The counters map is shared by every generation of the program (pinned); the
daemon adds its own hits (held execs it decided) under keys the kernel never
writes.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterable, Mapping

from enforcer.bpf import abi, syscall
from enforcer.bpf.abi import Action
from enforcer.bpf.maps import Map
from enforcer.bpf.records import CounterKey
from enforcer.bpf.rule_banks import RULE_MAPS
from enforcer.enforce.map_contents import Hit

# full_maps slots, as status and metrics name them.
_FULL_SLOTS = {
    "cgroups_unplaced": abi.FULL_CGROUPS,
    "held_unstored": abi.FULL_HELD,
    "uncounted_hits": abi.FULL_COUNTERS,
    "held_lost": abi.HELD_LOST,
}


class Counters:
    """`tables` are the program's maps by name."""

    def __init__(self, tables: Mapping[str, Map]) -> None:
        self._tables = tables
        self._uncounted = 0  # the daemon's own counts that found the counters map full

    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None:
        """Counts hits decided in userspace (held execs) beside the kernel's own.

        Under keys marked COUNTED_BY_DAEMON, which the kernel never writes: the
        read-then-write here races none of its increments. One caller at a
        time (Lifecycle settles under a lock).
        """
        table = self._tables["counters"]
        for hit in hits:
            action = int(hit.action) | abi.COUNTED_BY_DAEMON
            key = table.Key(
                cgroup_id, hit.policy_id, hit.rule_id, hit.target_id, action, hit.caller_id
            )
            current = table.get(key)
            try:
                table[key] = table.Leaf(current.value + 1 if current is not None else 1)
            except OSError as e:
                if e.errno != errno.E2BIG:
                    raise
                self._uncounted += 1  # the map is full: counted as lost

    def counters(self) -> dict[CounterKey, int]:
        """Every count, the kernel's and the daemon's rows of one key added up."""
        counts: dict[CounterKey, int] = {}
        for k, v in self._tables["counters"].items():
            action = Action(k.action & ~abi.COUNTED_BY_DAEMON)
            key = CounterKey(k.cgroup_id, k.policy_id, k.rule_id, k.target_id, action, k.caller_id)
            counts[key] = counts.get(key, 0) + v.value
        return counts

    def full_maps(self) -> dict[str, int]:
        """Writes that found their map full, by what was lost (see FULL_* in enforcer.h)."""
        table = self._tables["full_maps"]
        counts = {name: int(table[ctypes.c_int(slot)].value) for name, slot in _FULL_SLOTS.items()}
        counts["uncounted_hits"] += self._uncounted
        return counts

    def counters_map_id(self) -> int:
        """The kernel's id of the counters map: the same map, pinned, keeps its id."""
        return syscall.map_info(self._tables["counters"].fd).id

    def reset_counters(self) -> None:
        self._tables["counters"].clear()

    def entry_counts(self) -> dict[str, int]:
        """How many entries each policy map holds now."""
        return {
            name: sum(1 for _ in self._tables[name])
            for name in ("cgroup_sets", *RULE_MAPS, "counters")
        }

    def exec_total(self) -> int:
        return self._sum_percpu("exec_total")

    def event_drops(self) -> int:
        return self._sum_percpu("event_drops")

    def signal_errors(self) -> tuple[int, int]:
        """Failed bpf_send_signal calls: (SIGKILL, SIGSTOP)."""
        table = self._tables["signal_errors"]
        return int(sum(table[ctypes.c_int(0)])), int(sum(table[ctypes.c_int(1)]))

    def _sum_percpu(self, name: str) -> int:
        return int(sum(self._tables[name][ctypes.c_int(0)]))
