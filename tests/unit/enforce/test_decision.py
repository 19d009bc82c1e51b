"""The userspace replay of the kernel's decision, used for held execs."""

from __future__ import annotations

from typing import Any

from enforcer.bpf.abi import Action
from enforcer.containers.model import Container
from enforcer.enforce.compiler import Compiled, compile_policies
from enforcer.enforce.decision import AnyRule, FileIdentity, decide, kills
from enforcer.enforce.ids import describe
from enforcer.enforce.resolve import ResolvedPath
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


def compiled(*policies: ExecPolicy, view: dict[str, ResolvedPath] | None = None) -> Compiled:
    return compile_policies(list(policies), [WEB], views={WEB.id: view or {}})


def file(path: str, name: str, **more: Any) -> FileIdentity:
    return FileIdentity(path=path, names=(name,), **more)


def named(
    result: Compiled, path: str, name: str, *more: FileIdentity
) -> list[tuple[str, str, str, Action]]:
    set_id = result.maps.cgroup_sets[101]
    out = []
    for hit in decide(result.maps, set_id, [file(path, name), *more]):
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
    # Names are looked up first, in the kernel too: the name's target is the one counted.
    assert named(result, "/usr/bin/nc", "nc") == [("p", "r", "nc", Action.KILL)]


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
    assert kills(decide(result.maps, set_id, [file("/bin/nc", "nc")]))


def test_a_held_exec_a_deny_rule_names_is_killed_it_is_past_the_hook() -> None:
    result = compiled(policy("p", {"name": "r", "action": "deny", "match": {"names": ["nc"]}}))
    assert named(result, "/bin/nc", "nc") == [("p", "r", "nc", Action.KILL)]
    assert kills(decide(result.maps, result.maps.cgroup_sets[101], [file("/bin/nc", "nc")]))


def test_no_set_and_empty_basename_decide_nothing() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"names": ["nc"]}}))
    assert decide(result.maps, 0, [file("/bin/nc", "nc")]) == ()
    assert named(result, "/bin/" + "n" * 80, "") == []


MERGED_USR = {"/bin/nc": ResolvedPath("/usr/bin/nc.openbsd", (0xFE00000, 4242))}


def test_a_path_matches_where_it_resolves_in_the_container_and_by_its_inode() -> None:
    result = compiled(policy("p", {"name": "r", "match": {"paths": ["/bin/nc"]}}), view=MERGED_USR)
    expected = [("p", "r", "/bin/nc", Action.KILL)]
    assert named(result, "/usr/bin/nc.openbsd", "nc.openbsd") == expected
    assert named(result, "/bin/nc", "nc") == []  # no file has that path in this root
    hardlink = file("/tmp/renamed", "renamed", inode=(0xFE00000, 4242))
    assert named(result, "/tmp/x", "x", hardlink) == expected
    other_dev = file("/tmp/renamed", "renamed", inode=(0xFE00001, 4242))
    assert named(result, "/tmp/x", "x", other_dev) == []


def test_a_cut_path_matches_every_path_and_dir_rule_fail_closed() -> None:
    result = compiled(
        policy("p", {"name": "r", "match": {"dirs": ["/opt"]}}),
        policy("q", {"name": "s", "match": {"names": ["nc"]}}, mode="audit"),
    )
    cut = file("/a/b", "b", path_cut=True)
    set_id = result.maps.cgroup_sets[101]
    hits = decide(result.maps, set_id, [cut])
    assert [describe(result.ids, h).rule for h in hits] == ["r"] and kills(hits)


def test_a_script_and_its_interpreter_each_count_and_a_rule_hit_by_both_once() -> None:
    result = compiled(
        policy("p", {"name": "shells", "match": {"names": ["dash"], "dirs": ["/tmp"]}})
    )
    script = file("/tmp/job.sh", "job.sh")
    assert named(result, "/usr/bin/dash", "dash", script) == [("p", "shells", "dash", Action.KILL)]
    assert named(result, "/usr/bin/python3.11", "python3.11", script) == [
        ("p", "shells", "/tmp/*", Action.KILL)
    ]


def test_any_rule_sees_an_alias_of_a_named_path_in_the_held_process_root() -> None:
    rules = AnyRule([policy("p", {"name": "r", "match": {"paths": ["/bin/nc"]}})])
    assert rules.names([file("/usr/bin/nc.openbsd", "nc.openbsd")], MERGED_USR)
    moved = file("/tmp/x", "x", inode=(0xFE00000, 4242))
    assert rules.names([moved], MERGED_USR)
    assert not rules.names([file("/usr/bin/true", "true")], MERGED_USR)
    assert rules.targets == ["/bin/nc"]
