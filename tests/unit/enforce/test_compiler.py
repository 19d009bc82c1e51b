"""Policies + containers -> BPF map contents, checked the way the kernel reads them.

Hits are compared by the names `describe` gives them back (policy, rule,
target, action), so the tests do not depend on which number an id got; the
one test about numbers is the one about their stability. `exec_path_hits`
repeats the kernel's LPM lookup (longest key that is a prefix of the path plus
its NUL) so that inheritance is checked as an exec would see it.
"""

from __future__ import annotations

from typing import Any

import pytest

from enforcer.bpf import abi
from enforcer.bpf.abi import Action
from enforcer.containers import Container
from enforcer.enforce.compiler import Compiled, compile_policies
from enforcer.enforce.ids import CounterName, Ids, Target, TargetKind, describe
from enforcer.enforce.map_contents import GROUP_POLICY_ID, Hit
from enforcer.enforce.resolve import ResolvedPath
from enforcer.errors import CompileError
from enforcer.policy import ExecPolicy

WEB_ID = "a1b2c3d4e5f6" + "0" * 52
DB_ID = "a1b2c3ffffff" + "1" * 52
CACHE_ID = "9e8d7c6b5a4f" + "2" * 52

# WEB runs in its own cgroup and two it created below it (e.g. systemd inside).
WEB = Container(id=WEB_ID, runtime="runc", cgroup_ids=(101, 102, 103))
DB = Container(id=DB_ID, runtime="runc", cgroup_ids=(201,))
CACHE = Container(id=CACHE_ID, runtime="runc", cgroup_ids=(301, 302))
CONTAINERS = (WEB, DB, CACHE)

Named = tuple[str, str, str, Action]


def rule(
    name: str = "deny",
    *,
    action: str = "kill",
    names: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    dirs: tuple[str, ...] = (),
) -> dict[str, Any]:
    match = {"names": list(names), "paths": list(paths), "dirs": list(dirs)}
    return {"name": name, "action": action, "match": {k: v for k, v in match.items() if v}}


def policy(
    name: str,
    *rules: dict[str, Any],
    ids: tuple[str, ...] = (),
    host: bool = False,
    all_containers: bool = False,
    mode: str = "enforce",
) -> ExecPolicy:
    selector: dict[str, Any] = {}
    if ids:
        selector["containers"] = {"ids": list(ids)}
    if host:
        selector["host"] = True
    if all_containers:
        selector["allContainers"] = True
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {
                "mode": mode,
                "selector": selector,
                "rules": list(rules) or [rule(names=("nc",))],
            },
        }
    )


def named(compiled: Compiled, hits: tuple[Hit, ...]) -> set[Named]:
    """The hits as (policy, rule, target, action), independent of id numbering."""
    result: set[Named] = set()
    for hit in hits:
        name = describe(compiled.ids, hit)
        result.add((name.policy, name.rule, str(name.target), hit.action))
    return result


def set_of(compiled: Compiled, container: Container) -> int:
    """The set id of a container, the same for every one of its cgroups."""
    set_ids = {compiled.maps.cgroup_sets[cg] for cg in container.cgroup_ids}
    assert len(set_ids) == 1, f"{container.id[:12]}'s cgroups disagree: {set_ids}"
    return set_ids.pop()


def exec_path_hits(compiled: Compiled, set_id: int, path: str) -> tuple[Hit, ...]:
    """What the kernel's LPM lookup returns for an exec of `path` in set `set_id`."""
    wanted = path + "\0"
    keys = [k for s, k in compiled.maps.paths if s == set_id and wanted.startswith(k)]
    return compiled.maps.paths[(set_id, max(keys, key=len))] if keys else ()


# --- Selecting containers ---------------------------------------------------------------------


