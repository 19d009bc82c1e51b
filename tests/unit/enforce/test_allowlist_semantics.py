"""Allowlists: `default` for what no rule names, `allow` rules, strictest policy wins."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from enforcer.bpf.abi import Action, SetFlag
from enforcer.containers.model import Container
from enforcer.enforce.compiler import Compiled, compile_policies
from enforcer.enforce.decision import AnyRule, FileIdentity, decide
from enforcer.enforce.ids import DEFAULT_RULE, DEFAULT_TARGET, describe
from enforcer.policy.model import ExecPolicy

WEB = Container(id="a" * 64, runtime="runc", cgroup_ids=(101,))
APP = {"name": "the-app", "action": "allow",
       "match": {"paths": ["/usr/local/bin/api"], "dirs": ["/usr/lib/python3"]}}  # fmt: skip
SHELLS = {"name": "no-shells", "action": "kill", "match": {"names": ["sh", "bash", "dash"]}}


def policy(name: str, *rules: dict[str, Any], default: str = "kill", **spec: Any) -> ExecPolicy:
    body = {"selector": {"allContainers": True}, "default": default, "rules": list(rules), **spec}
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def outcome(result: Compiled, path: str, *, cut: bool = False) -> list[tuple[str, str, Action]]:
    """(policy, rule, action) of every counted hit of an exec of `path` in WEB."""
    identity = FileIdentity(path=path, names=(path.rsplit("/", 1)[1],), path_cut=cut)
    hits = decide(result.maps, result.maps.cgroup_sets[101], [identity])
    return sorted((describe(result.ids, h).policy, describe(result.ids, h).rule, h.action)
                  for h in hits)  # fmt: skip


def test_what_an_allow_rule_names_runs_and_the_rest_meets_the_default() -> None:
    result = compile_policies([policy("api", APP, SHELLS)], [WEB])
    assert outcome(result, "/usr/local/bin/api") == []
    assert outcome(result, "/usr/lib/python3/dist-packages/x") == []
    assert outcome(result, "/usr/bin/curl") == [("api", DEFAULT_RULE, Action.KILL)]
    # The allowed name elsewhere is not the allowed file.
    assert outcome(result, "/tmp/api") == [("api", DEFAULT_RULE, Action.KILL)]


def test_a_kill_rule_wins_over_an_allow_that_names_the_same_exec() -> None:
    allow_sh = {"name": "sh-ok", "action": "allow", "match": {"paths": ["/bin/sh"]}}
    result = compile_policies([policy("api", allow_sh, SHELLS)], [WEB])
    assert outcome(result, "/bin/sh") == [("api", "no-shells", Action.KILL)]


def test_across_policies_the_strictest_outcome_wins() -> None:
    lenient = policy("lenient", APP, default="allow")
    strict = policy("strict", {"name": "only-curl", "action": "allow",
                               "match": {"names": ["curl"]}})  # fmt: skip
    result = compile_policies([lenient, strict], [WEB])
    # The app is named by lenient only: strict's default kills it.
    assert outcome(result, "/usr/local/bin/api") == [("strict", DEFAULT_RULE, Action.KILL)]
    assert outcome(result, "/usr/bin/curl") == []
    audited = compile_policies([policy("a", APP, default="audit"), lenient], [WEB])
    assert outcome(audited, "/usr/bin/curl") == [("a", DEFAULT_RULE, Action.AUDIT)]


def test_audit_mode_counts_what_the_default_would_have_done() -> None:
    result = compile_policies([policy("api", APP, mode="audit")], [WEB])
    assert outcome(result, "/usr/bin/curl") == [("api", DEFAULT_RULE, Action.AUDIT)]


def test_a_path_too_deep_for_the_kernel_is_never_allowed_by_an_allow_path() -> None:
    result = compile_policies([policy("api", APP)], [WEB])
    assert outcome(result, "/usr/local/bin/api", cut=True) == [("api", DEFAULT_RULE, Action.KILL)]


def test_the_default_is_data_of_the_set_and_every_entry_says_whose_rules_name_it() -> None:
    result = compile_policies(
        [policy("api", APP, SHELLS), policy("other", SHELLS, default="allow")], [WEB]
    )
    maps = result.maps
    set_id = maps.cgroup_sets[101]
    assert maps.flags_of(set_id) & SetFlag.DEFAULTS
    (default,) = maps.defaults[set_id]
    assert describe(result.ids, default).target == DEFAULT_TARGET
    assert maps.named_mask(set_id, maps.paths[(set_id, "/usr/local/bin/api\0")]) == 1
    assert maps.named_mask(set_id, maps.names[(set_id, "sh")]) == 1
    # No allow hit is kept where a kill or a path cut would need room.
    assert all(h.action is not Action.ALLOW for h in maps.cut.get(set_id, ()))


def test_more_policies_with_a_default_than_the_kernel_holds_is_a_compile_error() -> None:
    many = [policy(f"p{n}", APP) for n in range(9)]
    with pytest.raises(Exception, match="at most 8 per container"):
        compile_policies(many, [WEB])


def test_a_held_exec_is_named_by_every_policy_with_a_default() -> None:
    assert AnyRule([policy("api", APP)]).names([FileIdentity("/x/y", ("y",))], {})
    assert not AnyRule([policy("api", APP, default="allow")]).names(
        [FileIdentity("/usr/local/bin/api", ("api",))], {}
    )


def test_an_allowlist_on_the_host_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="every host program"):
        ExecPolicy.model_validate(
            {"apiVersion": "enforcer/v1", "kind": "ExecPolicy", "metadata": {"name": "h"},
             "spec": {"selector": {"host": True}, "default": "kill", "rules": [APP]}}
        )  # fmt: skip
