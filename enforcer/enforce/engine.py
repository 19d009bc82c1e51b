"""Keeps the kernel enforcing the current policies on the current containers.

The engine owns the last good policy set, the container inventory and the
stable ids; it compiles them into the kernel's maps at each reload (what the
CLI asks is answered from its state by service/reports.py). Its parts do the rest: `Placement` puts
cgroups that appear between compiles into sets, `DenialLog` names the
kernel's rule hits. It talks to the kernel only through the tables of
enforcer.enforce.tables, so it is independent of bcc.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from enforcer.bpf.abi import EventKind
from enforcer.bpf.records import CounterKey, KernelEvent
from enforcer.containers.model import Container
from enforcer.enforce.compiler import (
    Compiled,
    compile_policies,
)
from enforcer.enforce.decision import AnyRule
from enforcer.enforce.denials import Denial, DenialLog
from enforcer.enforce.ids import CounterName, Ids, describe
from enforcer.enforce.map_contents import Hit
from enforcer.enforce.placement import InForce, Placement, root_views
from enforcer.enforce.selection import select
from enforcer.enforce.tables import RuleTables
from enforcer.errors import EnforcerError
from enforcer.policy.loader import LoadedPolicy, LoadResult
from enforcer.policy.problems import PolicyProblem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The engine's policies, containers and compile, as one reading (see service/reports.py)."""

    policies: tuple[LoadedPolicy, ...]
    problems: tuple[PolicyProblem, ...]
    containers: tuple[Container, ...]
    compiled: Compiled | None
    enforce_error: str | None


