"""Flat kernel counters folded into policy -> rule -> container -> program, with totals."""

from __future__ import annotations

from enforcer.bpf.abi import Action
from enforcer.bpf.records import CounterKey
from enforcer.enforce.ids import CounterName, Target, TargetKind
from enforcer.enforce.stats import nest_counts

NC = Target(TargetKind.NAME, "nc")
TMP = Target(TargetKind.DIR, "/tmp/")


def owner(cgroup_id: int) -> tuple[str, str]:
    return ("host", "") if cgroup_id == 1 else (f"c{cgroup_id}", f"web-{cgroup_id}")


def test_counts_nest_with_totals_at_every_level_and_audits_apart() -> None:
    kill_nc = CounterKey(7, 1, 1, 1, Action.KILL)
    kill_nc_host = CounterKey(1, 1, 1, 1, Action.KILL)
    audit_tmp = CounterKey(7, 1, 2, 2, Action.AUDIT)
    names = {
        kill_nc: CounterName("p", "no-nc", NC),
        kill_nc_host: CounterName("p", "no-nc", NC),
        audit_tmp: CounterName("p", "watch-tmp", TMP),
    }
    counts = {kill_nc: 3, kill_nc_host: 1, audit_tmp: 5}

    (policy,) = nest_counts(names, counts, owner, ["p"])

    assert (policy["name"], policy["blocked"], policy["audited"]) == ("p", 4, 5)
    rules = {r["name"]: r for r in policy["rules"]}
    assert (rules["no-nc"]["blocked"], rules["no-nc"]["audited"]) == (4, 0)
    containers = rules["no-nc"]["containers"]
    # Sorted by container id: the host's cgroup first.
    assert [(c["id"], c["name"], c["blocked"]) for c in containers] == [
        ("c7", "web-7", 3),
        ("host", "", 1),
    ]
    assert rules["watch-tmp"]["containers"][0]["programs"] == [
        {"program": "/tmp/*", "blocked": 0, "audited": 5}
    ]


def test_a_policy_with_no_counts_yet_is_listed_in_order() -> None:
    key = CounterKey(7, 2, 1, 1, Action.KILL)
    names = {key: CounterName("second", "r", NC)}

    tree = nest_counts(names, {key: 2}, owner, ["first", "second"])

    first, second = tree
    assert (first["name"], first["blocked"], first["rules"]) == ("first", 0, [])
    assert (second["name"], second["blocked"]) == ("second", 2)


def test_a_called_by_rule_says_which_caller_entry_matched() -> None:
    key = CounterKey(7, 1, 1, 1, Action.KILL, caller_id=3)
    names = {
        key: CounterName(
            "p", "no-shell-from-web", "/bin/sh", Target(TargetKind.PATH, "/usr/sbin/nginx")
        )
    }

    (policy,) = nest_counts(names, {key: 1}, owner, ["p"])

    (rule,) = policy["rules"]
    assert rule["containers"][0]["programs"] == [
        {"program": "/bin/sh", "caller": "/usr/sbin/nginx", "blocked": 1, "audited": 0}
    ]
