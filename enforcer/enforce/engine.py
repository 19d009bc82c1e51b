"""Keeps the kernel enforcing the current policies on the current containers.

The engine owns the last good policy set, the container inventory and the
stable ids, and turns kernel counters and events back into names (what the
CLI asks is answered from its state by service/reports.py). It talks to the
kernel only through `ProgramMaps`, so it is independent of bcc.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from enforcer.bpf.abi import MAX_COUNTERS, Action, EventKind
from enforcer.bpf.records import CounterKey, KernelEvent
from enforcer.containers.model import Container
from enforcer.enforce.compiler import (
    HOST_VIEW,
    Compiled,
    CounterName,
    Hit,
    Ids,
    MapContents,
    compile_policies,
    describe,
    inode_entries,
    path_targets,
    select,
    set_key,
)
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.decision import AnyRule
from enforcer.enforce.resolve import HOST_ROOT, ResolveError, RootView, container_root, root_view
from enforcer.errors import EnforcerError
from enforcer.policy.loader import LoadedPolicy, LoadResult, PolicyProblem
from enforcer.policy.model import ExecPolicy

log = logging.getLogger(__name__)

HOST = "host"
RECENT_EVENTS = 1000


class ProgramMaps(Protocol):
    """What the engine needs of the loaded BPF program (bpf_program.ExecProgram)."""

    def apply(self, maps: MapContents) -> None: ...
    def add_inodes(self, inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]]) -> None: ...
    def add_caller_inodes(self, inodes: Mapping[tuple[int, int, int], CallerEntry]) -> None: ...
    @property
    def reads_callers(self) -> bool: ...
    def assign_cgroups(self, cgroup_sets: Mapping[int, int | None]) -> None: ...
    def counters(self) -> dict[CounterKey, int]: ...
    def event_drops(self) -> int: ...
    def signal_errors(self) -> tuple[int, int]: ...
    def full_maps(self) -> dict[str, int]: ...


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
    filename: str  # the file that runs, resolved in the container's root
    target: str
    argv: tuple[str, ...] = ()
    invoked: str = ""  # the path as passed to exec, where it differs
    caller: str = ""  # the program that called exec, resolved, where the kernel read it

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        verb = {Action.KILL.name.lower(): "killed", Action.DENY.name.lower(): "denied"}.get(
            self.action, "audited"
        )
        where = HOST if self.container_id == HOST else f"container {self.container_id[:12]}"
        invoked = f" (invoked as {self.invoked})" if self.invoked else ""
        caller = f", called by {self.caller}" if self.caller else ""
        return (
            f"{verb} {self.filename}{invoked} (pid {self.pid}, comm {self.comm}{caller}) in "
            f"{where}: "
            f"policy {self.policy}, rule {self.rule}"
        )


@dataclass(frozen=True)
class Snapshot:
    """The engine's policies, containers and compile, as one reading (see service/reports.py)."""

    policies: tuple[LoadedPolicy, ...]
    problems: tuple[PolicyProblem, ...]
    containers: tuple[Container, ...]
    compiled: Compiled | None
    enforce_error: str | None


