"""End to end: the daemon kills named programs in one runc container, and only there.

And a program killed for what starts it (calledBy): a static helper
(tests/helpers/spawn.c) copied to /usr/sbin/nginx in a third container stands
in for a web server starting a shell, which is killed; a shell that a shell
starts runs. Where the backend cannot read the caller (tracepoint without
sched_prepare_exec, before Linux 6.10), the daemon refuses that policy.
"""

from __future__ import annotations

import json
import platform
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
    build_helper,
    requested_backend,
    start_daemon,
)
from runc_helpers import RuncContainer, runc_container

from enforcer.errors import DaemonUnavailableError
from enforcer.kernel import backends
from tests.support.prerequisites import runc_unavailable_reason
from tests.support.wait import eventually

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


WEB_POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: web
spec:
  mode: enforce
  selector:
    containers:
      ids: ["{id}"]
  rules:
    - name: no-shell-from-web
      action: kill
      match:
        names: [sh]
        calledBy:
          paths: [/usr/sbin/nginx]
"""
NGINX = "/usr/sbin/nginx"


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
    expected = backends.choose_backend(
        backends.probe(), backends.Backend(requested_backend())
    ).backend
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


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuncContainer]:
    """A container whose /usr/sbin/nginx is spawn: it forks and execs what it is given."""
    if (reason := runc_unavailable_reason() or bpf_unavailable_reason()) is not None:
        pytest.skip(reason)
    spawn = build_helper("spawn", tmp_path_factory.mktemp("helpers"))
    with runc_container(tmp_path_factory.mktemp("web")) as container:
        rootfs = container.bundle / "rootfs"
        # The rule names the file that runs: /bin/sh a file of its own, not
        # the applet symlink to /bin/busybox.
        (rootfs / "bin" / "sh").unlink()
        shutil.copy2(rootfs / "bin" / "busybox", rootfs / "bin" / "sh")
        (rootfs / "usr" / "sbin").mkdir(parents=True)
        shutil.copy2(spawn, rootfs / NGINX.lstrip("/"))
        yield container


@pytest.fixture(scope="module")
def web_daemon(
    web: RuncContainer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    """A daemon of its own beside the first: the web policy alone, so the first's
    policies, containers and counts stay what the tests above expect."""
    workdir = tmp_path_factory.mktemp("web-daemon")
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(WEB_POLICY.format(id=web.id))
    running = start_daemon(policies, workdir)
    yield running
    assert running.stop() == 0, running.log.read_text()


def caller_unreadable_reason(daemon: RunningDaemon) -> str | None:
    """Why this daemon's backend cannot test calledBy, or None where it can."""
    backend = daemon.ask("status")["backend"]
    if backend != "tracepoint" or backends.has_prepare_exec():
        return None
    return (
        f"the tracepoint backend on Linux {platform.release()} (no sched_prepare_exec) "
        "cannot read the caller: the daemon refuses calledBy, as "
        "test_called_by_is_a_policy_problem_where_the_caller_cannot_be_read asserts"
    )


def web_event(daemon: RunningDaemon) -> dict[str, Any]:
    """The newest denial of the web policy, once it has reached the daemon."""
    found: list[dict[str, Any]] = eventually(
        lambda: [e for e in daemon.ask("events")["events"] if e["policy"] == "web"],
        EVENT_TIMEOUT_S,
        what="an event of policy web",
    )
    return found[-1]


def test_called_by_nginx_a_shell_is_killed_counted_and_its_caller_named(
    web_daemon: RunningDaemon, web: RuncContainer
) -> None:
    if (reason := caller_unreadable_reason(web_daemon)) is not None:
        pytest.skip(reason)
    before = counts(web_daemon, "web", "no-shell-from-web", web.id)

    result = web.exec([NGINX, "/bin/sh", "-c", "echo pwned"])
    assert (result.returncode, result.stdout) == (KILLED, "signal 9\n"), result

    assert counts(web_daemon, "web", "no-shell-from-web", web.id) == (before[0] + 1, 0)
    event = web_event(web_daemon)
    assert (event["rule"], event["action"], event["container_id"]) == (
        "no-shell-from-web",
        "kill",
        web.id,
    )
    assert (event["filename"], event["caller"]) == ("/bin/sh", NGINX)
    listed = web_daemon.cli("events")
    assert f"(called by {NGINX})" in listed.stdout, listed


def test_called_by_a_shell_a_shell_runs(web_daemon: RunningDaemon, web: RuncContainer) -> None:
    if (reason := caller_unreadable_reason(web_daemon)) is not None:
        pytest.skip(reason)
    before = counts(web_daemon, "web", "no-shell-from-web", web.id)

    nested = web.exec(["sh", "-c", "sh -c 'echo inner ran'"])
    assert (nested.returncode, nested.stdout) == (0, "inner ran\n"), nested
    # nginx starting anything but sh is no hit either (/bin/true runs /bin/busybox).
    assert web.exec([NGINX, "/bin/true"]).returncode == 0

    assert counts(web_daemon, "web", "no-shell-from-web", web.id) == before


def test_called_by_is_a_policy_problem_where_the_caller_cannot_be_read(
    web_daemon: RunningDaemon, web: RuncContainer
) -> None:
    if caller_unreadable_reason(web_daemon) is None:
        pytest.skip(
            f"the {web_daemon.ask('status')['backend']} backend reads the caller here: "
            "the calledBy rule is in force and tested above"
        )
    status = web_daemon.ask("status")
    field = "spec.rules[0].match.calledBy"
    assert status["policies"] == [], status  # the file had no good version to keep
    assert status["policy_files_with_problems"] == 1
    assert [field in p and "sched_prepare_exec" in p for p in status["problems"]] == [True]
    printed = web_daemon.cli("status")
    assert printed.returncode == 0, printed
    problems = [line for line in printed.stderr.splitlines() if line.startswith("problem: ")]
    assert [field in line for line in problems] == [True], printed.stderr
    # Refused, the rule kills nothing: nginx's shell runs.
    result = web.exec([NGINX, "/bin/sh", "-c", "echo ran"])
    assert (result.returncode, result.stdout) == (0, "ran\n"), result