@pytest.mark.parametrize("ref", [WEB_ID, WEB_ID[:8]], ids=["full id", "unique prefix"])
def test_selected_container_cgroups_get_a_set_and_other_containers_get_set_zero(ref: str) -> None:
    compiled = compile_policies([policy("no-nc", ids=(ref,))], CONTAINERS)

    assert compiled.selections[0].container_ids == (WEB_ID,)
    assert compiled.selections[0].unresolved == ()
    maps = compiled.maps
    web_set = set_of(compiled, WEB)
    assert web_set != abi.NO_SET
    # Unselected containers are present with set 0, so the kernel does not
    # fall back to the host set for them.
    assert {cg: maps.cgroup_sets[cg] for cg in (*DB.cgroup_ids, *CACHE.cgroup_ids)} == {
        201: abi.NO_SET,
        301: abi.NO_SET,
        302: abi.NO_SET,
    }
    assert set(maps.cgroup_sets) == {101, 102, 103, 201, 301, 302}
    assert maps.host_set_id == abi.NO_SET
    assert named(compiled, maps.names[(web_set, "nc")]) == {("no-nc", "deny", "nc", Action.KILL)}


def test_unknown_id_and_ambiguous_prefix_select_nothing_and_say_why() -> None:
    compiled = compile_policies([policy("no-nc", ids=("a1b2c3", "deadbeef"))], CONTAINERS)

    selection = compiled.selections[0]
    assert selection.container_ids == ()
    assert selection.host is False
    assert selection.unresolved == (
        "a1b2c3: matches several containers",
        "deadbeef: matches no running container",
    )
    assert set(compiled.maps.cgroup_sets.values()) == {abi.NO_SET}
    assert compiled.maps.host_set_id == abi.NO_SET
    assert compiled.maps.names == {}
    assert compiled.maps.paths == {}


def test_resolved_refs_still_apply_when_another_ref_is_unresolved() -> None:
    compiled = compile_policies([policy("no-nc", ids=("deadbeef", CACHE_ID[:12]))], CONTAINERS)

    assert compiled.selections[0].container_ids == (CACHE_ID,)
    assert compiled.selections[0].unresolved == ("deadbeef: matches no running container",)
    assert set_of(compiled, CACHE) != abi.NO_SET


def test_full_id_that_prefixes_another_id_selects_only_its_own_container() -> None:
    web = Container(id="web", runtime="runc", cgroup_ids=(1,))
    web1 = Container(id="web-1", runtime="runc", cgroup_ids=(2,))

    compiled = compile_policies([policy("no-nc", ids=("web",))], [web1, web])

    assert compiled.selections[0].container_ids == ("web",)
    assert compiled.maps.cgroup_sets[1] != abi.NO_SET
    assert compiled.maps.cgroup_sets[2] == abi.NO_SET


def test_two_refs_to_one_container_select_it_once() -> None:
    compiled = compile_policies([policy("no-nc", ids=(WEB_ID, WEB_ID[:12]))], CONTAINERS)

    assert compiled.selections[0].container_ids == (WEB_ID,)


def test_host_true_gives_the_host_a_set_and_no_container() -> None:
    compiled = compile_policies([policy("host-only", host=True)], CONTAINERS)

    assert compiled.selections[0].host is True
    host_set = compiled.maps.host_set_id
    assert host_set != abi.NO_SET
    assert set(compiled.maps.cgroup_sets.values()) == {abi.NO_SET}
    assert set(compiled.maps.names) == {(host_set, "nc")}


def test_all_containers_selects_every_container_but_not_the_host() -> None:
    compiled = compile_policies([policy("everywhere", all_containers=True)], CONTAINERS)

    assert compiled.selections[0].container_ids == (WEB_ID, DB_ID, CACHE_ID)
    assert {set_of(compiled, c) for c in CONTAINERS} == {set_of(compiled, WEB)} != {abi.NO_SET}
    assert compiled.maps.host_set_id == abi.NO_SET


def test_no_containers_and_no_policies_compile_to_empty_maps() -> None:
    compiled = compile_policies([], [])

    assert compiled.maps.cgroup_sets == {}
    assert compiled.maps.host_set_id == abi.NO_SET
    assert compiled.maps.names == {}
    assert compiled.maps.paths == {}


