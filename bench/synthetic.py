"""Synthetic policies and containers at a given scale, one of them a real cgroup."""

from __future__ import annotations

from enforcer.containers.model import Container
from enforcer.policy.model import ExecPolicy

MAX_POLICIES = 10
# Far above any real cgroup id (an inode number): these cgroups never run anything.
FAKE_CGROUP_BASE = 10**12


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
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": f"bench-{index}"},
            "spec": {
                "selector": {"containers": {"ids": [c.id for c in selected]}},
                "rules": [
                    {"name": f"r{r}", "match": {"names": [f"bench-prog-{index}-{r}"]}}
                    for r in range(rule_count)
                ],
            },
        }
    )


def allowlist(
    entries: int, allowed: list[str], real_cgroup: int
) -> tuple[list[ExecPolicy], list[Container]]:
    """One allowlist (default kill) of `entries` paths, among them `allowed`, on one container.

    The container owns `real_cgroup`; the loop's programs are allowed, so each
    exec is looked up, found, and lets the default go unused.
    """
    fleet = [Container(id=f"bench{0:059d}", runtime="runc", cgroup_ids=(real_cgroup,))]
    paths = [*allowed, *(f"/opt/bench/allowed/p{i}" for i in range(entries - len(allowed)))]
    policy = ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "bench-allowlist"},
            "spec": {
                "selector": {"containers": {"ids": [fleet[0].id]}},
                "default": "kill",
                "rules": [{"name": "allowed", "action": "allow", "match": {"paths": paths}}],
            },
        }
    )
    return [policy], fleet
