"""The userspace replay of the kernel's decision, used for held execs."""

from __future__ import annotations

from typing import Any

from enforcer.abi import Action
from enforcer.compiler import Compiled, compile_policies, describe
from enforcer.containers.model import Container
from enforcer.decision import decide, kills
from enforcer.policy.model import ExecPolicy

WEB = Container(id="a" * 64, runtime="runc", cgroup_ids=(101,))


def policy(name: str, *rules: dict[str, Any], mode: str = "enforce") -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {"mode": mode, "selector": {"allContainers": True}, "rules": list(rules)},
        }
    )


def compiled(*policies: ExecPolicy) -> Compiled:
    return compile_policies(list(policies), [WEB])


def named(result: Compiled, path: str, name: str) -> list[tuple[str, str, str, Action]]:
    set_id = result.maps.cgroup_sets[101]
    out = []
    for hit in decide(result.maps, set_id, path, name):
        n = describe(result.ids, hit)
        out.append((n.policy, n.rule, str(n.target), hit.action))
    return out


def test_name_rule_matches_the_basename_anywhere() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"names": ["nc"]}}))
    assert named(result, "/usr/bin/nc", "nc") == [("p", "r", "nc", Action.KILL)]
    assert named(result, "/usr/bin/ncat", "ncat") == []


def test_exact_path_matches_only_that_path() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"paths": ["/usr/bin/nc"]}}))
    assert named(result, "/usr/bin/nc", "nc") == [("p", "r", "/usr/bin/nc", Action.KILL)]
    assert named(result, "/bin/nc", "nc") == []
    assert named(result, "/usr/bin/nc2", "nc2") == []


def test_directory_rule_matches_below_not_beside() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"dirs": ["/tmp"]}}))
    assert named(result, "/tmp/x/y", "y") == [("p", "r", "/tmp/*", Action.KILL)]
    assert named(result, "/tmpfoo/y", "y") == []


def test_a_rule_hit_by_path_and_name_counts_once_like_the_kernel() -> None:
    rule = {"name": "r", "match": {"names": ["nc"], "dirs": ["/usr/bin"]}}
    result = compiled(policy("p", rule))
    assert named(result, "/usr/bin/nc", "nc") == [("p", "r", "/usr/bin/*", Action.KILL)]


def test_two_policies_each_get_their_hit_and_audit_mode_does_not_kill() -> None:
    result = compiled(
        policy("enforcing", {"name": "r", "match": {"names": ["nc"]}}),
        policy("watching", {"name": "r", "match": {"names": ["nc"]}}, mode="audit"),
    )
    hits = named(result, "/bin/nc", "nc")
    assert sorted(hits) == [
        ("enforcing", "r", "nc", Action.KILL),
        ("watching", "r", "nc", Action.AUDIT),
    ]
    set_id = result.maps.cgroup_sets[101]
    assert kills(decide(result.maps, set_id, "/bin/nc", "nc"))


def test_a_held_exec_a_deny_rule_names_is_killed_it_is_past_the_hook() -> None:
    result = compiled(policy("p", {"name": "r", "action": "deny", "match": {"names": ["nc"]}}))
    assert named(result, "/bin/nc", "nc") == [("p", "r", "nc", Action.KILL)]
    assert kills(decide(result.maps, result.maps.cgroup_sets[101], "/bin/nc", "nc"))


def test_no_set_and_empty_basename_decide_nothing() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"names": ["nc"]}}))
    assert decide(result.maps, 0, "/bin/nc", "nc") == ()
    assert named(result, "/bin/" + "n" * 80, "") == []