# --- Actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "rule_action", "expected"),
    [
        ("enforce", "kill", Action.KILL),
        ("audit", "kill", Action.AUDIT),
        ("enforce", "deny", Action.DENY),
        ("audit", "deny", Action.AUDIT),
        ("enforce", "audit", Action.AUDIT),
        ("audit", "audit", Action.AUDIT),
    ],
)
def test_action_folds_in_the_policy_mode(mode: str, rule_action: str, expected: Action) -> None:
    p = policy(
        "p", rule(action=rule_action, names=("nc",), paths=("/bin/sh",)), mode=mode, host=True
    )

    compiled = compile_policies([p], CONTAINERS)

    hits = (*compiled.maps.names.values(), *compiled.maps.paths.values())
    assert {hit.action for entry in hits for hit in entry} == {expected}


# --- Keys -------------------------------------------------------------------------------------


def test_names_paths_and_dirs_get_the_keys_the_kernel_looks_up() -> None:
    p = policy(
        "p",
        rule(names=("nc", "ncat"), paths=("/usr/bin/nc",), dirs=("/tmp", "/dev/shm/")),
        ids=(WEB_ID,),
    )

    compiled = compile_policies([p], CONTAINERS)

    s = set_of(compiled, WEB)
    assert set(compiled.maps.names) == {(s, "nc"), (s, "ncat")}
    assert set(compiled.maps.paths) == {(s, "/usr/bin/nc\0"), (s, "/tmp/"), (s, "/dev/shm/")}
    assert named(compiled, compiled.maps.paths[(s, "/tmp/")]) == {
        ("p", "deny", "/tmp/*", Action.KILL)
    }


def test_root_dir_is_stored_as_a_single_slash_and_covers_every_path() -> None:
    p = policy("p", rule("all", dirs=("/",)), rule("nc", paths=("/bin/nc",)), ids=(WEB_ID,))

    compiled = compile_policies([p], CONTAINERS)

    s = set_of(compiled, WEB)
    assert set(compiled.maps.paths) == {(s, "/"), (s, "/bin/nc\0")}
    assert named(compiled, compiled.maps.paths[(s, "/bin/nc\0")]) == {
        ("p", "all", "/*", Action.KILL),
        ("p", "nc", "/bin/nc", Action.KILL),
    }
    assert named(compiled, exec_path_hits(compiled, s, "/opt/x")) == {
        ("p", "all", "/*", Action.KILL)
    }


def test_names_do_not_reach_the_path_table_nor_paths_the_name_table() -> None:
    p = policy("p", rule(names=("nc",), paths=("/bin/sh",)), ids=(WEB_ID,))

    compiled = compile_policies([p], CONTAINERS)

    s = set_of(compiled, WEB)
    assert set(compiled.maps.names) == {(s, "nc")}
    assert set(compiled.maps.paths) == {(s, "/bin/sh\0")}


# --- Directory inheritance --------------------------------------------------------------------

INHERIT = policy(
    "tree",
    rule("usr", action="audit", dirs=("/usr",)),
    rule("usr-bin", dirs=("/usr/bin",)),
    rule("nc", paths=("/usr/bin/nc",)),
    rule("usrx", paths=("/usrx/bin/tool",)),
    ids=(WEB_ID,),
)
USR = ("tree", "usr", "/usr/*", Action.AUDIT)
USR_BIN = ("tree", "usr-bin", "/usr/bin/*", Action.KILL)
NC = ("tree", "nc", "/usr/bin/nc", Action.KILL)
USRX = ("tree", "usrx", "/usrx/bin/tool", Action.KILL)


def test_exact_path_entry_carries_the_hits_of_every_directory_above_it() -> None:
    compiled = compile_policies([INHERIT], CONTAINERS)

    s = set_of(compiled, WEB)
    paths = compiled.maps.paths
    assert named(compiled, paths[(s, "/usr/bin/nc\0")]) == {USR, USR_BIN, NC}
    assert named(compiled, paths[(s, "/usr/bin/")]) == {USR, USR_BIN}
    assert named(compiled, paths[(s, "/usr/")]) == {USR}


