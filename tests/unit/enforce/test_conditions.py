"""calledBy and args: the policy fields, the map contents they compile to, and the decision.

The decision is the userspace replay of the kernel's (held execs); its cases are the ones an
attacker or a hurried user would try: a caller by another path, an unknown caller, an option
spelled otherwise, an argument past the bound.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from enforcer.bpf import abi
from enforcer.bpf.abi import Action, SetFlag
from enforcer.containers.model import Container
from enforcer.enforce.compiler import Compiled, compile_policies
from enforcer.enforce.decision import ExecContext, FileIdentity, decide
from enforcer.enforce.ids import describe
from enforcer.errors import CompileError
from enforcer.policy.model import ExecPolicy

WEB = Container(id="a" * 64, runtime="runc", cgroup_ids=(101,))
SHELL = FileIdentity(path="/usr/bin/dash", names=("dash", "sh"))
CURL = FileIdentity(path="/usr/bin/curl", names=("curl",))
NGINX = FileIdentity(path="/usr/sbin/nginx", names=("nginx",))
ENTRY = FileIdentity(path="/usr/bin/dash", names=("dash",))


def policy(*rules: dict[str, Any], default: str = "allow") -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "web"},
            "spec": {"selector": {"allContainers": True}, "default": default, "rules": rules},
        }
    )


NO_SHELL = {
    "name": "no-shell",
    "match": {"names": ["sh"], "calledBy": {"paths": ["/usr/sbin/nginx"], "dirs": ["/opt/web"]}},
}
NO_CURL_O = {
    "name": "no-curl-o",
    "match": {"names": ["curl"], "args": {"anyOf": ["-o", "--output"]}},
}


def compiled(*policies: ExecPolicy) -> Compiled:
    return compile_policies(list(policies), [WEB])


def rules_hit(result: Compiled, file: FileIdentity, context: ExecContext) -> list[str]:
    set_id = result.maps.cgroup_sets[101]
    hits = decide(result.maps, set_id, [file], context=context)
    return sorted(describe(result.ids, hit).rule for hit in hits)


def argv(*args: str) -> tuple[bytes, ...]:
    return tuple(a.encode() for a in args)


def test_calledby_and_args_compile_to_one_bit_each_and_caller_dirs_cover_below() -> None:
    maps = compiled(policy(NO_SHELL, NO_CURL_O)).maps
    set_id = maps.cgroup_sets[101]
    (shell_hit,) = maps.names[(set_id, "sh")]
    (curl_hit,) = maps.names[(set_id, "curl")]
    assert (shell_hit.caller, shell_hit.args, curl_hit.caller, curl_hit.args) == (1, 0, 0, 1)
    assert {key: entry.bits for key, entry in maps.caller_paths.items()} == {
        (set_id, "/usr/sbin/nginx\0"): 1,
        (set_id, "/opt/web/"): 1,
    }
    assert maps.arg_values == {(set_id, "-o"): 1, (set_id, "--output"): 1}
    assert maps.flags_of(set_id) & SetFlag.CALLERS


def test_a_counted_hit_names_the_calledby_entry_that_named_its_caller() -> None:
    result = compiled(policy(NO_SHELL, {"name": "no-curl", "match": {"names": ["curl"]}}))
    set_id = result.maps.cgroup_sets[101]
    below = FileIdentity(path="/opt/web/bin/php", names=("php",))

    def callers_named(file: FileIdentity, caller: FileIdentity) -> list[str | None]:
        hits = decide(result.maps, set_id, [file], context=ExecContext(caller=caller))
        return [str(name.caller) if (name := describe(result.ids, h)).caller else None
                for h in hits]  # fmt: skip

    assert callers_named(SHELL, NGINX) == ["/usr/sbin/nginx"]
    assert callers_named(SHELL, below) == ["/opt/web/*"]
    # A rule without calledBy is counted without a caller, whoever called.
    assert callers_named(CURL, NGINX) == [None]


def test_a_shell_is_a_hit_only_when_nginx_or_a_program_below_the_dir_calls_it() -> None:
    result = compiled(policy(NO_SHELL))
    assert rules_hit(result, SHELL, ExecContext(caller=NGINX)) == ["no-shell"]
    below = FileIdentity(path="/opt/web/bin/php", names=("php",))
    assert rules_hit(result, SHELL, ExecContext(caller=below)) == ["no-shell"]
    assert rules_hit(result, SHELL, ExecContext(caller=ENTRY)) == []
    beside = FileIdentity(path="/opt/webx/php", names=("php",))
    assert rules_hit(result, SHELL, ExecContext(caller=beside)) == []


def test_an_unknown_or_cut_caller_fails_closed() -> None:
    result = compiled(policy(NO_SHELL))
    assert rules_hit(result, SHELL, ExecContext(caller=None)) == ["no-shell"]
    cut = FileIdentity(path="", names=(), path_cut=True)
    assert rules_hit(result, SHELL, ExecContext(caller=cut)) == ["no-shell"]


def test_an_allow_rule_with_calledby_names_the_program_only_for_that_caller() -> None:
    allow = {
        "name": "python-from-entry",
        "action": "allow",
        "match": {"names": ["python3"], "calledBy": {"paths": ["/entrypoint"]}},
    }
    shell = {"name": "shell", "action": "allow", "match": {"names": ["sh"]}}
    result = compiled(policy(allow, shell, default="kill"))
    python = FileIdentity(path="/usr/bin/python3.11", names=("python3.11", "python3"))
    entry = FileIdentity(path="/entrypoint", names=("entrypoint",))
    assert rules_hit(result, python, ExecContext(caller=entry)) == []
    assert rules_hit(result, python, ExecContext(caller=SHELL)) == ["(default)"]
    # Unknown: an allow rule's condition does not hold, so the default applies.
    assert rules_hit(result, python, ExecContext(caller=None)) == ["(default)"]


def test_args_match_whole_arguments_after_argv0_within_the_bound() -> None:
    result = compiled(policy(NO_CURL_O))
    assert rules_hit(result, CURL, ExecContext(argv=argv("curl", "-o", "x", "u"))) == ["no-curl-o"]
    assert rules_hit(result, CURL, ExecContext(argv=argv("curl", "--version"))) == []
    # Spelled otherwise: not the same argument (README, Known limits).
    assert rules_hit(result, CURL, ExecContext(argv=argv("curl", "-ox", "--output=x"))) == []
    assert rules_hit(result, CURL, ExecContext(argv=argv("-o", "u"))) == []  # argv[0]
    padded = ("curl", *(["u"] * abi.MATCH_ARGS), "-o")
    assert rules_hit(result, CURL, ExecContext(argv=argv(*padded))) == []  # past the bound
    within = ("curl", *(["u"] * (abi.MATCH_ARGS - 1)), "-o")
    assert rules_hit(result, CURL, ExecContext(argv=argv(*within))) == ["no-curl-o"]
    long_arg = "u" * (abi.ARG_SKIP_MAX + 1)
    assert rules_hit(result, CURL, ExecContext(argv=argv("curl", long_arg, "-o"))) == []
    assert rules_hit(result, CURL, ExecContext(argv=argv("curl", "u" * 500, "-o"))) == ["no-curl-o"]
    assert rules_hit(result, CURL, ExecContext(argv=None)) == ["no-curl-o"]  # fail closed


def test_an_argument_value_past_the_bound_is_refused_with_the_bound() -> None:
    rule = {"name": "r", "match": {"names": ["curl"], "args": {"anyOf": ["x" * 63]}}}
    with pytest.raises(ValidationError) as raised:
        policy(rule)
    message = str(raised.value)
    assert "63 bytes long" in message and f"first {abi.MATCH_ARGS} arguments" in message
    assert "at most 62 bytes" in message


@pytest.mark.parametrize(
    ("match", "says"),
    [
        ({"names": ["sh"], "args": {"anyOf": []}}, "list at least one argument"),
        ({"names": ["sh"], "calledBy": {}}, "at least one entry"),
        ({"names": ["sh"], "calledBy": {"paths": ["nginx"]}}, "is not absolute"),
        ({"calledBy": {"names": ["nginx"]}}, "at least one entry"),
        ({"names": ["sh"], "args": {"anyOf": ["-o", "-o"]}}, "more than once"),
    ],
)
def test_malformed_conditions_are_refused(match: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        policy({"name": "r", "match": match})


def test_more_conditions_than_the_kernel_tests_is_a_compile_error() -> None:
    rules = [
        {"name": f"r{i}", "match": {"names": [f"p{i}"], "calledBy": {"names": [f"c{i}"]}}}
        for i in range(abi.MAX_CONDITIONS + 1)
    ]
    with pytest.raises(CompileError, match=f"more than {abi.MAX_CONDITIONS} distinct calledBy"):
        compiled(policy(*rules))
    compiled(policy(*rules[: abi.MAX_CONDITIONS]))


def test_more_conditional_rules_on_one_program_than_an_entry_holds_is_a_compile_error() -> None:
    rules = [
        {"name": f"r{i}", "match": {"names": ["sh"], "calledBy": {"names": [f"c{i}"]}}}
        for i in range(abi.MAX_HITS + 1)
    ]
    with pytest.raises(CompileError, match=f"more than {abi.MAX_HITS - 1} rules with calledBy"):
        compiled(policy(*rules))
    compiled(policy(*rules[: abi.MAX_HITS]))  # an entry holds MAX_HITS hits


def test_a_kill_by_a_rule_with_conditions_keeps_its_action() -> None:
    result = compiled(policy(NO_SHELL))
    set_id = result.maps.cgroup_sets[101]
    (hit,) = decide(result.maps, set_id, [SHELL], context=ExecContext(caller=NGINX))
    assert (hit.action, hit.caller, hit.args) == (Action.KILL, 0, 0)
