"""A rule names a file, not a string: however the file is invoked, it is that file that runs.

Host processes, so these also run in the VM, on every backend of each kernel there.
The policy reaches the host, so it names only programs made for the test,
below this test's own temporary directory. Each case runs the named file
some way (symlink, relative path, '..', '//', a hardlink, a rename,
/proc/self/fd/N, execveat with AT_EMPTY_PATH, a #! script, a path in a
page not yet faulted in) and expects it killed and counted once; next to it
a neighbour that must run: a copy under a similar name, a sibling
directory, a symlink leading out of the named directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, bpf_unavailable_reason, build_helper

pytestmark = pytest.mark.root

KILLED = -signal.SIGKILL

POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: identity
spec:
  mode: enforce
  selector:
    host: true
  rules:
    - name: by-path
      action: kill
      match:
        paths: [{named}]
    - name: by-dir
      action: kill
      match:
        dirs: [{forbidden}]
    - name: by-name
      action: kill
      match:
        names: [{script_name}]
"""


@dataclass(frozen=True)
class Layout:
    """The files the policy names, and their neighbours, all below one directory."""

    root: Path
    named: Path  # paths: [named]
    forbidden: Path  # dirs: [forbidden]
    script_name: str  # names: [script_name]

    def marker(self) -> Path:
        return self.root / f"ran-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def unpaged_exec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_helper("unpaged_exec", tmp_path_factory.mktemp("helpers"))


@pytest.fixture
def layout(tmp_path: Path, marker_binary: Path) -> Layout:
    if (reason := bpf_unavailable_reason()) is not None:
        pytest.skip(reason)
    root = tmp_path / f"identity-{secrets.token_hex(4)}"
    (root / "bin").mkdir(parents=True)
    named = root / "bin" / "named"
    shutil.copy2(marker_binary, named)
    shutil.copy2(marker_binary, root / "bin" / "namedx")  # a copy: another file
    forbidden = root / "forbidden"
    forbidden.mkdir()
    shutil.copy2(marker_binary, forbidden / "tool")
    (root / "forbiddenx").mkdir()
    shutil.copy2(marker_binary, root / "forbiddenx" / "tool")
    (root / "links").mkdir()
    (root / "linked-bin").symlink_to(root / "bin")
    return Layout(root, named, forbidden, f"job-{secrets.token_hex(3)}.sh")


@pytest.fixture
def daemon(layout: Layout, tmp_path: Path, daemon_factory: Any) -> RunningDaemon:
    policies = tmp_path / "policies"
    policies.mkdir()
    text = POLICY.format(
        named=layout.named, forbidden=layout.forbidden, script_name=layout.script_name
    )
    (policies / "identity.yaml").write_text(text)
    started: RunningDaemon = daemon_factory(policies)
    return started


def blocked(daemon: RunningDaemon, rule: str) -> int:
    policy = next(p for p in daemon.ask("stats")["policies"] if p["name"] == "identity")
    found = next((r for r in policy["rules"] if r["name"] == rule), None)
    return int(found["blocked"]) if found else 0


def run(argv: list[str], cwd: Path | None = None) -> int:
    return subprocess.run(argv, cwd=cwd, check=False, capture_output=True).returncode


