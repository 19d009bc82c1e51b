"""Policies checked together against the kernel's maps, as `enforcer check` does.

The compiler does the counting; these tests check that the policies are placed so that its
limits apply to all of them at once, and that the policy and the list blamed are the ones read
when the maps overflowed. The maps are shrunk (`small_maps`) so that filling them is quick; the
policy files of tests/fixtures/bad-policies fill the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enforcer.bpf import abi
from enforcer.containers import Container
from enforcer.enforce.compiler import compile_policies
from enforcer.policy import ExecPolicy, load_policies
from enforcer.policy.capacity import set_problems
from enforcer.policy.loader import SetProblem

MAP_ENTRIES = 64
ROOM = MAP_ENTRIES // 2  # rule entries get half of a map (map_contents.check_capacity)


@pytest.fixture(autouse=True)
def small_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(abi, "MAX_NAME_ENTRIES", MAP_ENTRIES)
    monkeypatch.setattr(abi, "MAX_PATH_ENTRIES", MAP_ENTRIES)


def policy(name: str, *rules: dict[str, Any], selector: dict[str, Any] | None = None) -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {"selector": selector or {"allContainers": True}, "rules": list(rules)},
        }
    )


def names(prefix: str, count: int, rule: str = "r") -> dict[str, Any]:
    return {"name": rule, "match": {"names": [f"{prefix}{i}" for i in range(count)]}}


def test_policies_that_fit_together_have_no_problem() -> None:
    assert (
        set_problems([policy("a", names("a", ROOM // 2)), policy("b", names("b", ROOM // 2))]) == []
    )


def test_two_policies_that_overflow_the_name_map_together_blame_the_second() -> None:
    first = policy("a", names("a", ROOM // 2 + 1))
    second = policy(
        "b", {"name": "fine", "match": {"dirs": ["/tmp"]}}, names("b", ROOM // 2, "big")
    )

    [problem] = set_problems([first, second])

    assert problem == SetProblem(
        1,
        ("spec", "rules", 1, "match", "names"),
        "the kernel cannot enforce this policy together with those read before it (a), were one "
        "container selected by every policy and the host by every host policy: "
        f"{ROOM + 1} program names (per distinct set of policies) exceed the kernel map's room "
        f"for {ROOM}; select fewer containers, or give containers that share rules the same "
        "policies",
    )


def test_the_same_name_in_two_policies_is_one_entry() -> None:
    assert set_problems([policy("a", names("n", ROOM)), policy("b", names("n", ROOM))]) == []


def test_one_policy_alone_can_overflow_the_maps() -> None:
    paths = {"name": "p", "match": {"paths": [f"/p/{i}" for i in range(ROOM + 1)]}}
    [problem] = set_problems([policy("a", {"name": "n", "match": {"names": ["sh"]}}, paths)])
    assert problem == SetProblem(
        0,
        ("spec", "rules", 1, "match", "paths"),
        f"the kernel cannot enforce this policy: {ROOM + 1} paths and directories (per set) "
        f"exceed the kernel map's room for {ROOM}; select fewer containers, or give "
        "containers that share rules the same policies",
    )


def test_host_and_container_policies_count_in_sets_of_their_own() -> None:
    # The same names for the host and for the containers, in two sets: twice the entries.
    host = policy("h", names("n", ROOM // 2 + 1), selector={"host": True})
    container = policy("c", names("n", ROOM // 2 + 1), selector={"containers": {"ids": ["x"]}})
    assert [p.index for p in set_problems([host, container])] == [1]
    # One policy for both is one set: the compiler numbers sets by their policies.
    both = policy("b", names("n", ROOM), selector={"host": True, "allContainers": True})
    assert set_problems([both]) == []


def test_each_policy_that_does_not_fit_with_those_before_it_is_named() -> None:
    sizes = {"a": ROOM // 2 + 1, "b": ROOM // 2, "c": ROOM // 2 - 1, "d": 1}
    policies = [policy(name, names(name, size)) for name, size in sizes.items()]
    assert [p.index for p in set_problems(policies)] == [1, 3]


def test_paths_and_dirs_share_the_path_map() -> None:
    paths = {"name": "p", "match": {"paths": [f"/p/{i}" for i in range(ROOM // 2 + 1)]}}
    dirs = {"name": "d", "match": {"dirs": [f"/d/{i}" for i in range(ROOM // 2)]}}
    [problem] = set_problems([policy("a", paths, dirs)])
    assert problem.loc == ("spec", "rules", 1, "match", "dirs")
    assert "paths and directories (per set)" in problem.message


def test_any_number_of_rules_may_name_one_program_as_the_compiler_allows() -> None:
    # Past abi.MAX_HITS rules, the compiler groups the rest into one hit.
    rules = [{"name": f"r{i}", "match": {"names": ["sh"]}} for i in range(abi.MAX_HITS + 1)]
    policies = [policy("a", *rules), policy("b", *rules, selector={"host": True})]
    compile_policies(policies, [Container(id="c", runtime="runc", cgroup_ids=(1,))])
    assert set_problems(policies) == []


def test_the_loader_blames_the_file_line_and_field(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(_yaml("a", [f"a{i}" for i in range(ROOM // 2 + 1)]))
    second.write_text(_yaml("b", [f"b{i}" for i in range(ROOM // 2)]))

    result = load_policies([tmp_path], check_set=set_problems)

    assert [p.source for p in result.policies] == [first]
    [problem] = result.problems
    assert (problem.file, problem.line, problem.field) == (second, 10, "spec.rules[0].match.names")
    assert "together with those read before it (a)" in problem.message


def _yaml(name: str, program_names: list[str]) -> str:
    return (
        "apiVersion: enforcer/v1\nkind: ExecPolicy\nmetadata:\n"
        f"  name: {name}\nspec:\n  selector: {{allContainers: true}}\n  rules:\n"
        "    - name: r\n      match:\n"
        f"        names: [{', '.join(program_names)}]\n"
    )
