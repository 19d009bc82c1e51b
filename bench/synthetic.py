"""Synthetic policies and containers at a given scale, one of them a real cgroup."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any

from enforcer.containers.model import Container
from enforcer.policy.model import ExecPolicy

MAX_POLICIES = 10
# Far above any real cgroup id (an inode number): these cgroups never run anything.
FAKE_CGROUP_BASE = 10**12
# Rules with a condition beside the plain ones (with_conditions), each condition its own.
CONDITIONAL_RULES = 8
# Values in each args condition, and files in each calledBy (paths, then names).
ARG_VALUES = 4
CALLER_PATHS = 2
CALLER_NAMES = 2


class Condition(StrEnum):
    """What with_conditions gives its conditional rules: `match.calledBy` or `match.args`."""

    NONE = "none"
    CALLED_BY = "calledBy"
    ARGS = "args"


def synthetic(
    rules: int, containers: int, real_cgroup: int
) -> tuple[list[ExecPolicy], list[Container]]:
    """`rules` kill rules spread over up to ten policies, selecting `containers` containers.

    Container 0 owns `real_cgroup`, where the exec loop runs; the others own
    cgroup ids nothing runs in. Each policy selects every tenth container, so
    the kernel maps hold `containers` cgroup entries and `rules` name entries.
    No rule names the program the loop runs: every exec is looked up and misses,
    the path every allowed exec in a selected container takes.
    """
    policy_count = min(MAX_POLICIES, rules, containers)
    fleet = [
        Container(
            id=f"bench{i:059d}",
            runtime="runc",
            cgroup_ids=(real_cgroup if i == 0 else FAKE_CGROUP_BASE + i,),
        )
        for i in range(containers)
    ]
    policies = [
        _policy(p, fleet[p::policy_count], rules // policy_count + (p < rules % policy_count))
        for p in range(policy_count)
    ]
    return policies, fleet


def _policy(index: int, selected: list[Container], rule_count: int) -> ExecPolicy:
    rules = [
        {"name": f"r{r}", "match": {"names": [f"bench-prog-{index}-{r}"]}}
        for r in range(rule_count)
    ]
    return _exec_policy(f"bench-{index}", selected, rules)


def _exec_policy(
    name: str, selected: list[Container], rules: list[dict[str, Any]], **spec: str
) -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {
                "selector": {"containers": {"ids": [c.id for c in selected]}},
                **spec,
                "rules": rules,
            },
        }
    )


def _only_container(real_cgroup: int) -> list[Container]:
    return [Container(id=f"bench{0:059d}", runtime="runc", cgroup_ids=(real_cgroup,))]


def allowlist(
    entries: int, allowed: list[str], real_cgroup: int
) -> tuple[list[ExecPolicy], list[Container]]:
    """One allowlist (default kill) of `entries` paths, among them `allowed`, on one container.

    The container owns `real_cgroup`; the loop's programs are allowed, so each
    exec is looked up, found, and lets the default go unused.
    """
    fleet = _only_container(real_cgroup)
    paths = [*allowed, *(f"/opt/bench/allowed/p{i}" for i in range(entries - len(allowed)))]
    rules = [{"name": "allowed", "action": "allow", "match": {"paths": paths}}]
    return [_exec_policy("bench-allowlist", fleet, rules, default="kill")], fleet


def with_conditions(
    plain: int, condition: Condition, program: str, real_cgroup: int, *,
    names_program: bool = False, met_by: str | None = None,
) -> tuple[list[ExecPolicy], list[Container]]:  # fmt: skip
    """One policy on one container (which owns `real_cgroup`): `plain` kill rules and, with a
    condition, CONDITIONAL_RULES kill rules that each have one of that kind.

    Every name a rule gives is as long as `program` (the basename the loop runs) and none
    is it: the kernel looks a basename up only where the set has a name of its length, so
    each exec takes that lookup, and misses, in every configuration alike. With
    `names_program`, the first conditional rule names `program` instead, with action
    audit (counted, never killed): its condition is evaluated for every exec, and fails,
    as no value it lists is the loop's, unless `met_by` is given: a value that meets it
    (the calling program's path for calledBy, one of the exec's arguments for args),
    listed with the others.
    """
    conditional = CONDITIONAL_RULES if condition is not Condition.NONE else 0
    names = iter(_never_run(plain + conditional, len(program), program))
    rules: list[dict[str, Any]] = [
        {"name": f"plain-{r}", "match": {"names": [next(names)]}} for r in range(plain)
    ]
    for r in range(conditional):
        named = names_program and r == 0
        match = {"names": [program if named else next(names)]}
        match |= _condition(condition, r, met_by if named else None)
        rules.append(
            {"name": f"{condition.lower()}-{r}", "action": "audit" if named else "kill",
             "match": match}
        )  # fmt: skip
    fleet = _only_container(real_cgroup)
    return [_exec_policy("bench-conditions", fleet, rules)], fleet


def _never_run(count: int, length: int, program: str) -> list[str]:
    """`count` basenames of `length` bytes (while they fit), none of them `program`."""
    names = (f"z{i:0{max(length - 1, 1)}d}" for i in itertools.count())
    return list(itertools.islice((n for n in names if n != program), count))


def _condition(condition: Condition, rule: int, met_by: str | None) -> dict[str, Any]:
    """Rule `rule`'s calledBy or args: values nothing here has, and `met_by` first if given."""
    met = [met_by] if met_by is not None else []
    if condition is Condition.CALLED_BY:
        paths = [f"/opt/enforcer-bench/never/caller-{rule}-{i}" for i in range(CALLER_PATHS)]
        names = [f"enfb-caller-{rule}-{i}" for i in range(CALLER_NAMES)]
        return {"calledBy": {"paths": [*met, *paths], "names": names}}
    if condition is Condition.ARGS:
        values = [f"--enfb-never-{rule}-{i}" for i in range(ARG_VALUES)]
        return {"args": {"anyOf": [*met, *values]}}
    return {}
