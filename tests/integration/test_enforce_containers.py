"""End to end: the daemon kills named programs in one runc container, and only there.

What starts a program (calledBy) is test_called_by_containers.py's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    RunningDaemon,
    bpf_unavailable_reason,
    requested_backend,
    start_daemon,
)
from runc_helpers import RuncContainer, runc_container

from enforcer.errors import DaemonUnavailableError
from enforcer.kernel import backends
from enforcer.kernel.facts import probe
from tests.support.prerequisites import runc_unavailable_reason

pytestmark = pytest.mark.root

KILLED = 137  # 128 + SIGKILL, as runc exec reports it, and spawn for a killed child
EVENT_TIMEOUT_S = 30.0  # events reach the daemon asynchronously (seconds under emulation)

POLICIES = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: no-recon
spec:
  mode: enforce
  selector:
    containers:
      ids: ["{a}"]
  rules:
    - name: recon
      action: kill
      match:
        names: [whoami]
    - name: staging
      action: kill
      match:
        paths: [/bin/cat]
        dirs: [/tmp]
    - name: listing
      action: audit
      match:
        names: [ls]
    - name: refused
      action: deny
      match:
        names: [uname]
---
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: watch-b
spec:
  mode: audit
  selector:
    containers:
      ids: ["{b_prefix}"]
  rules:
    - name: ids
      action: kill
      match:
        names: [id]
"""


@pytest.fixture(scope="module")
def containers(
    tmp_path_factory: pytest.TempPathFactory, execveat_binary: Path
) -> Iterator[tuple[RuncContainer, RuncContainer]]:
    reason = runc_unavailable_reason() or bpf_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("containers")
    with runc_container(base) as a, runc_container(base) as b:
        for container in (a, b):
            rootfs = container.bundle / "rootfs"
            shutil.copy2(execveat_binary, rootfs / "execveat")
            (rootfs / "tmp").mkdir()
            # Files of their own: a rule decides on the file that runs, and every
            # applet symlink in /bin runs /bin/busybox.
            (rootfs / "bin" / "cat").unlink()
            shutil.copy2(rootfs / "bin" / "busybox", rootfs / "bin" / "cat")
            shutil.copy2(rootfs / "bin" / "busybox", rootfs / "tmp" / "echo")
            (rootfs / "tmp" / "true").symlink_to("/bin/busybox")
            (rootfs / "bin" / "uname").symlink_to("busybox")
        yield a, b


