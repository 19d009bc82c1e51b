"""End to end: a program killed for what starts it (calledBy), in a runc container.

A static helper (tests/helpers/spawn.c) copied to /usr/sbin/nginx in a
container stands in for a web server starting a shell, which is killed; a
shell that a shell starts runs. Where the backend cannot read the caller
(tracepoint without sched_prepare_exec, before Linux 6.10), the daemon
refuses that policy.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import RunningDaemon, bpf_unavailable_reason, build_helper, start_daemon
from runc_helpers import RuncContainer, runc_container
from test_enforce_containers import EVENT_TIMEOUT_S, KILLED, counts

from enforcer.kernel.facts import has_prepare_exec
from tests.support.prerequisites import runc_unavailable_reason
from tests.support.wait import eventually

pytestmark = pytest.mark.root

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
    """A daemon with the web policy alone."""
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
    if backend != "tracepoint" or has_prepare_exec():
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
