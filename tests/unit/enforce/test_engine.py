"""The engine's bookkeeping that needs no kernel: what it compiles, keeps in force and names."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from enforce_fakes import FakeCounters, FakeRules, kills, loaded

from enforcer.bpf.abi import Action, EventKind
from enforcer.bpf.records import CounterKey, KernelEvent
from enforcer.containers.model import Container
from enforcer.enforce.decision import FileIdentity
from enforcer.enforce.denials import RECENT_EVENTS
from enforcer.enforce.engine import Engine
from enforcer.enforce.ids import describe
from enforcer.enforce.map_contents import GROUP_POLICY_ID, Hit, MapContents
from enforcer.policy.loader import LoadedPolicy, LoadResult
from enforcer.policy.model import ExecPolicy
from enforcer.service.protocol import Persistence, PolicyStates
from enforcer.service.reports import Reports

WEB = Container(id="a" * 64, runtime="podman", name="web-1", cgroup_ids=(101,), pid=None)


def by_name(pattern: str, match: Mapping[str, object] | None = None) -> LoadedPolicy:
    policy = ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"containers": {"names": [pattern]}},
                "rules": [{"name": "r", "match": match or {"names": ["nc"]}}],
            },
        }
    )
    return LoadedPolicy(policy=policy, source=Path("policies/web.yaml"), line=1)


def test_a_runtime_that_times_out_does_not_unselect_a_placed_container() -> None:
    program = FakeRules()
    seen = [WEB]
    engine = Engine(
        program,
        lambda: LoadResult((by_name("web-*"),), ()),
        lambda: list(seen),
        lambda: {},
    )
    engine.reload()
    assert program.maps is not None and program.maps.cgroup_sets[101] != 0

    # podman did not answer this time: the name is unknown, not empty.
    seen[:] = [Container(id=WEB.id, runtime="podman", cgroup_ids=(101,), metadata_known=False)]
    engine.reload()
    assert program.maps.cgroup_sets[101] != 0
    assert engine.containers[0].name == "web-1"

    # A container that answers with another name is placed by what it says now.
    seen[:] = [Container(id=WEB.id, runtime="podman", name="db-1", cgroup_ids=(101,))]
    engine.reload()
    assert program.maps.cgroup_sets[101] == 0


def test_calledby_on_a_program_that_cannot_read_callers_is_a_problem_of_its_file() -> None:
    program = FakeRules(reads_callers=False)
    match = {"names": ["sh"], "calledBy": {"paths": ["/usr/sbin/nginx"]}}
    engine = Engine(
        program,
        lambda: LoadResult((by_name("web-*", match),), ()),
        lambda: [WEB],
        lambda: {},
    )
    assert engine.reload() is False
    (problem,) = engine.problems
    assert (problem.file, problem.field) == (
        Path("policies/web.yaml"),
        "spec.rules[0].match.calledBy",
    )
    assert "Linux 6.10" in problem.message and "--backend lsm" in problem.message
    assert program.maps is not None and program.maps.cgroup_sets.get(101, 0) == 0


def host_engine(
    files: list[LoadedPolicy], rules: FakeRules, counters: FakeCounters | None = None
) -> Engine:
    """An engine enforcing the policy `files` (which the test may change) with no containers."""
    engine = Engine(
        rules,
        lambda: LoadResult(tuple(files), ()),
        lambda: [],
        lambda: {},
    )
    assert engine.reload() is True
    return engine


def host_maps(rules: FakeRules) -> MapContents:
    assert rules.maps is not None
    return rules.maps


def test_a_refused_map_write_keeps_the_policies_in_force_and_says_why() -> None:
    files, rules = [loaded("first", {"host": True}, kills("nc"))], FakeRules()
    engine = host_engine(files, rules)
    in_force = rules.maps
    nc = [FileIdentity(path="/usr/bin/nc", names=("nc",))]
    socat = [FileIdentity(path="/usr/bin/socat", names=("socat",))]

    files[:] = [loaded("second", {"host": True}, kills("socat"))]
    rules.refuse = True
    assert engine.reload() is False

    assert rules.maps is in_force
    assert [p.policy.name for p in engine.policies] == ["first"]
    assert engine.enforce_error is not None and "refused" in engine.enforce_error
    # Held execs are decided by what the kernel enforces, not by the change that failed.
    assert engine.any_rule.names(nc, {}) and not engine.any_rule.names(socat, {})
    reports = Reports(engine, FakeCounters())
    assert reports.policy_states() == PolicyStates(ok=0, stale=1, error=1)
    status = reports.status("tracepoint", "", 0, Persistence(0, False, False))
    assert status.enforce_error == engine.enforce_error

    rules.refuse = False
    assert engine.reload() is True
    assert engine.enforce_error is None
    assert [p.policy.name for p in engine.policies] == ["second"]
    assert reports.policy_states() == PolicyStates(ok=1, stale=0, error=0)


def audits(policy: str, count: int) -> list[dict[str, object]]:
    return [
        {"name": f"{policy}{i}", "action": "audit", "match": {"names": ["nc"]}}
        for i in range(count)
    ]


# Ten rules name nc on the host: past abi.MAX_HITS, the last ones share one group hit.
GROUPED = [
    loaded("p", {"host": True}, *audits("p", 5)),
    loaded("q", {"host": True}, *audits("q", 5)),
]


def test_a_group_hit_counts_for_every_rule_it_stands_for_under_its_own_policy() -> None:
    rules, counters = FakeRules(), FakeCounters()
    engine = host_engine(GROUPED, rules, counters)
    maps = host_maps(rules)
    *own, group = maps.names[(maps.host_set_id, "nc")]
    assert group.policy_id == GROUP_POLICY_ID
    members = maps.expand(group)
    assert len(members) > 1 and {m.policy_id for m in members} <= {h.policy_id for h in own}
    counters.counts = {
        CounterKey(7, group.policy_id, group.rule_id, group.target_id, group.action): 3,
        CounterKey(7, own[0].policy_id, own[0].rule_id, own[0].target_id, own[0].action): 1,
    }

    report = Reports(engine, counters).stats()
    audited = {
        (policy.name, rule.name): rule.audited
        for policy in report.policies
        for rule in policy.rules
    }
    assert engine.compiled is not None
    names = {h: describe(engine.compiled.ids, h) for h in (*members, own[0])}
    assert audited == {
        **{(names[m].policy, names[m].rule): 3 for m in members},
        (names[own[0]].policy, names[own[0]].rule): 1,
    }
    totals = {policy.name: policy.audited for policy in report.policies}
    assert sum(totals.values()) == 3 * len(members) + 1


def match(hit: Hit, pid: int = 42) -> KernelEvent:
    return KernelEvent(
        kind=EventKind.MATCH, timestamp_ns=0, cgroup_id=7, pid=pid, tid=pid, uid=1000, hit=hit,
        comm="nc", filename="/usr/bin/nc", invoked="/usr/bin/nc",
    )  # fmt: skip


def test_a_group_hit_event_names_each_rule_it_stands_for() -> None:
    rules = FakeRules()
    engine = host_engine(GROUPED, rules)
    maps = host_maps(rules)
    group = maps.names[(maps.host_set_id, "nc")][-1]
    denials = engine.denials(EventKind.MATCH, match(group))
    assert len(denials) == len(maps.expand(group)) > 1
    assert {d.policy for d in denials} <= {"p", "q"} and all(d.action == "audit" for d in denials)
    assert len({(d.policy, d.rule) for d in denials}) == len(denials)


def test_a_kernel_hit_is_named_and_kept_and_other_events_are_not() -> None:
    rules = FakeRules()
    engine = host_engine([loaded("p", {"host": True}, kills("nc"))], rules)
    maps = host_maps(rules)
    (hit,) = maps.names[(maps.host_set_id, "nc")]
    (denial,) = engine.denials(EventKind.MATCH, match(hit))
    assert (denial.policy, denial.rule, denial.action) == ("p", "r", "kill")
    assert (denial.container_id, denial.pid, denial.uid, denial.comm) == ("host", 42, 1000, "nc")
    assert denial.invoked == ""  # invoked as the file that runs: not said twice
    assert str(denial).startswith("killed /usr/bin/nc (pid 42, comm nc) in host: policy p")
    assert engine.denials(EventKind.EXEC, match(hit)) == []
    assert list(engine.recent) == [denial]


def test_denials_after_returns_what_came_after_seen() -> None:
    rules = FakeRules()
    engine = host_engine([loaded("p", {"host": True}, kills("nc"))], rules)
    maps = host_maps(rules)
    (hit,) = maps.names[(maps.host_set_id, "nc")]
    first = engine.denials(EventKind.MATCH, match(hit, pid=1))
    assert engine.denials_after(0, timeout=0) == (first, 1)
    assert engine.denials_after(1, timeout=0) == ([], 1)

    # A follower waiting for the next one wakes when it comes.
    woken: list[tuple[list[Any], int]] = []
    follower = threading.Thread(target=lambda: woken.append(engine.denials_after(1, timeout=30)))
    follower.start()
    second = engine.denials(EventKind.MATCH, match(hit, pid=2))
    follower.join(timeout=30)
    assert woken == [(second, 2)]


def test_denials_after_a_follower_fell_behind_are_the_ones_still_kept() -> None:
    rules = FakeRules()
    engine = host_engine([loaded("p", {"host": True}, kills("nc"))], rules)
    maps = host_maps(rules)
    (hit,) = maps.names[(maps.host_set_id, "nc")]
    for pid in range(RECENT_EVENTS + 5):
        engine.denials(EventKind.MATCH, match(hit, pid=pid))
    fresh, seen = engine.denials_after(2, timeout=0)
    assert seen == RECENT_EVENTS + 5
    assert [d.pid for d in fresh] == list(range(5, RECENT_EVENTS + 5))
    assert all(d.action == Action.KILL.name.lower() for d in fresh)
