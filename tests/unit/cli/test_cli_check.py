"""`enforcer check` as a user runs it: the real command on policy files, exit code and output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from enforcer.bpf import abi

CHECK_TIMEOUT_S = 60.0

# A valid policy; the line numbers matter, tests replace whole lines to keep them stable.
VALID = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: {name}
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
"""


def policy(name: str = "no-recon", lines: dict[int, str] | None = None) -> str:
    """VALID named `name`, with 1-based `lines` replaced."""
    text = VALID.format(name=name).splitlines()
    for number, replacement in (lines or {}).items():
        text[number - 1] = replacement
    return "\n".join(text) + "\n"


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", "check", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )


def problem_line(stderr: str, file: Path, line: int, field: str) -> str:
    """The stderr line reporting a problem at `file:line` on `field`; fails if there is none."""
    prefix = f"{file}:{line}: {field}: " if field else f"{file}:{line}: "
    found = [entry for entry in stderr.splitlines() if entry.startswith(prefix)]
    assert len(found) == 1, f"expected one line starting {prefix!r} in:\n{stderr}"
    return found[0]


def test_valid_files_and_directories_pass_with_a_summary(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "a.yaml").write_text(policy("first") + "---\n" + policy("second"))
    (directory / "b.yml").write_text(policy("third"))
    (directory / "README.md").write_text("not a policy: ignored\n")
    single = tmp_path / "single.yaml"
    single.write_text(policy("fourth"))

    result = check(directory, single)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines == [
        f"ok  {directory / 'a.yaml'}:1  first",
        f"ok  {directory / 'a.yaml'}:16  second",
        f"ok  {directory / 'b.yml'}:1  third",
        f"ok  {single}:1  fourth",
        "4 policies valid",
    ]


def test_unknown_key_names_the_field_and_suggests_the_right_one(tmp_path: Path) -> None:
    file = tmp_path / "typo.yaml"
    file.write_text(policy(lines={12: "      acton: kill"}))

    result = check(file)

    assert result.returncode == 1
    assert result.stdout == ""
    message = problem_line(result.stderr, file, 12, "spec.rules[0].acton")
    assert "unknown key 'acton'" in message
    assert "did you mean 'action'?" in message


def test_duplicate_policy_name_across_files_points_at_both(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    second = tmp_path / "second.yaml"
    first.write_text(policy("no-recon"))
    second.write_text(policy("no-recon"))

    result = check(first, second)

    assert result.returncode == 1
    message = problem_line(result.stderr, second, 4, "metadata.name")
    assert f"'no-recon' is already defined at {first}:4" in message
    assert "must be unique across all policy files" in message
    assert len(result.stderr.splitlines()) == 1, result.stderr  # the first stays valid


def test_empty_rule_list_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text("\n".join(policy().splitlines()[:9]) + "\n  rules: []\n")

    result = check(file)

    assert result.returncode == 1
    message = problem_line(result.stderr, file, 10, "spec.rules")
    assert "a policy needs at least one rule" in message


def test_invalid_action_lists_the_allowed_values(tmp_path: Path) -> None:
    file = tmp_path / "action.yaml"
    file.write_text(policy(lines={12: "      action: block"}))

    result = check(file)

    assert result.returncode == 1
    message = problem_line(result.stderr, file, 12, "spec.rules[0].action")
    assert "'kill', 'deny', 'audit' or 'allow'" in message


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        ({4: "  name: no: recon"}, 4, "mapping values are not allowed here"),
        ({12: "\taction: kill"}, 12, "'\\t' that cannot start any token"),
        ({14: "        names: [whoami, id"}, 15, "flow sequence started at line 14"),
    ],
    ids=["colon-in-value", "tab", "unclosed-list"],
)
def test_yaml_syntax_error_names_file_and_line(
    tmp_path: Path, lines: dict[int, str], line: int, fragment: str
) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(policy(lines=lines))

    result = check(file)

    assert result.returncode == 1
    assert result.stdout == ""
    # A syntax error has no field path: the message follows the line directly.
    message = problem_line(result.stderr, file, line, "")
    assert "YAML syntax error" in message
    assert fragment in message