def test_exec_sees_the_longest_entry_with_everything_above_it() -> None:
    compiled = compile_policies([INHERIT], CONTAINERS)

    s = set_of(compiled, WEB)
    assert named(compiled, exec_path_hits(compiled, s, "/usr/bin/nc")) == {USR, USR_BIN, NC}
    assert named(compiled, exec_path_hits(compiled, s, "/usr/bin/ncat")) == {USR, USR_BIN}
    assert named(compiled, exec_path_hits(compiled, s, "/usr/lib/x")) == {USR}
    assert exec_path_hits(compiled, s, "/bin/nc") == ()


def test_a_path_that_only_shares_a_string_prefix_does_not_inherit_the_directory() -> None:
    compiled = compile_policies([INHERIT], CONTAINERS)

    s = set_of(compiled, WEB)
    assert named(compiled, compiled.maps.paths[(s, "/usrx/bin/tool\0")]) == {USRX}
    assert exec_path_hits(compiled, s, "/usrx/bin/other") == ()


def test_inheritance_stays_within_one_set() -> None:
    dirs = policy("dirs", rule("usr", dirs=("/usr",)), ids=(DB_ID,))
    path = policy("path", rule("nc", paths=("/usr/bin/nc",)), ids=(WEB_ID,))

    compiled = compile_policies([dirs, path], CONTAINERS)

    web = set_of(compiled, WEB)
    assert named(compiled, compiled.maps.paths[(web, "/usr/bin/nc\0")]) == {
        ("path", "nc", "/usr/bin/nc", Action.KILL)
    }


# --- Policy sets ------------------------------------------------------------------------------


def test_two_policies_on_one_container_make_one_set_carrying_both() -> None:
    kill = policy("kill-nc", rule("nc", names=("nc",), dirs=("/tmp",)), ids=(WEB_ID,))
    audit = policy(
        "audit-nc", rule("nc", names=("nc",), paths=("/tmp/x",)), ids=(WEB_ID,), mode="audit"
    )

    compiled = compile_policies([kill, audit], CONTAINERS)

    s = set_of(compiled, WEB)
    assert {k[0] for k in (*compiled.maps.names, *compiled.maps.paths)} == {s}
    nc_hits = compiled.maps.names[(s, "nc")]
    assert named(compiled, nc_hits) == {
        ("kill-nc", "nc", "nc", Action.KILL),
        ("audit-nc", "nc", "nc", Action.AUDIT),
    }
    assert len({hit.policy_id for hit in nc_hits}) == 2
    assert named(compiled, compiled.maps.paths[(s, "/tmp/x\0")]) == {
        ("kill-nc", "nc", "/tmp/*", Action.KILL),
        ("audit-nc", "nc", "/tmp/x", Action.AUDIT),
    }


def test_containers_selected_by_different_policies_get_different_sets() -> None:
    web = policy("web-rules", rule(names=("nc",)), ids=(WEB_ID,))
    db = policy("db-rules", rule(names=("psql",)), ids=(DB_ID,))

    compiled = compile_policies([web, db], CONTAINERS)

    web_set, db_set = set_of(compiled, WEB), set_of(compiled, DB)
    assert abi.NO_SET not in (web_set, db_set)
    assert web_set != db_set
    assert set(compiled.maps.names) == {(web_set, "nc"), (db_set, "psql")}
    assert set_of(compiled, CACHE) == abi.NO_SET


def test_containers_selected_by_the_same_policies_share_a_set() -> None:
    a = policy("a", ids=(WEB_ID, CACHE_ID))
    b = policy("b", ids=(CACHE_ID[:12], WEB_ID[:12]))
    only_db = policy("c", ids=(DB_ID,))

    compiled = compile_policies([a, b, only_db], CONTAINERS)

    assert set_of(compiled, WEB) == set_of(compiled, CACHE) != set_of(compiled, DB)
    shared = set_of(compiled, WEB)
    assert {p for p, *_ in named(compiled, compiled.maps.names[(shared, "nc")])} == {"a", "b"}


