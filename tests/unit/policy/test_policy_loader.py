"""Loading policy YAML: what a user sees for each mistake (file, line, field path, message)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from enforcer.errors import PolicyError
from enforcer.policy import (
    LoadResult,
    Mode,
    PolicyProblem,
    RuleAction,
    load_policies,
    load_policies_or_raise,
    load_policy_text,
)
from enforcer.policy.yaml_reader import MAX_FILE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

SOURCE = Path("policies/no-recon.yaml")

# The example from the documentation; the numbers are the lines the tests edit.
VALID = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: no-recon
spec:
  mode: enforce
  selector:
    containers:
      ids: ["abc123def456"]
  rules:
    - name: recon
      action: kill
      match:
        names: [whoami, id]
        paths: [/usr/bin/nc]
        dirs: [/tmp, /dev/shm]
"""


def edited(lines: dict[int, str], extra: str = "") -> str:
    """VALID with 1-based `lines` replaced (keeping line numbers stable) and `extra` appended."""
    text = VALID.splitlines()
    for number, replacement in lines.items():
        text[number - 1] = replacement
    return "\n".join(text) + "\n" + extra


def policy_named(name: str) -> str:
    return edited({4: f"  name: {name}"})


def only_problem(text: str) -> PolicyProblem:
    result = load_policy_text(text, SOURCE)
    assert not result.policies
    assert len(result.problems) == 1, [str(p) for p in result.problems]
    return result.problems[0]


def test_documented_example_loads() -> None:
    result = load_policy_text(VALID, SOURCE)
    assert result.ok
    [loaded] = result.policies
    assert (loaded.source, loaded.line) == (SOURCE, 1)
    policy = loaded.policy
    assert policy.name == "no-recon"
    assert policy.spec.mode is Mode.ENFORCE
    assert policy.spec.selector.containers is not None
    assert policy.spec.selector.containers.ids == ("abc123def456",)
    [rule] = policy.spec.rules
    assert (rule.name, rule.action) == ("recon", RuleAction.KILL)
    assert rule.match.names == ("whoami", "id")
    assert rule.match.paths == ("/usr/bin/nc",)
    assert rule.match.dirs == ("/tmp", "/dev/shm")


def test_audit_mode_with_host_and_all_containers_loads() -> None:
    text = edited(
        {6: "  mode: audit", 8: "    host: true", 9: "    allContainers: true", 12: "      #"}
    )
    [loaded] = load_policy_text(text, SOURCE).policies
    assert loaded.policy.spec.mode is Mode.AUDIT
    assert loaded.policy.spec.selector.host
    assert loaded.policy.spec.selector.all_containers


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        ({4: "  name: No_Recon"}, 4, "metadata.name", "lowercase letters, digits and '-'"),
        ({4: "  name: " + "a" * 64}, 4, "metadata.name", "1-63"),
        ({4: "  name: -recon"}, 4, "metadata.name", "starting and ending with a letter or digit"),
        ({11: "    - name: Recon"}, 11, "spec.rules[0].name", "is not a valid name"),
        ({14: "        names: [whoami, a/b]"}, 14, "spec.rules[0].match.names[1]", "basenames"),
        ({14: "        names: [whoami, '..']"}, 14, "spec.rules[0].match.names[1]", "file name"),
        ({14: "        names: ['']"}, 14, "spec.rules[0].match.names[0]", "file name"),
        (
            {14: "        names: [" + "x" * 64 + "]"},
            14,
            "spec.rules[0].match.names[0]",
            "keys basenames on 64 bytes including the NUL",
        ),
        ({14: "        names: [id, sh, id]"}, 14, "spec.rules[0].match.names[2]", "more than once"),
        ({15: "        paths: [usr/bin/nc]"}, 15, "spec.rules[0].match.paths[0]", "start with '/'"),
        ({15: "        paths: [/usr/bin/]"}, 15, "spec.rules[0].match.paths[0]", "under 'dirs'"),
        (
            {15: "        paths: [/" + "p" * 250 + "]"},
            15,
            "spec.rules[0].match.paths[0]",
            "keeps 252 bytes of the path",
        ),
        ({16: "        dirs: [tmp]"}, 16, "spec.rules[0].match.dirs[0]", "start with '/'"),
        (
            {16: "        dirs: [/tmp/../bin]"},
            16,
            "spec.rules[0].match.dirs[0]",
            "write the path without them, e.g. '/bin'",
        ),
        ({16: "        dirs: [/" + "d" * 249 + "]"}, 16, "spec.rules[0].match.dirs[0]", "249"),
        ({16: "        dirs: [/tmp, /tmp/]"}, 16, "spec.rules[0].match.dirs[1]", "more than once"),
        (
            {14: "        names: []", 15: "        paths: []", 16: "        dirs: []"},
            13,
            "spec.rules[0].match",
            "at least one entry in names, paths or dirs",
        ),
        ({14: "        names: whoami"}, 14, "spec.rules[0].match.names", "must be a list"),
        ({14: "        names: [123]"}, 14, "spec.rules[0].match.names[0]", "put quotes"),
        ({12: "      action: block"}, 12, "spec.rules[0].action", "'audit' or 'allow'"),
        ({6: "  mode: enforcing"}, 6, "spec.mode", "'enforce' or 'audit'"),
        ({1: "apiVersion: enforcer/v2"}, 1, "apiVersion", "'enforcer/v1'"),
        ({2: "kind: Policy"}, 2, "kind", "'ExecPolicy'"),
        (
            {10: "  rules: []", 11: "#", 12: "#", 13: "#", 14: "#", 15: "#", 16: "#"},
            10,
            "spec.rules",
            "a policy needs at least one rule",
        ),
        (
            {8: "    host: false", 9: "#"},
            7,
            "spec.selector",
            "selects nothing: set containers.ids, host: true or allContainers: true",
        ),
        (
            {8: "    allContainers: true", 9: "    containers: {ids: [abc]}"},
            8,
            "spec.selector.allContainers",
            "remove either 'containers' or 'allContainers'",
        ),
        ({9: "      ids: []"}, 9, "spec.selector.containers.ids", "at least one container id"),
        (
            {9: "      ids: [abc, 'web 1']"},
            9,
            "spec.selector.containers.ids[1]",
            "not a container id",
        ),
        ({9: "      ids: [abc, abc]"}, 9, "spec.selector.containers.ids[1]", "more than once"),
    ],
)
def test_each_mistake_is_located(
    lines: dict[int, str], line: int, field: str, fragment: str
) -> None:
    problem = only_problem(edited(lines))
    assert (problem.file, problem.line, problem.field) == (SOURCE, line, field)
    assert fragment in problem.message
    assert not problem.message.startswith("Value error")


