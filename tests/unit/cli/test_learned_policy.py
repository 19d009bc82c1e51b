"""`enforcer learn`'s output: paths grouped into directories where exact, a policy check takes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from enforcer.cli.learn import LearnError, Observed, Target, group, parse_duration, policy_text
from enforcer.cli.learn import _root_lister as root_lister
from enforcer.containers.model import Container
from enforcer.policy.loader import load_policies

WEB = Container(id="b" * 64, runtime="podman", name="web", image="localhost/web:1", pid=1)


def make_root(tmp_path: Path, programs: list[str], data: tuple[str, ...] = ()) -> Path:
    root = tmp_path / "root"
    for path in [*programs, *data]:
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("")
        file.chmod(0o755 if path in programs else 0o644)
    return root


def test_a_directory_stands_for_its_programs_only_when_all_of_them_ran(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        ["/app/bin/api", "/app/bin/worker", "/usr/bin/env", "/usr/bin/curl", "/usr/bin/nc"],
        data=("/app/bin/README",),
    )
    runs = {"/app/bin/api": 3, "/app/bin/worker": 1, "/usr/bin/env": 2, "/usr/bin/curl": 1}
    paths, dirs = group(runs, root_lister({"web": root}))
    assert dirs == ["/app/bin"]  # a data file is no program
    assert paths == ["/usr/bin/curl", "/usr/bin/env"]  # nc never ran: no /usr/bin


def test_without_a_root_to_look_in_every_path_stays(tmp_path: Path) -> None:
    paths, dirs = group({"/a/x": 1, "/a/y": 1}, root_lister({}))
    assert (paths, dirs) == (["/a/x", "/a/y"], [])


def test_the_learned_policy_is_an_audit_mode_allowlist_that_check_accepts(tmp_path: Path) -> None:
    observed = Observed()
    observed.runs.update({"/usr/local/bin/api": 5, "/bin/sh": 1})
    observed.containers.add(WEB.id)
    text = policy_text(Target(container=WEB), observed, time.time() - 60, 60)
    file = tmp_path / "learned.yaml"
    file.write_text(text)

    loaded = load_policies([file])
    assert not loaded.problems, loaded.problems
    (policy,) = loaded.policies
    spec = policy.policy.spec
    assert (spec.mode, spec.default, spec.selector.containers.ids) == ("audit", "kill", (WEB.id,))
    assert spec.rules[0].action == "allow"
    assert spec.rules[0].match.paths == ("/bin/sh", "/usr/local/bin/api")
    assert "# 6 execs of 2 programs in container bbbbbbbbbbbb (podman, web)." in text
    assert "for 60 s" in text


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-5m"])
def test_a_duration_that_is_none_says_how_to_write_one(text: str) -> None:
    with pytest.raises(LearnError, match="--for"):
        parse_duration(text)