def test_host_and_container_with_the_same_policies_share_a_set() -> None:
    both = policy("both", ids=(WEB_ID,), host=True)

    compiled = compile_policies([both], CONTAINERS)

    assert compiled.maps.host_set_id == set_of(compiled, WEB) != abi.NO_SET


# --- Ids --------------------------------------------------------------------------------------


def _hit_for_nc(compiled: Compiled, container: Container, policy_name: str) -> Hit:
    hits = compiled.maps.names[(set_of(compiled, container), "nc")]
    (hit,) = (h for h in hits if describe(compiled.ids, h).policy == policy_name)
    return hit


def test_ids_stay_the_same_when_policies_are_added_and_removed() -> None:
    ids = Ids()
    kept = policy("kept", rule("r1", names=("nc",)), rule("r2", names=("sh",)), ids=(WEB_ID,))
    # Sorts before "kept", so a fresh numbering would hand it the first ids.
    added = policy("added", rule("r0", names=("nc", "socat")), ids=(WEB_ID,))

    before = _hit_for_nc(compile_policies([kept], CONTAINERS, ids), WEB, "kept")
    grown = compile_policies([added, kept], CONTAINERS, ids)
    during = _hit_for_nc(grown, WEB, "kept")
    after = _hit_for_nc(compile_policies([kept], CONTAINERS, ids), WEB, "kept")

    assert before == during == after
    new = _hit_for_nc(grown, WEB, "added")
    assert new.policy_id != before.policy_id
    assert new.rule_id != before.rule_id
    assert new.target_id == before.target_id  # the same target "nc", named by a different rule


def test_a_fresh_ids_object_is_used_when_none_is_given() -> None:
    first = compile_policies([policy("p", ids=(WEB_ID,))], CONTAINERS)
    second = compile_policies([policy("p", ids=(WEB_ID,))], CONTAINERS)

    assert first.ids is not second.ids


def test_describe_maps_ids_back_to_policy_rule_and_target() -> None:
    compiled = compile_policies([INHERIT], CONTAINERS)

    s = set_of(compiled, WEB)
    by_rule = {describe(compiled.ids, h).rule: h for h in compiled.maps.paths[(s, "/usr/bin/nc\0")]}
    assert describe(compiled.ids, by_rule["nc"]) == CounterName(
        "tree", "nc", Target(TargetKind.PATH, "/usr/bin/nc")
    )
    assert describe(compiled.ids, by_rule["usr-bin"]) == CounterName(
        "tree", "usr-bin", Target(TargetKind.DIR, "/usr/bin/")
    )


def test_describe_marks_ids_it_never_handed_out() -> None:
    stranger = Hit(policy_id=900, rule_id=901, target_id=902, action=Action.KILL)

    assert describe(Ids(), stranger) == CounterName("?900", "?901", "?902")


# --- Limits -----------------------------------------------------------------------------------


def test_more_rules_than_an_entry_holds_become_a_group_with_the_strictest_action() -> None:
    rules = [rule(f"r{i}", action="audit", names=("nc",)) for i in range(abi.MAX_HITS + 3)]
    rules.append(rule("killer", names=("nc",)))
    compiled = compile_policies([policy("p", *rules, ids=(WEB_ID,))], CONTAINERS)

    hits = compiled.maps.names[(set_of(compiled, WEB), "nc")]
    assert len(hits) == abi.MAX_HITS
    assert describe(compiled.ids, hits[0]).rule == "killer"  # strictest first
    group = hits[-1]
    assert group.policy_id == GROUP_POLICY_ID and group.action is Action.AUDIT
    members = compiled.maps.expand(group)
    every_rule = {describe(compiled.ids, h).rule for h in (*hits[:-1], *members)}
    assert every_rule == {"killer", *(f"r{i}" for i in range(abi.MAX_HITS + 3))}
    assert compiled.maps.expand(hits[0]) == (hits[0],)