def test_item_of_a_block_sequence_is_located_on_its_own_line() -> None:
    text = edited({14: "        names:\n          - whoami\n          - bin/sh"})
    problem = only_problem(text)
    assert (problem.line, problem.field) == (16, "spec.rules[0].match.names[1]")


def test_repeated_rule_name_points_at_the_second_rule() -> None:
    problem = only_problem(edited({}, extra="    - name: recon\n      match: {names: [sh]}\n"))
    assert (problem.line, problem.field) == (17, "spec.rules[1].name")
    assert "already used by rules[0]" in problem.message


def test_unknown_key_suggests_the_close_known_key() -> None:
    problem = only_problem(edited({12: "      actoin: kill"}))
    assert (problem.line, problem.field) == (12, "spec.rules[0].actoin")
    assert problem.message == "unknown key 'actoin'; did you mean 'action'?"


def test_unknown_key_suggestion_respects_camel_case() -> None:
    problem = only_problem(edited({8: "    allcontainers: true", 9: "#"}))
    assert (problem.line, problem.field) == (8, "spec.selector.allcontainers")
    assert problem.message == "unknown key 'allcontainers'; did you mean 'allContainers'?"


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    problem = only_problem(edited({6: "  replicas: 3"}))
    assert (problem.line, problem.field) == (6, "spec.replicas")
    allowed = "mode, selector, default, rules"
    assert problem.message == f"unknown key 'replicas'; allowed keys here: {allowed}"


def test_missing_key_is_reported_on_the_mapping_that_lacks_it() -> None:
    result = load_policy_text(edited({4: "  nmae: no-recon"}), SOURCE)
    assert [str(p) for p in result.problems] == [
        f"{SOURCE}:3: metadata: required key 'name' is missing",
        f"{SOURCE}:4: metadata.nmae: unknown key 'nmae'; did you mean 'name'?",
    ]


def test_missing_top_level_key_has_no_field() -> None:
    text = "apiVersion: enforcer/v1\nkind: ExecPolicy\nmetadata: {name: x}\n"
    assert str(only_problem(text)) == f"{SOURCE}:1: required key 'spec' is missing"


def test_every_problem_of_a_document_is_reported_in_line_order() -> None:
    text = edited({16: "        dirs: [tmp]", 4: "  name: X", 12: "      action: nope"})
    result = load_policy_text(text, SOURCE)
    assert [(p.line, p.field) for p in result.problems] == [
        (4, "metadata.name"),
        (12, "spec.rules[0].action"),
        (16, "spec.rules[0].match.dirs[0]"),
    ]


