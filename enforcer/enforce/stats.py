"""Kernel counters folded into what `enforcer stats` shows."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from enforcer.bpf.abi import Action
from enforcer.bpf.records import CounterKey
from enforcer.enforce.ids import CounterName


def nest_counts(
    names: Mapping[CounterKey, CounterName],
    counters: Mapping[CounterKey, int],
    owner: Callable[[int], tuple[str, str]],
    policy_order: list[str],
) -> list[dict[str, object]]:
    """Folds flat kernel counters into policy -> rule -> container -> program.

    Each level carries `blocked` and `audited` totals; policies with no counts
    yet are listed too, in `policy_order`.
    """
    tree: dict[str, dict[str, dict[tuple[str, str, int], dict[tuple[str, str], list[int]]]]] = {
        name: {} for name in policy_order
    }
    for key, count in counters.items():
        name = names[key]
        container = (*owner(key.cgroup_id), key.cgroup_id)
        programs = (
            tree.setdefault(name.policy, {}).setdefault(name.rule, {}).setdefault(container, {})
        )
        caller = str(name.caller) if name.caller is not None else ""
        slot = programs.setdefault((str(name.target), caller), [0, 0])
        slot[1 if key.action is Action.AUDIT else 0] += count  # kill and deny block
    return [
        _with_totals(
            {"name": policy},
            "rules",
            [
                _with_totals(
                    {"name": rule},
                    "containers",
                    [
                        _with_totals(
                            {"id": cid, "name": cname, "cgroup_id": cgroup_id},
                            "programs",
                            [
                                _program_row(program, caller, blocked, audited)
                                for (program, caller), (blocked, audited) in sorted(
                                    programs.items()
                                )
                            ],
                        )
                        for (cid, cname, cgroup_id), programs in sorted(containers.items())
                    ],
                )
                for rule, containers in rules.items()
            ],
        )
        for policy, rules in tree.items()
    ]


def _program_row(program: str, caller: str, blocked: int, audited: int) -> dict[str, object]:
    """One program's counts; a calledBy rule's rows say which of its entries named the caller."""
    row: dict[str, object] = {"program": program, "blocked": blocked, "audited": audited}
    if caller:
        row["caller"] = caller
    return row


def _with_totals(
    node: dict[str, object], children_key: str, children: list[dict[str, object]]
) -> dict[str, object]:
    node["blocked"] = sum(_count(child, "blocked") for child in children)
    node["audited"] = sum(_count(child, "audited") for child in children)
    node[children_key] = children
    return node


def _count(row: Mapping[str, object], key: str) -> int:
    value = row[key]
    assert isinstance(value, int)  # every row's counts are set by _program_row or _with_totals
    return value