@pytest.fixture(scope="module")
def daemon(
    containers: tuple[RuncContainer, RuncContainer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    a, b = containers
    workdir = tmp_path_factory.mktemp("daemon")
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICIES.format(a=a.id, b_prefix=b.id[:12]))
    running = start_daemon(policies, workdir)
    yield running
    assert running.stop() == 0, running.log.read_text()


def counts(daemon: RunningDaemon, policy: str, rule: str, container_id: str) -> tuple[int, int]:
    """(blocked, audited) for one policy, rule and container, read from the daemon."""
    for p in daemon.ask("stats")["policies"]:
        if p["name"] != policy:
            continue
        for r in p["rules"]:
            if r["name"] != rule:
                continue
            for c in r["containers"]:
                if c["id"] == container_id:
                    return c["blocked"], c["audited"]
    return 0, 0


def policy_totals(daemon: RunningDaemon, policy: str) -> dict[str, Any]:
    return next(p for p in daemon.ask("stats")["policies"] if p["name"] == policy)


def test_named_program_is_killed_in_selected_container_only(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    before = counts(daemon, "no-recon", "recon", a.id)

    in_a = a.exec(["whoami"])
    assert in_a.returncode == KILLED
    assert in_a.stdout == ""

    in_b = b.exec(["whoami"])
    assert (in_b.returncode, in_b.stdout) == (0, "root\n")

    on_host = subprocess.run(["whoami"], capture_output=True, text=True, check=False)
    assert on_host.returncode == 0
    assert on_host.stdout.strip()

    assert counts(daemon, "no-recon", "recon", a.id) == (before[0] + 1, 0)
    assert counts(daemon, "no-recon", "recon", b.id) == (0, 0)
    totals = policy_totals(daemon, "no-recon")
    assert totals["blocked"] >= 1
    assert isinstance(totals["audited"], int)


def test_program_no_rule_names_runs(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, _ = containers
    result = a.exec(["echo", "still-here"])
    assert (result.returncode, result.stdout) == (0, "still-here\n")


def test_execveat_is_enforced_like_execve(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    before = counts(daemon, "no-recon", "recon", a.id)

    killed = a.exec(["/execveat", "/bin", "whoami"])
    assert (killed.returncode, killed.stdout) == (KILLED, "")
    assert counts(daemon, "no-recon", "recon", a.id) == (before[0] + 1, 0)

    allowed = b.exec(["/execveat", "/bin", "whoami"])
    assert (allowed.returncode, allowed.stdout) == (0, "root\n")


def test_exact_path_and_directory_rules(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    before = counts(daemon, "no-recon", "staging", a.id)
    assert a.exec(["/bin/cat", "/etc/group"]).returncode == KILLED
    # However the file below /tmp is named, it is that file that runs.
    for invocation in ("/tmp/echo hi", "cd /tmp && ./echo hi", "/bin/../tmp//echo hi"):
        assert a.exec(["sh", "-c", invocation]).returncode == KILLED, invocation
    # Another file: busybox itself, also through a symlink below /tmp.
    assert a.exec(["/bin/busybox", "cat", "/etc/group"]).stdout == "root:x:0:\n"
    assert a.exec(["/tmp/true"]).returncode == 0
    assert counts(daemon, "no-recon", "staging", a.id) == (before[0] + 4, 0)
    assert b.exec(["/tmp/echo", "hi"]).stdout == "hi\n"


def test_deny_refuses_the_exec_in_the_container_and_the_caller_goes_on(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    before = counts(daemon, "no-recon", "refused", a.id)
    lsm = daemon.ask("status")["backend"] == "lsm"

    # The shell's child is refused (lsm: its execve fails with EPERM, exit
    # 126) or killed (137, where only a kill is possible); the shell goes on.
    shell = a.exec(["sh", "-c", "/bin/uname; echo went on $?"])
    assert shell.stdout == ("went on 126\n" if lsm else "went on 137\n"), shell.stderr
    if lsm:
        assert "Operation not permitted" in shell.stderr, shell.stderr
    # Here the process refused is the caller itself: it sees EPERM and goes on.
    direct = a.exec(["/execveat", "/bin", "uname"])
    if lsm:
        assert (direct.returncode, direct.stderr.strip()) == (
            127,
            "execveat: Operation not permitted",
        )
    else:
        assert direct.returncode == KILLED
    assert counts(daemon, "no-recon", "refused", a.id) == (before[0] + 2, 0)
    assert (b.exec(["uname"]).returncode, counts(daemon, "no-recon", "refused", b.id)) == (
        0,
        (0, 0),
    )
    action = "deny" if lsm else "kill"
    refused = [e for e in daemon.ask("events")["events"] if e.get("rule") == "refused"]
    assert [e["action"] for e in refused[-2:]] == [action, action], refused


def test_audit_mode_counts_and_lets_run(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    _, b = containers
    result = b.exec(["id", "-u"])
    assert (result.returncode, result.stdout) == (0, "0\n")
    assert counts(daemon, "watch-b", "ids", b.id) == (0, 1)


def test_audit_rule_in_enforce_policy_lets_run(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, _ = containers
    assert a.exec(["ls", "/etc/group"]).stdout == "/etc/group\n"
    assert counts(daemon, "no-recon", "listing", a.id) == (0, 1)


def test_cli_containers_lists_each_with_the_policies_that_select_it(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    listed = daemon.cli("containers", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {c["id"]: c for c in json.loads(listed.stdout)}
    assert (by_id[a.id]["policies"], by_id[b.id]["policies"]) == (["no-recon"], ["watch-b"])
    assert by_id[a.id]["runtime"] == "runc" and by_id[a.id]["cgroup_id"] is not None
    printed = daemon.cli("containers").stdout
    assert printed.startswith("CONTAINER") and f"{a.id[:12]}" in printed and "no-recon" in printed


def test_cli_status_and_stats(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    a, b = containers
    status = daemon.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["enforcing"] is True
    # The backend asked for, or with auto the one this kernel ranks first.
    expected = backends.choose_backend(probe(), backends.Backend(requested_backend())).backend
    assert report["backend"] == expected
    selected = {p["name"]: [c["id"] for c in p["containers"]] for p in report["policies"]}
    assert selected == {"no-recon": [a.id], "watch-b": [b.id]}

    stats = json.loads(daemon.cli("stats", "--json").stdout)
    assert {p["name"] for p in stats["policies"]} == {"no-recon", "watch-b"}

    # A kill of its own: the row does not depend on the tests before this one.
    assert a.exec(["whoami"]).returncode == KILLED
    table = daemon.cli("stats")
    assert table.returncode == 0
    assert any(
        line.split()[:3] == ["no-recon", "recon", a.id[:12]] for line in table.stdout.splitlines()
    ), table.stdout


def test_an_unknown_command_is_refused_naming_the_known_ones(
    daemon: RunningDaemon, containers: tuple[RuncContainer, RuncContainer]
) -> None:
    with pytest.raises(DaemonUnavailableError) as refused:
        daemon.ask("frobnicate")
    assert "unknown command 'frobnicate'" in str(refused.value)
    assert "stats, status, containers, events, reload" in str(refused.value)
    assert daemon.ask("status")["enforcing"] is True  # and it goes on answering


def test_status_fails_when_no_daemon(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "status", "--socket", str(tmp_path / "none.sock")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "not running" in result.stderr