def test_multi_document_file_skips_empty_documents() -> None:
    text = "---\n" + VALID + "---\n# only a comment\n---\n" + policy_named("second") + "---\n"
    result = load_policy_text(text, SOURCE)
    assert result.ok
    assert [(p.policy.name, p.line) for p in result.policies] == [("no-recon", 2), ("second", 21)]


def test_document_that_is_not_a_mapping() -> None:
    problem = only_problem("- apiVersion: enforcer/v1\n")
    assert problem.line == 1
    assert "must be a mapping" in problem.message
    assert "not a list" in problem.message


def test_yaml_syntax_error_names_the_line() -> None:
    text = edited({15: "        paths: [/usr/bin/nc"})
    problem = only_problem(text)
    assert problem.line == 16
    assert problem.field == ""
    assert problem.message.startswith("YAML syntax error: ")
    assert "flow sequence started at line 15" in problem.message


def test_documents_before_a_syntax_error_are_still_checked() -> None:
    result = load_policy_text(VALID + "---\nkey: [\n", SOURCE)
    assert [p.policy.name for p in result.policies] == ["no-recon"]
    [problem] = result.problems
    assert problem.message.startswith("YAML syntax error")
    assert not result.ok


def test_duplicate_yaml_key_is_an_error() -> None:
    problem = only_problem(edited({}, extra="kind: ExecPolicy\n"))
    assert problem.line == 17
    assert 'duplicate key "kind"' in problem.message