def test_a_group_keeps_its_id_across_compiles() -> None:
    ids = Ids()
    rules = [rule(f"r{i}", names=("nc",)) for i in range(abi.MAX_HITS + 1)]
    first = compile_policies([policy("p", *rules, ids=(WEB_ID,))], CONTAINERS, ids)
    again = compile_policies([policy("p", *rules, ids=(WEB_ID,))], CONTAINERS, ids)
    assert first.maps.names == again.maps.names and first.maps.groups == again.maps.groups


def test_exactly_max_hits_for_one_name_compiles() -> None:
    rules = [rule(f"r{i}", names=("nc",)) for i in range(abi.MAX_HITS)]

    compiled = compile_policies([policy("p", *rules, ids=(WEB_ID,))], CONTAINERS)

    assert len(compiled.maps.names[(set_of(compiled, WEB), "nc")]) == abi.MAX_HITS


def test_inherited_directory_hits_and_other_policies_join_the_group() -> None:
    half = abi.MAX_HITS // 2 + 1
    dirs = policy("dirs", *(rule(f"d{i}", dirs=("/usr",)) for i in range(half)), ids=(WEB_ID,))
    paths = policy(
        "paths", *(rule(f"p{i}", paths=("/usr/nc",)) for i in range(half)), ids=(WEB_ID,)
    )
    compiled = compile_policies([dirs, paths], CONTAINERS)
    hits = compiled.maps.paths[(set_of(compiled, WEB), "/usr/nc\0")]
    rules = {describe(compiled.ids, h).rule for hit in hits for h in compiled.maps.expand(hit)}
    assert len(hits) == abi.MAX_HITS and len(rules) == 2 * half


# --- Reloads ----------------------------------------------------------------------------------


def test_switching_a_policy_to_audit_changes_only_the_actions() -> None:
    ids = Ids()
    rules = (rule("nc", names=("nc",), paths=("/bin/nc",), dirs=("/tmp",)),)
    enforce = compile_policies([policy("p", *rules, ids=(WEB_ID,))], CONTAINERS, ids)
    audit = compile_policies([policy("p", *rules, ids=(WEB_ID,), mode="audit")], CONTAINERS, ids)

    assert audit.maps.cgroup_sets == enforce.maps.cgroup_sets
    assert audit.maps.host_set_id == enforce.maps.host_set_id
    for table in ("names", "paths"):
        before, after = getattr(enforce.maps, table), getattr(audit.maps, table)
        assert set(after) == set(before)
        for key, hits in before.items():
            assert {h.action for h in hits} == {Action.KILL}
            assert after[key] == tuple(
                Hit(h.policy_id, h.rule_id, h.target_id, Action.AUDIT) for h in hits
            )


def test_more_cgroups_than_the_kernel_map_holds_is_refused_before_any_write() -> None:
    crowded = Container(
        id="f" * 64, runtime="runc", cgroup_ids=tuple(range(1, abi.MAX_CGROUPS + 2))
    )

    with pytest.raises(CompileError, match="container cgroups exceed"):
        compile_policies([policy("p", all_containers=True)], [crowded])


def test_more_names_than_half_the_name_map_is_refused() -> None:
    # Half: during a switch the old and the new entries share the map.
    room = abi.MAX_NAME_ENTRIES // 2
    fits = policy("fits", rule("all", names=tuple(f"p{i}" for i in range(room))), ids=(WEB_ID,))
    # Two rules: the policy model already refuses one rule listing more names than the room.
    big = policy(
        "big",
        rule("most", names=tuple(f"p{i}" for i in range(room))),
        rule("one-more", names=(f"p{room}",)),
        ids=(WEB_ID,),
    )

    compile_policies([fits], CONTAINERS)
    with pytest.raises(CompileError, match="program names"):
        compile_policies([big], CONTAINERS)


# --- Paths as they resolve in each container's root -------------------------------------------

