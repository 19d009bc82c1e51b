"""tests/support's own checks: eventually() and the policy builder.

eventually() never returns without its condition; the builder's YAML loads
as the policy meant, and keeps spec last so a test can append to it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from enforcer.policy.loader import load_policy_text
from enforcer.policy.model import RuleAction
from tests.support.policies import HOST, container_ids, exec_policy, rule, write_policy
from tests.support.wait import eventually


def test_eventually_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert (
        eventually(lambda: next(counter), 5, what="three", until=lambda n: n == 3, interval=0) == 3
    )


def test_eventually_fails_at_its_deadline_naming_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"not within 0.05 s: a miracle; last seen: 0"):
        eventually(lambda: 0, 0.05, what="a miracle", interval=0.01)


def test_eventually_waits_through_the_exceptions_it_ignores_and_not_others() -> None:
    tries = iter([ConnectionError("not yet"), "up"])

    def probe() -> str:
        value = next(tries)
        if isinstance(value, Exception):
            raise value
        return value

    assert eventually(probe, 5, what="up", ignoring=(ConnectionError,), interval=0) == "up"
    with pytest.raises(ValueError):
        eventually(lambda: int("x"), 5, what="a number", ignoring=(ConnectionError,))
    with pytest.raises(AssertionError, match="last seen: ConnectionError"):
        eventually(probe_refused, 0.05, what="up", ignoring=(ConnectionError,), interval=0.01)


def probe_refused() -> bool:
    raise ConnectionError("refused")


def test_a_built_policy_loads_as_the_policy_meant(tmp_path: Path) -> None:
    text = exec_policy(
        "web",
        container_ids("1e50"),
        [rule("no-shell", "kill", names=["sh"], calledBy={"paths": ["/usr/sbin/nginx"]})],
        mode="audit",
    )
    path = write_policy(tmp_path / "policies", "web.yaml", text)

    loaded = load_policy_text(path.read_text(), path)
    assert loaded.problems == ()
    [policy] = [p.policy for p in loaded.policies]
    assert policy.metadata.name == "web"
    assert policy.spec.mode.value == "audit"
    assert policy.spec.selector.containers is not None
    assert list(policy.spec.selector.containers.ids) == ["1e50"]  # a string, not a float
    [only] = policy.spec.rules
    assert (only.name, only.action, only.match.names) == ("no-shell", RuleAction.KILL, ("sh",))
    assert only.match.called_by is not None


def test_a_line_appended_to_a_built_policy_is_under_spec() -> None:
    text = exec_policy("host", HOST, [rule("forbidden", names=["p"])])
    [problem] = load_policy_text(text + "  typo: 1\n", Path("host.yaml")).problems
    assert (problem.line, problem.field) == (len(text.splitlines()) + 1, "spec.typo")