def python_exec(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh Python: for execs a shell would not make as such."""
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)


def assert_killed_each(daemon: RunningDaemon, rule: str, ways: dict[str, list[str]], layout: Layout,
                       cwd: Path | None = None) -> None:  # fmt: skip
    before = blocked(daemon, rule)
    for way, argv in ways.items():
        marker = layout.marker()
        assert run([*argv, str(marker)], cwd) == KILLED, way
        assert not marker.exists(), f"{way}: the program ran"
    assert blocked(daemon, rule) == before + len(ways)


def assert_runs(argv: list[str], layout: Layout, cwd: Path | None = None) -> None:
    marker = layout.marker()
    assert run([*argv, str(marker)], cwd) == 0, argv
    assert marker.exists(), argv


def test_a_named_path_is_killed_however_it_is_invoked(
    layout: Layout, daemon: RunningDaemon
) -> None:
    bin_dir = layout.named.parent
    (layout.root / "links" / "alias").symlink_to(layout.named)
    ways = {
        "as named": [str(layout.named)],
        "symlink": [str(layout.root / "links" / "alias")],
        "relative": ["./named"],
        "dot-dot": [f"{bin_dir}/../bin/named"],
        "double slash": [str(bin_dir).replace("/", "//") + "//named"],
        "symlinked directory": [str(layout.root / "linked-bin" / "named")],
    }
    assert_killed_each(daemon, "by-path", ways, layout, cwd=bin_dir)
    assert_runs([str(bin_dir / "namedx")], layout)  # a copy, under a similar name

    # The events show the file that ran, and the path it was invoked by.
    alias = str(layout.root / "links" / "alias")
    shown = [(e["filename"], e["invoked"]) for e in daemon.ask("events")["events"]]
    assert (str(layout.named), alias) in shown and (str(layout.named), "") in shown
    printed = daemon.cli("events").stdout
    assert f"{layout.named} (invoked as {alias})" in printed


def test_a_hardlink_a_rename_and_a_replacement_are_still_the_named_file(
    layout: Layout, daemon: RunningDaemon, marker_binary: Path
) -> None:
    hardlink = layout.root / "links" / "hardlink"
    os.link(layout.named, hardlink)
    assert_killed_each(daemon, "by-path", {"hardlink": [str(hardlink)]}, layout)

    renamed = layout.root / "links" / "renamed"
    layout.named.rename(renamed)
    assert_killed_each(daemon, "by-path", {"renamed": [str(renamed)]}, layout)

    # An upgrade: a new file written beside it, renamed over the path.
    fresh = layout.named.with_name(".named.new")
    shutil.copy2(marker_binary, fresh)
    fresh.rename(layout.named)
    assert_killed_each(daemon, "by-path", {"replaced": [str(layout.named)]}, layout)


def test_an_exec_through_a_file_descriptor_is_the_file_behind_it(
    layout: Layout, daemon: RunningDaemon
) -> None:
    before = blocked(daemon, "by-path")
    for way, call in {
        "/proc/self/fd/N": 'os.execv(f"/proc/self/fd/{fd}", ["x", marker])',
        "execveat AT_EMPTY_PATH": 'os.execve(fd, ["x", marker], {})',
    }.items():
        marker = layout.marker()
        code = f"import os; fd = os.open({str(layout.named)!r}, os.O_RDONLY); marker = "
        code += f"{str(marker)!r}; {call}"
        assert python_exec(code).returncode == KILLED, way
        assert not marker.exists(), way
    assert blocked(daemon, "by-path") == before + 2


def test_a_path_in_a_page_not_yet_faulted_in_is_still_decided(
    layout: Layout, daemon: RunningDaemon, unpaged_exec: Path
) -> None:
    ways = {"unpaged filename": [str(unpaged_exec), str(layout.named)]}
    assert_killed_each(daemon, "by-path", ways, layout)


def test_a_directory_rule_takes_the_file_that_runs_below_it(
    layout: Layout, daemon: RunningDaemon
) -> None:
    (layout.root / "links" / "into").symlink_to(layout.forbidden / "tool")
    ways = {
        "absolute": [str(layout.forbidden / "tool")],
        "relative": ["./tool"],
        "symlink from outside": [str(layout.root / "links" / "into")],
    }
    assert_killed_each(daemon, "by-dir", ways, layout, cwd=layout.forbidden)
    assert_runs([str(layout.root / "forbiddenx" / "tool")], layout)  # a sibling directory
    (layout.forbidden / "out").symlink_to(layout.root / "bin" / "namedx")
    assert_runs([str(layout.forbidden / "out")], layout)  # it runs a file outside


def test_a_script_counts_by_its_own_file_and_by_its_interpreter(
    layout: Layout, daemon: RunningDaemon
) -> None:
    # The named program as a script's interpreter: the kernel runs it.
    interpreted = layout.root / "bin" / "interpreted.sh"
    interpreted.write_text(f"#!{layout.named}\n")
    interpreted.chmod(0o755)
    before = blocked(daemon, "by-path")
    assert run([str(interpreted)]) == KILLED
    assert blocked(daemon, "by-path") == before + 1

    # A script below the named directory, and a script by its name: each is
    # a program that runs, although /bin/sh is what the kernel loads.
    for rule, script in (
        ("by-dir", layout.forbidden / "job.sh"),
        ("by-name", layout.root / "bin" / layout.script_name),
    ):
        marker = layout.marker()
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
        before = blocked(daemon, rule)
        assert run([str(script)]) == KILLED, script
        assert not marker.exists(), script
        assert blocked(daemon, rule) == before + 1

    allowed = layout.root / "forbiddenx" / "job.sh"
    marker = layout.marker()
    allowed.write_text(f"#!/bin/sh\ntouch {marker}\n")
    allowed.chmod(0o755)
    assert run([str(allowed)]) == 0 and marker.exists()


def test_a_failed_exec_is_neither_counted_nor_killed(layout: Layout, daemon: RunningDaemon) -> None:
    not_executable = layout.forbidden / "data"
    not_executable.write_bytes(b"\x7fELF")
    garbage = layout.forbidden / "garbage"
    garbage.write_bytes(b"\0\1\2\3 not a program")
    garbage.chmod(0o755)
    before = (blocked(daemon, "by-path"), blocked(daemon, "by-dir"))
    for path, error in (
        (layout.root / "nonexistent" / "named", "FileNotFoundError"),
        (not_executable, "PermissionError"),
        (garbage, "OSError"),  # ENOEXEC: no shell falls back to run it as a script here
    ):
        result = python_exec(f"import os\ntry:\n os.execv({str(path)!r}, ['x'])\n"
                             "except OSError as e:\n print(type(e).__name__)")  # fmt: skip
        assert (result.returncode, result.stdout.strip()) == (0, error), path
    assert (blocked(daemon, "by-path"), blocked(daemon, "by-dir")) == before