class Engine:
    """Policies + containers -> kernel maps; kernel counters/events -> names."""

    def __init__(
        self,
        program: ProgramMaps,
        load: Callable[[], LoadResult],
        discover: Callable[[], list[Container]],
        named_netns: Callable[[], Mapping[str, int]],
        *,
        ids: Ids | None = None,
        save_ids: Callable[[Ids], None] | None = None,
    ) -> None:
        self._program = program
        self._load = load
        self._discover = discover
        self._named_netns = named_netns
        self._lock = threading.Lock()
        self._ids = ids if ids is not None else Ids()
        self._save_ids = save_ids
        self.policies: tuple[LoadedPolicy, ...] = ()
        self.problems: tuple[PolicyProblem, ...] = ()
        self.containers: list[Container] = []
        self.compiled: Compiled | None = None
        self._cgroup_owner: dict[int, Container] = {}
        # Owners of removed sub-cgroups, oldest first (see forget_cgroup).
        self._departed: OrderedDict[int, Container] = OrderedDict()
        # cgroup id -> set number for cgroups placed since the last compile,
        # None for those found to be host cgroups.
        self._placed: dict[int, int | None] = {}
        self.any_rule = AnyRule(())
        # Why the last compile or map switch failed (the maps before it stay in
        # force); None once one succeeds.
        self.enforce_error: str | None = None
        # Cgroups of containers that could not be placed: their held execs are
        # decided by AnyRule alone (fail closed).
        self._unplaceable: dict[int, str] = {}
        self.recent: deque[Denial] = deque(maxlen=RECENT_EVENTS)
        self._denials_seen = 0  # how many denials were ever recorded
        self._new_denial = threading.Condition()
        self.started = time.time()

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
        if not self._program.reads_callers:
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
            plain, containers, self._ids, netns, views=_views(plain, containers, netns)
        )
        if self._save_ids is not None and _id_count(self._ids) != known:
            self._save_ids(self._ids)  # before the kernel counts with the new ids
        self._program.apply(compiled.maps)
        self.policies, self.containers, self.compiled = policies, containers, compiled
        self.any_rule = AnyRule(p.policy for p in policies)
        self._placed = {cg: None for cg, number in self._placed.items() if number is None}
        self._placed.update(compiled.maps.cgroup_sets)
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

    def _netns(self, policies: Sequence[LoadedPolicy] | None = None) -> Mapping[str, int]:
        """Named network namespaces, only looked up when a policy names one."""
        if any(
            p.policy.spec.selector.namespaces and p.policy.spec.selector.namespaces.net
            for p in (self.policies if policies is None else policies)
        ):
            return self._named_netns()
        return {}

    def metadata_unknown(self, cgroup_id: int) -> bool:
        """Whether a policy selects by metadata this cgroup's runtime did not give."""
        container = self._cgroup_owner.get(cgroup_id)
        if container is None or container.metadata_known:
            return False
        return any(
            c.names or c.images or c.labels
            for p in self.policies
            if (c := p.policy.spec.selector.containers) is not None
        )

    def needs_pid(self) -> bool:
        """Whether placing a container needs its process (namespace selectors do)."""
        return any(p.policy.spec.selector.namespaces for p in self.policies)

    def set_of(self, cgroup_id: int) -> int | None:
        """The set number a cgroup is enforced with, or None if it was never placed."""
        if cgroup_id not in self._placed:
            return None
        number = self._placed[cgroup_id]
        host = self.compiled.maps.host_set_id if self.compiled else 0
        return host if number is None else number

    def enforced_set(self, cgroup_id: int) -> int:
        """The set the kernel applies to a cgroup it has classified: its own, else the host's."""
        number = self.set_of(cgroup_id)
        if number is not None:
            return number
        return self.compiled.maps.host_set_id if self.compiled else 0

    def place(self, container: Container) -> int:
        """Enforces the current policies on a container that appeared; returns its set.

        A few map writes when the container joins a set already compiled (its
        cgroups, and the inodes its policy paths resolve to); a full recompile
        when its set is new.
        """
        with self._lock:
            containers = [c for c in self.containers if c.id != container.id] + [container]
            compiled = self.compiled
            netns = self._netns()
            chosen = [
                p.policy
                for p in self.policies
                if container.id in select(p.policy, containers, netns).container_ids
            ]
            members = frozenset(p.name for p in chosen)
            view = _view(chosen, container_root(container.pid)) if chosen else {}
            key = set_key(members, chosen, view)
            number = compiled.sets.get(key) if compiled and members else 0
            if number is None or compiled is None:
                if not self._try_enforce(self.policies, containers):
                    self._unplaceable.update(dict.fromkeys(container.cgroup_ids, "cannot compile"))
                    raise EnforcerError(
                        f"container {container.short_id} cannot be placed: {self.enforce_error}"
                    )
                return self._placed[container.cgroup_ids[0]] or 0
            if number:
                self._join_set(compiled, number, chosen, view)
            self._program.assign_cgroups({cg: number for cg in container.cgroup_ids})
            self.containers = containers
            for cgroup_id in container.cgroup_ids:
                self._placed[cgroup_id] = number
                self._cgroup_owner[cgroup_id] = container
        log.info(
            "container %s (%s%s) placed: %s",
            container.short_id,
            container.runtime,
            f", {container.name}" if container.name else "",
            ", ".join(sorted(members)) or "no policy selects it",
        )
        return number

    def _join_set(
        self, compiled: Compiled, number: int, chosen: list[ExecPolicy], view: RootView
    ) -> None:
        """Adds the files a new member's policy paths resolve to to its set."""
        chosen = sorted(chosen, key=lambda p: p.name)
        entries = inode_entries(chosen, number, self._ids, view)
        fresh = {k: v for k, v in entries.rules.items() if k not in compiled.maps.inodes}
        callers = {k: v for k, v in entries.callers.items() if k not in compiled.maps.caller_inodes}
        if fresh:
            self._program.add_inodes(fresh)
        if callers:
            self._program.add_caller_inodes(callers)
        if fresh or callers:
            maps = replace(
                compiled.maps,
                inodes={**compiled.maps.inodes, **fresh},
                caller_inodes={**compiled.maps.caller_inodes, **callers},
            )
            self.compiled = replace(compiled, maps=maps)

    def place_below(self, cgroup_id: int, path: str) -> bool:
        """Places a new cgroup made inside a placed container as that container's.

        The kernel gave it the container's set at mkdir already; this records
        whose it is, with no runtime asked and no cgroup tree walked, so a
        mkdir flood inside a container costs the daemon one lookup each.
        Returns False when no placed container holds the path.
        """
        with self._lock:
            owner = next(
                (c for c in self.containers
                 if path.startswith(c.cgroup_path.rstrip("/") + "/")
                 and c.cgroup_ids and c.cgroup_ids[0] in self._placed),
                None,
            )  # fmt: skip
            if owner is None:
                return False
            number = self._placed[owner.cgroup_ids[0]]
            self._program.assign_cgroups({cgroup_id: number})
            self._placed[cgroup_id] = number
            # A container's cgroups are what the next compile writes: this one too.
            grown = replace(owner, cgroup_ids=(*owner.cgroup_ids, cgroup_id))
            self.containers = [grown if c is owner else c for c in self.containers]
            self._cgroup_owner[cgroup_id] = grown
        return True

    def unplaceable(self, cgroup_id: int) -> bool:
        """Whether the cgroup's container could not be placed under its policies."""
        return cgroup_id in self._unplaceable

    def place_host(self, cgroup_id: int) -> None:
        """Marks a new cgroup as a host cgroup: the host policies apply to it."""
        with self._lock:
            self._program.assign_cgroups({cgroup_id: None})
            self._placed[cgroup_id] = None

    def forget_cgroup(self, cgroup_id: int) -> None:
        """A cgroup was removed; a container whose own cgroup it was is gone."""
        with self._lock:
            self._placed.pop(cgroup_id, None)
            self._unplaceable.pop(cgroup_id, None)
            gone = [c for c in self.containers if c.cgroup_ids and c.cgroup_ids[0] == cgroup_id]
            if gone:
                self.containers = [c for c in self.containers if c not in gone]
                log.info("container %s stopped", gone[0].short_id)
                return
            # A sub-cgroup: its container keeps running without it. Whose it
            # was stays known for the counts made there, as long as the
            # counters map could hold one of them (bounded: a mkdir/rmdir
            # loop inside a container leaves nothing behind past that).
            self.containers = [
                replace(c, cgroup_ids=tuple(i for i in c.cgroup_ids if i != cgroup_id))
                if cgroup_id in c.cgroup_ids[1:] else c
                for c in self.containers
            ]  # fmt: skip
            owner = self._cgroup_owner.pop(cgroup_id, None)
            if owner is not None:
                self._departed[cgroup_id] = owner
                while len(self._departed) > MAX_COUNTERS:
                    self._departed.popitem(last=False)

    def container_of(self, cgroup_id: int) -> Container | None:
        """The container a cgroup is (in), as placed; None for the host's and unknown ones."""
        return self._cgroup_owner.get(cgroup_id)

    def owner(self, cgroup_id: int) -> tuple[str, str]:
        """(container id, container name) of a cgroup, or ("host", "") for the rest."""
        container = self._cgroup_owner.get(cgroup_id) or self._departed.get(cgroup_id)
        return (container.id, container.name) if container else (HOST, "")

    def denials(self, kind: EventKind, event: KernelEvent) -> list[Denial]:
        """Names a kernel rule-hit event (a group hit: each of its rules); records them."""
        if kind is not EventKind.MATCH or event.hit is None:
            return []
        hits = self.compiled.maps.expand(event.hit) if self.compiled else (event.hit,)
        return [
            self.record(
                hit,
                cgroup_id=event.cgroup_id,
                pid=event.pid,
                uid=event.uid,
                comm=event.comm,
                filename=event.filename,
                argv=event.argv,
                invoked=event.invoked,
                caller=event.caller,
            )
            for hit in hits
        ]

    def record(
        self,
        hit: Hit,
        *,
        cgroup_id: int,
        pid: int,
        uid: int,
        comm: str,
        filename: str,
        argv: tuple[str, ...] = (),
        invoked: str = "",
        caller: str = "",
    ) -> Denial:
        """Names one hit (from the kernel, or decided for a held exec) and keeps it."""
        with self._lock:
            name = describe(self._ids, hit)
        container_id, container_name = self.owner(cgroup_id)
        denial = Denial(
            time=time.time(),
            policy=name.policy,
            rule=name.rule,
            action=hit.action.name.lower(),
            container_id=container_id,
            container_name=container_name,
            cgroup_id=cgroup_id,
            pid=pid,
            uid=uid,
            comm=comm,
            filename=filename,
            target=str(name.target),
            argv=argv,
            invoked=invoked if invoked != filename else "",
            caller=caller,
        )
        with self._new_denial:
            self.recent.append(denial)
            self._denials_seen += 1
            self._new_denial.notify_all()
        return denial

    def denials_after(self, seen: int, timeout: float) -> tuple[list[Denial], int]:
        """The denials recorded after the first `seen`, waiting up to `timeout` for one."""
        with self._new_denial:
            self._new_denial.wait_for(lambda: self._denials_seen > seen, timeout)
            fresh = min(self._denials_seen - seen, len(self.recent))
            return list(self.recent)[len(self.recent) - fresh :], self._denials_seen

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