MERGED = {
    "/bin/nc": ResolvedPath("/usr/bin/nc.openbsd", (0xFE00001, 77)),
    "/bin": ResolvedPath("/usr/bin", (0xFE00001, 2)),
}
PLAIN = {"/bin/nc": ResolvedPath("/bin/nc", (0xFE00002, 88)), "/bin": ResolvedPath("/bin")}


def test_a_path_is_keyed_where_it_resolves_and_by_the_inode_it_resolved_to() -> None:
    p = policy("p", rule(paths=("/bin/nc",), dirs=("/bin",)), ids=(WEB_ID, DB_ID))
    compiled = compile_policies([p], CONTAINERS, views={WEB_ID: MERGED, DB_ID: PLAIN})
    web, db = set_of(compiled, WEB), set_of(compiled, DB)
    assert web != db  # the same policy, resolved differently: sets of their own
    assert named(compiled, exec_path_hits(compiled, web, "/usr/bin/nc.openbsd")) == {
        ("p", "deny", "/bin/nc", Action.KILL),
        ("p", "deny", "/bin/*", Action.KILL),  # the directory above it, resolved too
    }
    assert exec_path_hits(compiled, web, "/bin/nc") == ()  # no file has that path there
    assert named(compiled, exec_path_hits(compiled, web, "/usr/bin/true")) == {
        ("p", "deny", "/bin/*", Action.KILL)
    }
    assert named(compiled, compiled.maps.inodes[(web, 0xFE00001, 77)]) == {
        ("p", "deny", "/bin/nc", Action.KILL)
    }
    assert (db, 0xFE00002, 88) in compiled.maps.inodes
    assert (web, 0xFE00002, 88) not in compiled.maps.inodes


def test_containers_whose_paths_resolve_alike_share_a_set_and_its_inodes() -> None:
    other = {
        "/bin/nc": ResolvedPath("/usr/bin/nc.openbsd", (0xFE00009, 77)),
        "/bin": MERGED["/bin"],
    }
    p = policy("p", rule(paths=("/bin/nc",), dirs=("/bin",)), ids=(WEB_ID, DB_ID))
    compiled = compile_policies([p], CONTAINERS, views={WEB_ID: MERGED, DB_ID: other})
    shared = set_of(compiled, WEB)
    assert set_of(compiled, DB) == shared
    assert {k for k in compiled.maps.inodes if k[0] == shared} == {
        (shared, 0xFE00001, 77),
        (shared, 0xFE00009, 77),
    }


def test_set_flags_say_which_lookups_a_set_needs() -> None:
    names_only = policy("names", ids=(WEB_ID,))
    audit_dirs = policy("audit", rule(dirs=("/tmp",)), ids=(DB_ID,), mode="audit")
    kill_paths = policy("kill", rule(paths=("/bin/nc",)), ids=(CACHE_ID,))
    compiled = compile_policies([names_only, audit_dirs, kill_paths], CONTAINERS)
    flags = {c.id: compiled.maps.flags_of(set_of(compiled, c)) for c in CONTAINERS}
    assert flags == {
        WEB_ID: abi.SetFlag.NAMES,
        DB_ID: abi.SetFlag.PATHS,  # audit only: scripts are not held for it
        CACHE_ID: abi.SetFlag.PATHS | abi.SetFlag.INODES | abi.SetFlag.HOLD_SCRIPTS,
    }


def test_a_cut_path_gets_every_path_and_dir_rule_of_the_set_strictest_first() -> None:
    rules = [rule(f"r{i}", action="audit", dirs=(f"/d{i}",)) for i in range(abi.MAX_HITS + 2)]
    p = policy("p", *rules, rule("k", paths=("/x",)), rule("n", names=("nc",)), ids=(WEB_ID,))
    compiled = compile_policies([p], CONTAINERS)
    cut = compiled.maps.cut[set_of(compiled, WEB)]
    assert len(cut) == abi.MAX_HITS
    assert cut[0].action is Action.KILL and describe(compiled.ids, cut[0]).rule == "k"
    assert "n" not in {describe(compiled.ids, h).rule for h in cut}
