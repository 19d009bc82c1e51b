"""Keeps the kernel enforcing the current policies on the current containers.

The engine owns the last good policy set, the container inventory and the
stable ids, turns kernel counters and events back into names, and answers the
questions the CLI asks. It talks to the kernel only through `ProgramMaps`, so
it is independent of bcc.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from enforcer.abi import Action, EventKind
from enforcer.compiler import Compiled, CounterName, Ids, compile_policies, describe
from enforcer.containers.model import Container
from enforcer.policy.loader import LoadedPolicy, LoadResult, PolicyProblem

log = logging.getLogger(__name__)

HOST = "host"
RECENT_EVENTS = 1000


class ProgramMaps(Protocol):
    """What the engine needs of the loaded BPF program (bpf_program.ExecProgram)."""

    def apply(self, maps: Any) -> None: ...
    def counters(self) -> dict[Any, int]: ...
    def event_drops(self) -> int: ...


@dataclass(frozen=True)
class Denial:
    """A rule hit, with every id turned back into the name a person knows."""

    time: float
    policy: str
    rule: str
    action: str
    container_id: str
    container_name: str
    cgroup_id: int
    pid: int
    uid: int
    comm: str
    filename: str
    target: str

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        verb = "killed" if self.action == Action.KILL.name.lower() else "audited"
        where = HOST if self.container_id == HOST else f"container {self.container_id[:12]}"
        return (
            f"{verb} {self.filename} (pid {self.pid}, comm {self.comm}) in {where}: "
            f"policy {self.policy}, rule {self.rule}"
        )


class Engine:
    """Policies + containers -> kernel maps; kernel counters/events -> names."""

    def __init__(
        self,
        program: ProgramMaps,
        load: Callable[[], LoadResult],
        discover: Callable[[], list[Container]],
    ) -> None:
        self._program = program
        self._load = load
        self._discover = discover
        self._lock = threading.Lock()
        self._ids = Ids()
        self.policies: tuple[LoadedPolicy, ...] = ()
        self.problems: tuple[PolicyProblem, ...] = ()
        self.containers: list[Container] = []
        self.compiled: Compiled | None = None
        self._cgroup_owner: dict[int, Container] = {}
        self.recent: deque[Denial] = deque(maxlen=RECENT_EVENTS)
        self.started = time.time()

    def reload(self) -> bool:
        """Reloads policies and containers. Returns False, changing nothing, on bad policies.

        On the first load the valid files are enforced even if others are bad:
        there is no earlier set to keep.
        """
        result = self._load()
        with self._lock:
            self.problems = result.problems
            for problem in result.problems:
                log.error("policy problem: %s", problem)
            if result.problems and self.compiled is not None:
                log.error("policies not reloaded: the previous set stays in force")
                return False
            self._enforce(result.policies, self._discover())
        return not result.problems

    def refresh_containers(self) -> None:
        """Recompiles the current policies against the containers running now."""
        with self._lock:
            self._enforce(self.policies, self._discover())

    def _enforce(self, policies: tuple[LoadedPolicy, ...], containers: list[Container]) -> None:
        compiled = compile_policies([p.policy for p in policies], containers, self._ids)
        self._program.apply(compiled.maps)
        self.policies, self.containers, self.compiled = policies, containers, compiled
        for container in containers:
            for cgroup_id in container.cgroup_ids:
                self._cgroup_owner[cgroup_id] = container
        for selection in compiled.selections:
            for reason in selection.unresolved:
                log.warning("policy %s: container %s", selection.policy, reason)
        log.info(
            "enforcing %d policies on %d containers (%d cgroups selected)",
            len(policies),
            len(containers),
            sum(1 for s in compiled.maps.cgroup_sets.values() if s),
        )

    def owner(self, cgroup_id: int) -> tuple[str, str]:
        """(container id, container name) of a cgroup, or ("host", "") for the rest."""
        container = self._cgroup_owner.get(cgroup_id)
        return (container.id, container.name) if container else (HOST, "")

    def denial(self, kind: EventKind, event: Any) -> Denial | None:
        """Names a kernel rule-hit event; records it among the recent ones."""
        if kind is not EventKind.MATCH or event.hit is None:
            return None
        with self._lock:
            name = describe(self._ids, event.hit)
        container_id, container_name = self.owner(event.cgroup_id)
        denial = Denial(
            time=time.time(),
            policy=name.policy,
            rule=name.rule,
            action=event.hit.action.name.lower(),
            container_id=container_id,
            container_name=container_name,
            cgroup_id=event.cgroup_id,
            pid=event.pid,
            uid=event.uid,
            comm=event.comm,
            filename=event.filename,
            target=str(name.target),
        )
        self.recent.append(denial)
        return denial

    def stats(self) -> dict[str, object]:
        """Blocked and audited counts per policy, rule, container and program."""
        with self._lock:
            counters = self._program.counters()
            names = {key: describe(self._ids, key) for key in counters}
        return {"policies": _nest_counts(names, counters, self.owner, self._policy_names())}

    def _policy_names(self) -> list[str]:
        return [p.policy.name for p in self.policies]

    def status(self, backend: str, reason: str, enforcing: bool) -> dict[str, object]:
        with self._lock:
            compiled = self.compiled
            return {
                "enforcing": enforcing,
                "backend": backend,
                "backend_reason": reason,
                "kernel": platform.release(),
                "uptime_seconds": round(time.time() - self.started, 1),
                "event_drops": self._program.event_drops(),
                "policies": [_policy_status(p, compiled, self.containers) for p in self.policies],
                "problems": [str(p) for p in self.problems],
                "containers_known": len(self.containers),
            }


def _policy_status(
    loaded: LoadedPolicy, compiled: Compiled | None, containers: Sequence[Container]
) -> dict[str, object]:
    policy = loaded.policy
    selection = (
        next((s for s in compiled.selections if s.policy == policy.name), None)
        if compiled
        else None
    )
    by_id = {c.id: c for c in containers}
    return {
        "name": policy.name,
        "mode": policy.spec.mode.value,
        "source": str(loaded.source),
        "rules": len(policy.spec.rules),
        "host": policy.spec.selector.host,
        "containers": [
            {"id": cid, "name": by_id[cid].name if cid in by_id else ""}
            for cid in (selection.container_ids if selection else ())
        ],
        "unresolved": list(selection.unresolved) if selection else [],
    }


def _nest_counts(
    names: dict[Any, CounterName],
    counters: dict[Any, int],
    owner: Callable[[int], tuple[str, str]],
    policy_order: list[str],
) -> list[dict[str, object]]:
    """Folds flat kernel counters into policy -> rule -> container -> program."""
    tree: dict[str, dict[str, dict[tuple[str, str, int], dict[str, list[int]]]]] = {
        name: {} for name in policy_order
    }
    for key, count in counters.items():
        name = names[key]
        container = (*owner(key.cgroup_id), key.cgroup_id)
        programs = (
            tree.setdefault(name.policy, {}).setdefault(name.rule, {}).setdefault(container, {})
        )
        slot = programs.setdefault(str(name.target), [0, 0])
        slot[0 if key.action is Action.KILL else 1] += count
    return [
        _with_totals(
            {"name": policy},
            "rules",
            [
                _with_totals(
                    {"name": rule},
                    "containers",
                    [
                        _with_totals(
                            {"id": cid, "name": cname, "cgroup_id": cgroup_id},
                            "programs",
                            [
                                {"program": program, "blocked": blocked, "audited": audited}
                                for program, (blocked, audited) in sorted(programs.items())
                            ],
                        )
                        for (cid, cname, cgroup_id), programs in sorted(containers.items())
                    ],
                )
                for rule, containers in rules.items()
            ],
        )
        for policy, rules in tree.items()
    ]


def _with_totals(
    node: dict[str, object], children_key: str, children: list[dict[str, Any]]
) -> dict[str, object]:
    node["blocked"] = sum(int(child["blocked"]) for child in children)
    node["audited"] = sum(int(child["audited"]) for child in children)
    node[children_key] = children
    return node