def _views(
    policies: Sequence[ExecPolicy], containers: Sequence[Container], netns: Mapping[str, int]
) -> dict[str, RootView]:
    """How each selected container's (and the host's) policy paths resolve in its root."""
    chosen: dict[str, list[ExecPolicy]] = {}
    views: dict[str, RootView] = {}
    for policy in policies:
        if not path_targets([policy]):
            continue
        selection = select(policy, containers, netns)
        for container_id in selection.container_ids:
            chosen.setdefault(container_id, []).append(policy)
        if selection.host:
            chosen.setdefault(HOST_VIEW, []).append(policy)
    pids = {c.id: c.pid for c in containers}
    for owner, owner_policies in chosen.items():
        root = HOST_ROOT if owner == HOST_VIEW else container_root(pids.get(owner))
        views[owner] = _view(owner_policies, root)
    return views


def _view(policies: Sequence[ExecPolicy], root: Path | None) -> RootView:
    """The policies' paths resolved in `root`; empty (taken as written) where it cannot be read."""
    targets = path_targets(policies)
    if not targets or root is None:
        return {}
    try:
        return root_view(root, targets)
    except ResolveError as e:
        log.warning("policy paths taken as written in %s: %s", root, e)
        return {}


def _id_count(ids: Ids) -> int:
    return len(ids.policies) + len(ids.rules) + len(ids.targets)