def test_duplicate_policy_name_across_files(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text(VALID)
    second.write_text(policy_named("other") + "---\n" + VALID)
    result = load_policies([tmp_path])
    assert [(p.policy.name, p.source) for p in result.policies] == [
        ("no-recon", first),
        ("other", second),
    ]
    [problem] = result.problems
    assert (problem.file, problem.line, problem.field) == (second, 21, "metadata.name")
    assert f"already defined at {first}:4" in problem.message


def test_the_same_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    result = load_policies([tmp_path, tmp_path / "a.yaml"])
    assert result.ok
    assert len(result.policies) == 1


def test_directory_reads_only_policy_files(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(policy_named("b"))
    (tmp_path / "a.yaml").write_text(policy_named("a"))
    for leftover in [".hidden.yaml", "a.yaml~", "#a.yaml#", ".a.yaml.swp", "notes.txt"]:
        (tmp_path / leftover).write_text("not: [a policy\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(policy_named("c"))
    result = load_policies([tmp_path])
    assert result.ok, [str(p) for p in result.problems]
    assert [p.source.name for p in result.policies] == ["a.yaml", "b.yml"]


def test_configmap_volume_is_read_once(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as ..data -> ..2024_01_01/, with each key a symlink into it.
    stamped = tmp_path / "..2024_01_01"
    stamped.mkdir()
    (stamped / "policy.yaml").write_text(VALID)
    (tmp_path / "..data").symlink_to(stamped.name)
    (tmp_path / "policy.yaml").symlink_to(Path("..data") / "policy.yaml")
    result = load_policies([tmp_path])
    assert result.ok, [str(p) for p in result.problems]
    assert [p.source for p in result.policies] == [tmp_path / "policy.yaml"]


def test_empty_directory_is_an_empty_policy_set(tmp_path: Path) -> None:
    assert load_policies([tmp_path]) == LoadResult(policies=(), problems=())


def test_missing_path_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    [problem] = load_policies([missing]).problems
    assert str(problem) == f"{missing}: no such file or directory"


def test_named_file_is_read_whatever_its_suffix(tmp_path: Path) -> None:
    policy = tmp_path / "policy.conf"
    policy.write_text(VALID)
    assert [p.source for p in load_policies([policy]).policies] == [policy]


def test_invalid_utf8_is_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"apiVersion: enforcer/v1\nkind: \xff\n")
    [problem] = load_policies([bad]).problems
    assert (problem.file, problem.line) == (bad, 2)
    assert "not valid UTF-8" in problem.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file without read permission")
def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    locked = tmp_path / "locked.yaml"
    locked.write_text(VALID)
    locked.chmod(0)
    [problem] = load_policies([locked]).problems
    assert problem.message == "cannot read: Permission denied"


def test_load_policies_or_raise(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    assert [p.policy.name for p in load_policies_or_raise([good])] == ["no-recon"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(policy_named("Bad"))
    with pytest.raises(PolicyError) as info:
        load_policies_or_raise([good, bad])
    [problem] = info.value.problems
    assert isinstance(problem, PolicyProblem)
    assert f"{bad}:4: metadata.name: 'Bad' is not a valid name" in str(info.value)


@pytest.mark.parametrize(
    ("problem", "shown"),
    [
        (PolicyProblem(Path("p.yaml"), 3, "spec.mode", "bad"), "p.yaml:3: spec.mode: bad"),
        (PolicyProblem(Path("p.yaml"), None, "spec.mode", "bad"), "p.yaml: spec.mode: bad"),
        (PolicyProblem(Path("p.yaml"), 3, "", "bad"), "p.yaml:3: bad"),
    ],
)
def test_problem_text(problem: PolicyProblem, shown: str) -> None:
    assert str(problem) == shown


def test_control_character_is_a_yaml_error() -> None:
    problem = only_problem("apiVersion: enforcer/v1\nkind: \x07\n")
    assert problem.line == 2
    assert "character '\\x07' is not allowed" in problem.message


# --- What one file may cost to read -------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """A valid policy whose names are an alias nested `levels` deep: 9**levels names."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + edited({14: f"        names: *lol{levels - 1}"})


def test_an_alias_bomb_is_refused_at_once_naming_the_limits() -> None:
    text = billion_laughs()  # 387 million names once its aliases are expanded
    started = time.monotonic()
    problem = only_problem(text)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    # The first anchor past the bound is blamed, where it is defined.
    assert (problem.file, problem.line, problem.field) == (SOURCE, 6, "lol5")
    assert problem.message == (
        "YAML error: '&lol5' makes 597871 YAML nodes once every alias in it is counted as the "
        f"nodes it repeats; a policy file may hold at most {MAX_YAML_NODES} nodes and "
        f"{MAX_FILE_BYTES} bytes (1 MiB): write the lists out rather than nesting aliases "
        "(*name) of aliases"
    )


def test_an_alias_bomb_through_merge_keys_is_refused() -> None:
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}"]
    for level in range(1, 9):
        lines.append(f"m{level}: &m{level} [" + ", ".join([f"*m{level - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\nspec:\n  <<: *m8\n"
    problem = only_problem(text)
    assert "YAML nodes once every alias in it is counted" in problem.message


def test_aliases_that_stay_small_are_fine() -> None:
    text = edited(
        {14: "        names: &tools [whoami, id]"},
        extra="    - name: again\n      action: audit\n      match: {names: *tools}\n",
    )
    result = load_policy_text(text, SOURCE)
    assert result.ok, [str(p) for p in result.problems]
    assert [r.match.names for r in result.policies[0].policy.spec.rules] == [("whoami", "id")] * 2


def test_a_recursive_alias_is_refused() -> None:
    problem = only_problem(edited({14: "        names: &loop [nc, *loop]"}))
    assert (problem.line, problem.field) == (14, "spec.rules[0].match.names[1]")
    assert "'&loop' contains an alias of itself" in problem.message


def test_documents_share_the_node_budget_of_their_file() -> None:
    # Each document is small, and makes 10014 nodes: 14 documents make more than the bound.
    one = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [" + ", ".join(["*a"] * 1000) + "]\n"
    documents = MAX_YAML_NODES // 10014 + 1
    problems = load_policy_text("---\n".join([one] * documents), SOURCE).problems
    assert "with the documents before it, this file holds more than" in problems[-1].message
    assert problems[-1].line == 3 * (documents - 1) + 2  # the list of the last document


def test_nesting_deeper_than_a_policy_needs_is_refused() -> None:
    problem = only_problem("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem.line == 1
    assert f"nested more than {MAX_YAML_DEPTH} levels deep" in problem.message


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(VALID + "#" * MAX_FILE_BYTES + "\n")
    [problem] = load_policies([big]).problems
    assert str(problem) == (
        f"{big}: larger than {MAX_FILE_BYTES} bytes (1 MiB), the most a policy file may hold; "
        "split its policies into several files"
    )
    assert not load_policy_text(VALID + "#" * MAX_FILE_BYTES, SOURCE).ok


def test_a_file_of_exactly_the_bound_is_read(tmp_path: Path) -> None:
    file = tmp_path / "full.yaml"
    file.write_text(VALID + "#" * (MAX_FILE_BYTES - len(VALID) - 1) + "\n")
    assert file.stat().st_size == MAX_FILE_BYTES
    assert load_policies([file]).ok


def test_a_named_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    [problem] = load_policies([fifo]).problems
    assert problem.message == "not a regular file: name a policy file or directory"


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!binary", "!custom"])
def test_a_yaml_tag_that_means_nothing_here_is_refused(tag: str) -> None:
    problem = only_problem(edited({14: f"        names: {tag} [id]"}))
    assert (problem.line, problem.field) == (14, "spec.rules[0].match.names")
    assert f"the tag '{tag}' means nothing in a policy" in problem.message


def test_yaml_core_tags_are_fine() -> None:
    assert load_policy_text(edited({14: "        names: !!seq [!!str 123]"}), SOURCE).ok


def test_a_document_that_is_a_plain_value_has_a_line() -> None:
    problem = only_problem("---\n# a comment\njust text\n")
    assert problem.line == 3
    assert "not a string" in problem.message


# --- Strict booleans, and what the kernel cannot encode -----------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [('"yes"', "a string ('yes')"), ("yes", "a string ('yes')"), ("1", "a number (1)")],
)
def test_a_boolean_takes_only_true_or_false(value: str, shown: str) -> None:
    problem = only_problem(edited({8: f"    host: {value}", 9: "#"}))
    assert (problem.line, problem.field) == (8, "spec.selector.host")
    assert problem.message == (
        f"must be true or false, not {shown}: write true or false, without quotes"
    )


def test_a_lone_surrogate_is_refused_and_printable() -> None:
    problem = only_problem(edited({14: '        names: [id, "x\\ud800"]'}))
    assert (problem.line, problem.field) == (14, "spec.rules[0].match.names[1]")
    assert "lone UTF-16 surrogate" in problem.message
    shown = str(problem)
    shown.encode("utf-8")  # printing it cannot fail
    assert "\\ud800" in shown


def test_a_key_with_a_lone_surrogate_is_located() -> None:
    problem = only_problem(edited({12: '      "act\\udc00ion": kill'}))
    assert (problem.line, problem.field) == (12, "spec.rules[0].act\udc00ion")
    assert "\\udc00" in str(problem)


# --- A reused policy name: the policy read first, or the one in force, keeps it ------------------


def test_a_newcomer_that_sorts_first_is_refused_against_the_policy_in_force(
    tmp_path: Path,
) -> None:
    held = tmp_path / "b.yaml"
    held.write_text(VALID)
    [in_force] = load_policies([tmp_path]).policies
    newcomer = tmp_path / "a.yaml"
    newcomer.write_text(VALID)

    result = load_policies([tmp_path]).keeping_names_in_force([in_force])

    assert [p.source for p in result.policies] == [held]
    [problem] = result.problems
    assert (problem.file, problem.line, problem.field) == (newcomer, 4, "metadata.name")
    assert f"already defined at {held}:4 (the one in force)" in problem.message


def test_a_newcomer_cannot_take_the_name_of_a_policy_whose_file_broke(tmp_path: Path) -> None:
    held = tmp_path / "b.yaml"
    held.write_text(VALID)
    [in_force] = load_policies([tmp_path]).policies
    held.write_text(edited({12: "      action: block"}))  # in force stays its last good version
    newcomer = tmp_path / "a.yaml"
    newcomer.write_text(VALID)

    result = load_policies([tmp_path]).keeping_names_in_force([in_force])

    assert result.policies == ()
    assert {(p.file, p.field) for p in result.problems} == {
        (held, "spec.rules[0].action"),
        (newcomer, "metadata.name"),
    }
    [clash] = [p for p in result.problems if p.file == newcomer]
    assert f"held by the policy in force from {held}" in clash.message


def test_a_name_its_file_gave_up_is_free(tmp_path: Path) -> None:
    held = tmp_path / "b.yaml"
    held.write_text(VALID)
    [in_force] = load_policies([tmp_path]).policies
    held.write_text(policy_named("renamed"))
    newcomer = tmp_path / "a.yaml"
    newcomer.write_text(VALID)

    result = load_policies([tmp_path]).keeping_names_in_force([in_force])

    assert result.ok
    assert [(p.policy.name, p.source) for p in result.policies] == [
        ("no-recon", newcomer),
        ("renamed", held),
    ]


def test_without_policies_in_force_the_file_read_first_keeps_the_name(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    result = load_policies([tmp_path])
    assert result.keeping_names_in_force([]) == result
    assert [p.source.name for p in result.policies] == ["a.yaml"]
    assert [p.file.name for p in result.problems] == ["b.yaml"]


def test_a_result_not_made_by_the_loader_is_kept_as_it_is() -> None:
    result = LoadResult(policies=(), problems=())
    assert result.keeping_names_in_force([]) is result
