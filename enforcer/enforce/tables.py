"""What the engine and the held-exec lifecycle need of the kernel's maps.

The loaded program (enforcer.bpf.program.ExecProgram) provides each of these
as one of its parts (`program.rules`, `program.counters`, `program.held`);
the unit tests provide fakes. Nothing here imports bcc.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from enforcer.bpf.records import CounterKey, HeldExec
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.map_contents import Hit, MapContents


class RuleTables(Protocol):
    """The maps the kernel decides with: which set a cgroup has, and each set's rules."""

    def apply(self, maps: MapContents) -> None: ...
    def add_inodes(self, inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]]) -> None: ...
    def add_caller_inodes(self, inodes: Mapping[tuple[int, int, int], CallerEntry]) -> None: ...
    @property
    def reads_callers(self) -> bool: ...
    def assign_cgroups(self, cgroup_sets: Mapping[int, int | None]) -> None: ...


class CounterTables(Protocol):
    """The kernel's counts: rule hits, lost events, failed signals, full maps."""

    def counters(self) -> dict[CounterKey, int]: ...
    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None: ...
    def event_drops(self) -> int: ...
    def signal_errors(self) -> tuple[int, int]: ...
    def full_maps(self) -> dict[str, int]: ...


class HeldTable(Protocol):
    """The execs the kernel stopped for the daemon to decide."""

    def held_execs(self) -> Sequence[HeldExec]: ...
    def release_held(self, pid: int) -> None: ...
