"""The daemon's answers: the control socket's replies and the metrics, from the engine's state.

Each report reads the engine (one `Snapshot`, or one of its queries) and the
kernel's counters, and builds a model of service/protocol.py; the daemon
sends it with `protocol.dump`, the metrics endpoint reads its attributes.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Protocol

from enforcer.bpf.records import CounterKey
from enforcer.containers.model import Container
from enforcer.enforce.compiler import Compiled
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Snapshot
from enforcer.enforce.ids import CounterName
from enforcer.enforce.map_contents import Hit
from enforcer.enforce.stats import nest_counts
from enforcer.enforce.writable import MAX_WARNINGS, writable_allowed
from enforcer.policy.loader import LoadedPolicy
from enforcer.service.protocol import (
    ContainerInfo,
    ContainersReply,
    DenialEvent,
    EventsReply,
    Persistence,
    PolicyStates,
    PolicyStatus,
    SelectedContainer,
    SignalErrors,
    StatsReply,
    StatusReply,
    parse,
)

# How often a follower of events checks whether the daemon is stopping.
FOLLOW_WAKEUP_S = 0.5


class EngineState(Protocol):
    """What the reports read of the engine (enforce.engine.Engine)."""

    started: float

    @property
    def recent(self) -> Iterable[Denial]: ...
    def snapshot(self) -> Snapshot: ...
    def counter_names(self, keys: Iterable[CounterKey]) -> dict[CounterKey, CounterName]: ...
    def selections(self) -> list[tuple[Container, list[str]]]: ...
    def owner(self, cgroup_id: int) -> tuple[str, str]: ...
    def denials_after(self, seen: int, timeout: float) -> tuple[list[Denial], int]: ...


class CounterReader(Protocol):
    """What the reports read of the kernel's counters (the loaded BPF program)."""

    def counters(self) -> dict[CounterKey, int]: ...
    def event_drops(self) -> int: ...
    def signal_errors(self) -> tuple[int, int]: ...
    def full_maps(self) -> dict[str, int]: ...


class Reports:
    """Builds every report from one engine and its program's counters (a `MetricsSource`)."""

    def __init__(self, engine: EngineState, counters: CounterReader) -> None:
        self._engine = engine
        self._counters = counters

    def stats(self) -> StatsReply:
        """Blocked and audited counts per policy, rule, container and program."""
        snapshot = self._engine.snapshot()
        counts = expanded(self._counters.counters(), snapshot.compiled)
        names = self._engine.counter_names(counts)
        order = [p.policy.name for p in snapshot.policies]
        # nest_counts builds the JSON tree; parsing it checks it against the model.
        tree = nest_counts(names, counts, self._engine.owner, order)
        return parse(StatsReply, {"policies": tree})

    def policy_states(self) -> PolicyStates:
        """Policies in force as written, in force in their last good version, files refused."""
        snapshot = self._engine.snapshot()
        bad = {problem.file for problem in snapshot.problems}
        total = len(snapshot.policies)
        if snapshot.enforce_error is not None:
            # Every policy runs on maps compiled before the change that failed.
            return PolicyStates(ok=0, stale=total, error=max(1, len(bad)))
        stale = sum(1 for p in snapshot.policies if p.source in bad or p.source.parent in bad)
        return PolicyStates(ok=total - stale, stale=stale, error=len(bad))

    def event_drops(self) -> int:
        return self._counters.event_drops()

    def full_maps(self) -> dict[str, int]:
        return self._counters.full_maps()

    def containers(self) -> ContainersReply:
        """Every container the daemon knows, with the policies that select it."""
        return ContainersReply(
            containers=tuple(_container_info(c, chosen) for c, chosen in self._engine.selections())
        )

    def status(
        self, backend: str, reason: str, classify_queued: int, persistence: Persistence
    ) -> StatusReply:
        """The daemon's state: backend, kernel, health counters, policies and what they select."""
        snapshot = self._engine.snapshot()
        kill, stop = self._counters.signal_errors()
        return StatusReply(
            # Nothing compiled: nothing enforced.
            enforcing=snapshot.compiled is not None,
            backend=backend,
            backend_reason=reason,
            kernel=platform.release(),
            uptime_seconds=round(time.time() - self._engine.started, 1),
            event_drops=self._counters.event_drops(),
            full_maps=self._counters.full_maps(),
            signal_errors=SignalErrors(kill=kill, stop=stop),
            policies=tuple(_policy_status(p, snapshot) for p in snapshot.policies),
            warnings=tuple(_warnings(snapshot)),
            problems=tuple(str(p) for p in snapshot.problems),
            enforce_error=snapshot.enforce_error,
            policy_files_with_problems=len({p.file for p in snapshot.problems}),
            containers_known=len(snapshot.containers),
            classify_queued=classify_queued,
            persistence=persistence,
        )

    def events(self) -> EventsReply:
        """The recent denials, oldest first."""
        return EventsReply(events=tuple(denial_event(d) for d in self._engine.recent))

    def follow(self, stopping: Callable[[], bool]) -> Iterator[DenialEvent]:
        """Every recent denial, then each new one as it happens, until `stopping()`."""
        seen = 0
        while not stopping():
            fresh, seen = self._engine.denials_after(seen, timeout=FOLLOW_WAKEUP_S)
            for denial in fresh:
                yield denial_event(denial)