class Engine:
    """Policies + containers -> kernel maps; kernel counters and events -> names."""

    def __init__(
        self,
        rules: RuleTables,
        load: Callable[[], LoadResult],
        discover: Callable[[], list[Container]],
        named_netns: Callable[[], Mapping[str, int]],
        *,
        ids: Ids | None = None,
        save_ids: Callable[[Ids], None] | None = None,
    ) -> None:
        self._rules = rules
        self._load = load
        self._discover = discover
        self._named_netns = named_netns
        self._lock = threading.Lock()
        self._ids = ids if ids is not None else Ids()
        self._save_ids = save_ids
        self._in_force = InForce()
        self.problems: tuple[PolicyProblem, ...] = ()
        self.any_rule = AnyRule(())
        # Why the last compile or map switch failed (the maps before it stay in
        # force); None once one succeeds.
        self.enforce_error: str | None = None
        self.placement = Placement(
            self._in_force,
            rules,
            ids=self._ids,
            lock=self._lock,
            netns=self._netns,
            recompile=self._recompile,
        )
        self.denial_log = DenialLog(self._describe, self.placement.owner, self._expand)
        self.started = time.time()

    @property
    def policies(self) -> tuple[LoadedPolicy, ...]:
        """The policies in force: a file whose change failed keeps its last good version."""
        return self._in_force.policies

    @property
    def containers(self) -> list[Container]:
        """The containers known: the last compile's, and those placed since."""
        return self._in_force.containers

    @property
    def compiled(self) -> Compiled | None:
        """The maps in force; None until a compile succeeds."""
        return self._in_force.compiled

    def reload(self, rediscover: bool = True) -> bool:
        """Reloads the policies (and, by default, the containers); False if anything failed.

        A file that fails validation, or that someone else than root could
        have written, keeps its last good version in force; the other files'
        changes apply. All of it switches in the kernel at once (see
        ExecProgram.apply). Policies that are valid each but cannot be
        enforced together (the kernel's maps cannot hold them) change
        nothing: the maps in force stay, and `enforce_error` says why.
        """
        # The policy in force keeps its name; a newcomer reusing it is refused.
        result = self._load().keeping_names_in_force(self.policies)
        if not self._rules.reads_callers:
            result = _without_callers(result)
        with self._lock:
            self.problems = result.problems
            bad = {problem.file for problem in result.problems}

            def is_bad(loaded: LoadedPolicy) -> bool:
                return loaded.source in bad or loaded.source.parent in bad

            fresh = [p for p in result.policies if not is_bad(p)]
            names = {p.policy.name for p in fresh}
            kept = [p for p in self.policies if is_bad(p) and p.policy.name not in names]
            for problem in result.problems:
                log.error("policy problem: %s", problem)
            if kept:
                log.error(
                    "kept the last good version of %s",
                    ", ".join(sorted({str(p.source) for p in kept})),
                )
            containers = self._rediscover() if rediscover else self.containers
            enforced = self._try_enforce((*fresh, *kept), containers)
        return enforced and not result.problems

    def refresh_containers(self) -> None:
        """Recompiles the current policies against the containers running now."""
        with self._lock:
            self._try_enforce(self.policies, self._rediscover())

    def _rediscover(self) -> list[Container]:
        """The containers running now; one whose runtime did not answer keeps what it told before.

        A runtime that times out (podman busy) must not move a placed
        container to fewer policies: its name, image and labels are not known
        to have changed.
        """
        known = {c.id: c for c in self.containers if c.metadata_known}
        return [
            keep_metadata(fresh, known[fresh.id])
            if not fresh.metadata_known and fresh.id in known
            else fresh
            for fresh in self._discover()
        ]

    def _try_enforce(self, policies: tuple[LoadedPolicy, ...], containers: list[Container]) -> bool:
        """`_enforce`, or, when that fails, the maps in force kept and the reason kept."""
        try:
            self._enforce(policies, containers)
        except EnforcerError as e:
            self.enforce_error = str(e)
            log.error("cannot enforce the policies as changed: %s; the ones in force stay", e)
            return False
        self.enforce_error = None
        return True

    def _enforce(self, policies: tuple[LoadedPolicy, ...], containers: list[Container]) -> None:
        known = _id_count(self._ids)
        netns = self._netns(policies)
        plain = [p.policy for p in policies]
        compiled = compile_policies(
            plain, containers, self._ids, netns, views=root_views(plain, containers, netns)
        )
        if self._save_ids is not None and _id_count(self._ids) != known:
            self._save_ids(self._ids)  # before the kernel counts with the new ids
        self._rules.apply(compiled.maps)
        self._in_force.policies, self._in_force.containers = policies, containers
        self._in_force.compiled = compiled
        self.any_rule = AnyRule(p.policy for p in policies)
        self.placement.compiled(compiled, containers)
        for selection in compiled.selections:
            for reason in selection.unresolved:
                log.warning("policy %s: container %s", selection.policy, reason)
        log.info(
            "enforcing %d policies on %d containers (%d cgroups selected)",
            len(policies),
            len(containers),
            sum(1 for s in compiled.maps.cgroup_sets.values() if s),
        )

    def _netns(self, policies: Sequence[LoadedPolicy] | None = None) -> Mapping[str, int]:
        """Named network namespaces, only looked up when a policy names one."""
        if any(
            p.policy.spec.selector.namespaces and p.policy.spec.selector.namespaces.net
            for p in (self.policies if policies is None else policies)
        ):
            return self._named_netns()
        return {}

    def _recompile(self, containers: list[Container]) -> str | None:
        """Compiles the policies in force for `containers`: why it failed, or None."""
        return None if self._try_enforce(self.policies, containers) else self.enforce_error

    def _describe(self, hit: Hit) -> CounterName:
        """A hit's names, read while no compile hands out ids."""
        with self._lock:
            return describe(self._ids, hit)

    def _expand(self, hit: Hit) -> tuple[Hit, ...]:
        """The rules' own hits behind a hit (a group's members), by the maps in force."""
        compiled = self.compiled
        return compiled.maps.expand(hit) if compiled else (hit,)

    def container_of(self, cgroup_id: int) -> Container | None:
        """The container a cgroup is (in), as placed; None for the host's and unknown ones."""
        return self.placement.container_of(cgroup_id)

    def owner(self, cgroup_id: int) -> tuple[str, str]:
        """(container id, container name) of a cgroup, or ("host", "") for the rest."""
        return self.placement.owner(cgroup_id)

    @property
    def recent(self) -> Sequence[Denial]:
        """The last denials recorded, oldest first."""
        return self.denial_log.recent

    def denials(self, kind: EventKind, event: KernelEvent) -> list[Denial]:
        """Names a kernel rule-hit event (a group hit: each of its rules); records them."""
        return self.denial_log.denials(kind, event)

    def denials_after(self, seen: int, timeout: float) -> tuple[list[Denial], int]:
        """The denials recorded after the first `seen`, waiting up to `timeout` for one."""
        return self.denial_log.denials_after(seen, timeout)

    def snapshot(self) -> Snapshot:
        """What the engine enforces now, read at one moment (for the reports)."""
        with self._lock:
            return Snapshot(
                policies=self.policies,
                problems=self.problems,
                containers=tuple(self.containers),
                compiled=self.compiled,
                enforce_error=self.enforce_error,
            )

    def counter_names(self, keys: Iterable[CounterKey]) -> dict[CounterKey, CounterName]:
        """The policy, rule and program each counter's ids stand for."""
        with self._lock:
            return {key: describe(self._ids, key) for key in keys}

    def selections(self) -> list[tuple[Container, list[str]]]:
        """Every container the engine knows, with the names of the policies that select it."""
        with self._lock:
            containers = list(self.containers)
            netns = self._netns()
            selected: dict[str, list[str]] = {c.id: [] for c in containers}
            for loaded in self.policies:
                for container_id in select(loaded.policy, containers, netns).container_ids:
                    selected[container_id].append(loaded.policy.name)
        return [(c, selected[c.id]) for c in containers]


def _without_callers(result: LoadResult) -> LoadResult:
    """The result with a problem for each policy whose calledBy this program cannot test."""
    problems = [
        PolicyProblem(
            file=loaded.source,
            line=loaded.line,
            field=f"spec.rules[{index}].match.calledBy",
            message=f"rule {rule.name!r} of policy {loaded.policy.name!r} names the calling "
            "program, which this kernel lets the tracepoint backend read only from Linux 6.10 "
            "on (sched_prepare_exec); run with --backend lsm or kprobe where the kernel has "
            "them (see `enforcer doctor`), or remove calledBy. The file's last good version "
            "stays in force",
        )
        for loaded in result.policies
        for index, rule in enumerate(loaded.policy.spec.rules)
        if rule.match.called_by is not None
    ]
    return replace(result, problems=(*result.problems, *problems)) if problems else result


def keep_metadata(fresh: Container, before: Container) -> Container:
    """`fresh` (its cgroups and process now) with the name, image and labels `before` had."""
    return replace(
        fresh, name=before.name, image=before.image, labels=before.labels, metadata_known=True
    )


def _id_count(ids: Ids) -> int:
    return len(ids.policies) + len(ids.rules) + len(ids.targets)
