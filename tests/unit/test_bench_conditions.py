"""The rule-conditions benchmark's policies and arithmetic (bench/synthetic.py, bench/bpfstats.py).

The policies are replayed through the enforcer's own decision (enforcer.enforce.decision): the
configurations the benchmark measures must name nothing the loop runs, and never meet a
condition, or the figures would be a hit's and not a condition's; its check loops must meet
theirs, with audit. No root, no BPF.
"""

from __future__ import annotations

import pytest

from bench.bpfstats import RunTotals, ns_per_exec, ns_per_run
from bench.condition_cost import LOOP_ARGS, MET_ARG
from bench.synthetic import CONDITIONAL_RULES, Condition, with_conditions
from enforcer.bpf.abi import Action
from enforcer.enforce.compiler import compile_policies
from enforcer.enforce.decision import ExecContext, FileIdentity, decide
from enforcer.enforce.ids import describe

CGROUP = 4242
PROGRAM = FileIdentity(path="/tmp/enforcer-bench-x/trivial", names=("trivial",))
CALLER = FileIdentity(path="/tmp/enforcer-bench-x/spawn_loop", names=("spawn_loop",))
LOOP = ExecContext(caller=CALLER, argv=[b"trivial", *(a.encode() for a in LOOP_ARGS)])


def hits(condition: Condition, *, names_program: bool, met_by: str | None = None) -> list[str]:
    policies, fleet = with_conditions(
        100, condition, "trivial", CGROUP, names_program=names_program, met_by=met_by
    )
    compiled = compile_policies(policies, fleet)
    found = decide(compiled.maps, compiled.maps.cgroup_sets[CGROUP], [PROGRAM], context=LOOP)
    return [f"{describe(compiled.ids, h).rule}:{Action(h.action).name}" for h in found]


@pytest.mark.parametrize(
    ("condition", "names_program"),
    [
        (Condition.NONE, False),
        (Condition.CALLED_BY, False),
        (Condition.CALLED_BY, True),
        (Condition.ARGS, False),
        (Condition.ARGS, True),
    ],
)
def test_measured_configurations_name_or_meet_nothing(
    condition: Condition, names_program: bool
) -> None:
    assert hits(condition, names_program=names_program) == []


@pytest.mark.parametrize(
    ("condition", "met_by"),
    [(Condition.CALLED_BY, CALLER.path), (Condition.ARGS, MET_ARG)],
)
def test_a_met_condition_is_an_audit_hit(condition: Condition, met_by: str) -> None:
    assert hits(condition, names_program=True, met_by=met_by) == [f"{condition.lower()}-0:AUDIT"]


def test_every_rule_name_is_as_long_as_the_program_and_not_it() -> None:
    policies, _ = with_conditions(100, Condition.ARGS, "trivial", CGROUP, names_program=True)
    rules = policies[0].spec.rules
    names = [name for rule in rules for name in rule.match.names]
    assert len(rules) == 100 + CONDITIONAL_RULES
    assert {len(name) for name in names} == {len("trivial")}
    assert [rule.name for rule in rules if "trivial" in rule.match.names] == ["args-0"]
    assert len(set(names)) == len(names)


def test_the_enforcer_programs_times_per_run_add_up() -> None:
    before = {1: RunTotals(10, 1_000), 2: RunTotals(10, 5_000), 3: RunTotals(7, 70)}
    after = {1: RunTotals(20, 2_000), 2: RunTotals(20, 9_000), 3: RunTotals(7, 70)}
    per_run = ns_per_run(before, after)
    assert per_run == {1: 100.0, 2: 400.0}  # program 3 did not run
    assert ns_per_exec(per_run) == 500.0
    assert ns_per_exec({}) is None
