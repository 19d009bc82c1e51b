"""Whether valid policies fit the kernel's maps together, found before they run.

The compiler refuses map contents the kernel cannot hold when it compiles, for the containers
that exist then: at most `abi.MAX_HITS` rules may match one program (a path's entry also
carries the rules of every directory above it), and the name and path maps hold a bounded
number of entries. `enforcer check` knows no containers, so it compiles the policies as if one
container were selected by every policy that selects containers, and the host by every policy
with `host: true`. No container meets more rules than that one, so a program matched by too
many rules here could be in some container; and a set of policies needs at least these entries
once each policy selects something, so a set that overflows a map here overflows it anywhere.

The compiler does the counting (`compile_policies`); this module only places the policies and,
when they do not fit, finds the first match list (`names`, `paths` or `dirs` of one rule), in
the order the files were read, that makes them overflow, so that the problem names a file, a
line and a field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from enforcer.containers.model import Container
from enforcer.enforce.compiler import compile_policies
from enforcer.errors import CompileError
from enforcer.policy.loader import SetProblem
from enforcer.policy.match import Match
from enforcer.policy.model import ExecPolicy
from enforcer.policy.selectors import Selector

# The one container every container policy is compiled for; no I/O ever looks it up.
_EVERY_POLICY_CONTAINER = Container(id="enforcer-check", runtime="check", cgroup_ids=(1,))
_MATCH_FIELDS = ("names", "paths", "dirs")
_NAMES_SHOWN = 3


@dataclass(frozen=True)
class _List:
    """One match list: the policy, the rule and the field (names, paths or dirs) it is."""

    policy: int
    rule: int
    field: str


def set_problems(policies: Sequence[ExecPolicy]) -> list[SetProblem]:
    """Why the policies cannot all be enforced together, each blamed on one policy.

    A policy blamed is left out and the others are checked again, so every policy that does not
    fit beside those read before it is named.
    """
    remaining = [_placed(policy) for policy in policies]
    positions = list(range(len(policies)))
    problems = []
    while (found := _first_overflow(remaining)) is not None:
        position, culprit, message = found
        problems.append(SetProblem(positions[position], _loc(culprit), message))
        del remaining[position], positions[position]
    return problems


def _placed(policy: ExecPolicy) -> ExecPolicy:
    """The policy selecting the one checked container if it selects containers, and the host
    if it selects the host."""
    selector = policy.spec.selector
    containers = selector.all_containers or not (
        selector.containers is None and selector.namespaces is None
    )
    placed = Selector.model_construct(all_containers=containers, host=selector.host)
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"selector": placed})})


def _first_overflow(policies: Sequence[ExecPolicy]) -> tuple[int, _List, str] | None:
    """The policy and list whose addition makes the policies overflow, and the compiler's why."""
    if _compile_error(policies) is None:
        return None
    lists = [
        _List(p, r, name)
        for p, policy in enumerate(policies)
        for r, rule in enumerate(policy.spec.rules)
        for name in _MATCH_FIELDS
        if getattr(rule.match, name)
    ]
    # The shortest failing prefix: adding lists only ever adds entries and hits. A compile
    # costs about 5 us per entry, so the search is by list rather than by entry.
    low, high = 0, len(lists)  # the first `low` lists fit, the first `high` do not
    while high - low > 1:
        middle = (low + high) // 2
        if _compile_error(_prefix(policies, lists[middle - 1])) is None:
            low = middle
        else:
            high = middle
    culprit = lists[high - 1]
    error = _compile_error(_prefix(policies, culprit))
    assert error is not None
    own = _prefix(policies[culprit.policy :], _List(0, culprit.rule, culprit.field))
    alone = _compile_error(own) is not None
    return culprit.policy, culprit, _message(error, policies[: culprit.policy], alone)


def _compile_error(policies: Sequence[ExecPolicy]) -> CompileError | None:
    try:
        compile_policies(policies, [_EVERY_POLICY_CONTAINER])
    except CompileError as e:
        return e
    return None


def _prefix(policies: Sequence[ExecPolicy], last: _List) -> list[ExecPolicy]:
    """The policies up to the list `last`, included: the ones before in full, its own cut."""
    return [*policies[: last.policy], _cut(policies[last.policy], last)]


def _cut(policy: ExecPolicy, last: _List) -> ExecPolicy:
    """The policy with its lists up to `last` included, and none after."""
    rule = policy.spec.rules[last.rule]
    upto = _MATCH_FIELDS.index(last.field)
    cut = [getattr(rule.match, name) if n <= upto else () for n, name in enumerate(_MATCH_FIELDS)]
    match = Match.model_construct(names=cut[0], paths=cut[1], dirs=cut[2])
    rules = (*policy.spec.rules[: last.rule], rule.model_copy(update={"match": match}))
    spec = policy.spec.model_copy(update={"rules": rules})
    return policy.model_copy(update={"spec": spec})


def _message(error: CompileError, before: Sequence[ExecPolicy], alone: bool) -> str:
    """The compiler's reason, and whether the policy overflows by itself or with others."""
    if alone or not before:
        return f"the kernel cannot enforce this policy: {error}"
    names = [policy.name for policy in before]
    shown = ", ".join(names[:_NAMES_SHOWN])
    if len(names) > _NAMES_SHOWN:
        shown += f" and {len(names) - _NAMES_SHOWN} more"
    return (
        f"the kernel cannot enforce this policy together with those read before it ({shown}), "
        f"were one container selected by every policy and the host by every host policy: {error}"
    )


def _loc(culprit: _List) -> tuple[str | int, ...]:
    return ("spec", "rules", culprit.rule, "match", culprit.field)
