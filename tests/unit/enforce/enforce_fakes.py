"""Fakes of the kernel's tables (enforcer.enforce.tables), and policies, for the engine's tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from enforcer.bpf.records import CounterKey, HeldExec
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.map_contents import Hit, MapContents
from enforcer.errors import MapWriteError
from enforcer.policy.loader import LoadedPolicy
from enforcer.policy.model import ExecPolicy


def loaded(name: str, selector: Mapping[str, object], *rules: Mapping[str, object]) -> LoadedPolicy:
    """A policy as the loader hands it over, from policies/NAME.yaml."""
    policy = ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {"selector": dict(selector), "rules": [dict(r) for r in rules]},
        }
    )
    return LoadedPolicy(policy=policy, source=Path(f"policies/{name}.yaml"), line=1)


def kills(*names: str, rule: str = "r") -> dict[str, object]:
    """A rule that kills the programs of these names."""
    return {"name": rule, "action": "kill", "match": {"names": list(names)}}


class FakeRules:
    """Keeps the last map contents applied and the cgroups assigned, as the kernel would."""

    def __init__(self, reads_callers: bool = True) -> None:
        self.maps: MapContents | None = None
        self.reads_callers = reads_callers
        self.assigned: dict[int, int | None] = {}
        self.inodes: dict[tuple[int, int, int], tuple[Hit, ...]] = {}
        self.refuse = False  # while set, apply fails as a refused map write does

    def apply(self, maps: MapContents) -> None:
        if self.refuse:
            raise MapWriteError("the kernel refused a policy map write (fake)")
        self.maps = maps

    def add_inodes(self, inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]]) -> None:
        self.inodes.update(inodes)

    def add_caller_inodes(self, inodes: Mapping[tuple[int, int, int], CallerEntry]) -> None:
        return None

    def assign_cgroups(self, cgroup_sets: Mapping[int, int | None]) -> None:
        self.assigned.update(cgroup_sets)


class FakeCounters:
    """Counts as the kernel would hand them out, plus the daemon's own."""

    def __init__(self, counts: Mapping[CounterKey, int] | None = None) -> None:
        self.counts = dict(counts or {})
        self.added: list[tuple[int, tuple[Hit, ...]]] = []
        self.refuse = False  # while set, add_counts fails as a refused map write does

    def counters(self) -> dict[CounterKey, int]:
        return dict(self.counts)

    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None:
        if self.refuse:
            raise MapWriteError("the kernel refused a counter write (fake)")
        self.added.append((cgroup_id, tuple(hits)))

    def event_drops(self) -> int:
        return 0

    def signal_errors(self) -> tuple[int, int]:
        return 0, 0

    def full_maps(self) -> dict[str, int]:
        return {}


class FakeHeld:
    """The held map: execs the kernel stopped, until the daemon releases them."""

    def __init__(self, *held: HeldExec) -> None:
        self.held = {h.pid: h for h in held}
        self.released: list[int] = []

    def held_execs(self) -> list[HeldExec]:
        return list(self.held.values())

    def release_held(self, pid: int) -> None:
        self.released.append(pid)
        self.held.pop(pid, None)