def denial_event(denial: Denial) -> DenialEvent:
    """A denial as the socket, the event log and `enforcer events --json` show it."""
    return parse(DenialEvent, denial.to_json())


def expanded(
    counters: Mapping[CounterKey, int], compiled: Compiled | None
) -> dict[CounterKey, int]:
    """Counters with each group hit's count given to every rule of the group."""
    maps = compiled.maps if compiled else None
    result: dict[CounterKey, int] = {}
    for key, count in counters.items():
        members = (
            maps.expand(Hit(key.policy_id, key.rule_id, key.target_id, key.action)) if maps else ()
        )
        if len(members) <= 1 or members[0].policy_id == key.policy_id:
            result[key] = result.get(key, 0) + count
            continue
        for hit in members:
            own = replace(key, policy_id=hit.policy_id, rule_id=hit.rule_id,
                          target_id=hit.target_id, action=hit.action)  # fmt: skip
            result[own] = result.get(own, 0) + count
    return result


def _container_info(container: Container, policies: list[str]) -> ContainerInfo:
    return ContainerInfo(
        id=container.id,
        name=container.name,
        image=container.image,
        runtime=container.runtime,
        labels=dict(container.labels),
        cgroup_path=container.cgroup_path,
        cgroup_id=container.cgroup_ids[0] if container.cgroup_ids else None,
        pid=container.pid,
        policies=tuple(policies),
    )


def _warnings(snapshot: Snapshot) -> list[str]:
    """Allowed files that their container can overwrite (see enforcer.enforce.writable)."""
    if snapshot.compiled is None:
        return []
    chosen = {s.policy: s.container_ids for s in snapshot.compiled.selections}
    warnings: list[str] = []
    for loaded in snapshot.policies:
        policy = loaded.policy
        warnings += writable_allowed(policy, snapshot.containers, chosen.get(policy.name, ()))
    return warnings[:MAX_WARNINGS]


def _policy_status(loaded: LoadedPolicy, snapshot: Snapshot) -> PolicyStatus:
    policy = loaded.policy
    compiled = snapshot.compiled
    selection = (
        next((s for s in compiled.selections if s.policy == policy.name), None)
        if compiled
        else None
    )
    by_id = {c.id: c for c in snapshot.containers}
    return PolicyStatus(
        name=policy.name,
        mode=policy.spec.mode.value,
        source=str(loaded.source),
        rules=len(policy.spec.rules),
        host=policy.spec.selector.host,
        containers=tuple(
            SelectedContainer(id=cid, name=by_id[cid].name if cid in by_id else "")
            for cid in (selection.container_ids if selection else ())
        ),
        unresolved=tuple(selection.unresolved) if selection else (),
    )