def test_every_problem_in_every_file_is_listed_in_one_run(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "1-typo.yaml").write_text(policy("typo", {12: "      acton: kill"}))
    (directory / "2-action.yaml").write_text(policy("action", {12: "      action: block"}))
    (directory / "3-syntax.yaml").write_text(policy("syntax", {4: "  name: no: recon"}))
    (directory / "4-good.yaml").write_text(policy("good"))
    (directory / "5-dup.yaml").write_text(policy("good"))

    result = check(directory)

    assert result.returncode == 1
    assert result.stdout == ""
    problem_line(result.stderr, directory / "1-typo.yaml", 12, "spec.rules[0].acton")
    problem_line(result.stderr, directory / "2-action.yaml", 12, "spec.rules[0].action")
    problem_line(result.stderr, directory / "3-syntax.yaml", 4, "")
    problem_line(result.stderr, directory / "5-dup.yaml", 4, "metadata.name")
    assert len(result.stderr.splitlines()) == 4, result.stderr


def test_nonexistent_path_fails(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-policies"

    result = check(missing)

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{missing}: no such file or directory" in result.stderr


def test_nonexistent_path_fails_even_beside_valid_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(policy())
    missing = tmp_path / "typo.yaml"

    result = check(good, missing)

    assert result.returncode == 1
    assert f"{missing}: no such file or directory" in result.stderr


def test_an_alias_bomb_fails_within_a_second_naming_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bomb.yaml"
    lines = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)]
    file.write_text("\n".join(lines) + "\n" + policy(lines={14: "        names: *l8"}))

    started = time.monotonic()
    result = check(file)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert elapsed < 1.0, f"enforcer check took {elapsed:.2f} s"
    message = problem_line(result.stderr, file, 6, "l5")
    assert "a policy file may hold at most 131072 nodes and 1048576 bytes (1 MiB)" in message


@pytest.mark.parametrize("value", ['"yes"', "yes", "1", "on"])
def test_a_boolean_written_otherwise_than_true_or_false_fails(tmp_path: Path, value: str) -> None:
    file = tmp_path / "host.yaml"
    file.write_text(policy(lines={8: f"    host: {value}", 9: "#"}))

    result = check(file)

    assert result.returncode == 1
    message = problem_line(result.stderr, file, 8, "spec.selector.host")
    assert "write true or false, without quotes" in message


def test_a_lone_surrogate_fails_check_instead_of_the_map_writer(tmp_path: Path) -> None:
    file = tmp_path / "surrogate.yaml"
    file.write_text(policy(lines={14: '        names: [whoami, "x\\ud800"]'}))

    result = check(file)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = problem_line(result.stderr, file, 14, "spec.rules[0].match.names[1]")
    assert "'x\\ud800' contains '\\ud800', a lone UTF-16 surrogate" in message


def test_policies_that_overflow_the_kernel_maps_together_fail(tmp_path: Path) -> None:
    # Each fits alone; both, in a container they both select, need more names than the map
    # holds (half of abi.MAX_NAME_ENTRIES).
    room = abi.MAX_NAME_ENTRIES // 2
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for file, prefix, count in ((first, "a", room // 2 + 1), (second, "b", room // 2)):
        names = ", ".join(f"{prefix}{i}" for i in range(count))
        file.write_text(
            policy(prefix, {8: "    allContainers: true", 9: "#", 14: f"        names: [{names}]"})
        )

    result = check(tmp_path)

    assert result.returncode == 1
    message = problem_line(result.stderr, second, 14, "spec.rules[0].match.names")
    assert f"{room + 1} program names (per distinct set of policies) exceed" in message
    assert "together with those read before it (a)" in message
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_check_explains_the_bound_of_an_argument_value_it_cannot_match(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    long_value = "x" * (abi.ARG_KEY_LEN - 1)
    path.write_text(
        policy(
            lines={14: f'        names: [curl]\n        args: {{anyOf: ["-o", "{long_value}"]}}'}
        )
    )
    result = check(path)
    assert result.returncode != 0
    line = problem_line(result.stderr, path, 15, "spec.rules[0].match.args.anyOf[1]")
    assert f"first {abi.MATCH_ARGS} arguments after argv[0]" in line
    assert f"at most {abi.ARG_KEY_LEN - 2} bytes" in line


def test_check_accepts_calledby_and_args(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        policy(
            lines={
                14: "        names: [sh]\n        calledBy: {paths: [/usr/sbin/nginx], "
                "names: [php-fpm]}\n        args: {anyOf: ['-c']}"
            }
        )
    )
    result = check(path)
    assert result.returncode == 0, result.stderr
