"""Rules on who runs a program (calledBy) and with what arguments (args), in Debian 12.

The container runs Debian's own minbase with curl (tests/images/debian_rootfs.sh).
A static helper (tests/helpers/spawn.c), copied to /usr/sbin/nginx, stands in for
a web server: it forks and execs what it is given, as nginx or php-fpm would for
an injected command. The policy kills a shell that nginx starts and curl writing
a file; the container's own script starts the same shell, and curl runs for
anything else.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
from conftest import RunningDaemon, build_helper, start_daemon
from podman_helpers import PODMAN, PodmanContainer, podman_container

pytestmark = [pytest.mark.root, pytest.mark.podman]

KILLED = 137  # 128 + SIGKILL: podman exec's status, and spawn's for a killed child

POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: web
spec:
  selector:
    containers:
      names: ["{name}"]
  rules:
    - name: no-shell-from-web
      action: kill
      match:
        names: [sh, bash, dash]
        calledBy:
          paths: [/usr/sbin/nginx]
          names: [php-fpm]
    - name: no-curl-output
      action: kill
      match:
        names: [curl]
        args:
          anyOf: ["-o", "--output", "-O"]
"""


@pytest.fixture(scope="module")
def web(debian_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanContainer]:
    spawn = build_helper("spawn", tmp_path_factory.mktemp("helpers"))
    name = f"enforcer-calls-{secrets.token_hex(4)}"
    with podman_container(debian_image, name=name, args=("sleep", "3600")) as container:
        subprocess.run([PODMAN, "cp", str(spawn), f"{container.id}:/usr/sbin/nginx"], check=True)
        script = "#!/bin/sh\nsh -c 'echo entrypoint ran'\n"
        setup = f'printf %s "{script}" > /entrypoint.sh && chmod +x /entrypoint.sh'
        assert container.exec(["sh", "-c", setup]).returncode == 0
        yield container


@pytest.fixture(scope="module")
def daemon(
    web: PodmanContainer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    workdir = tmp_path_factory.mktemp("daemon")
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(POLICY.format(name=web.name))
    running = start_daemon(policies, workdir)
    try:
        yield running
    finally:
        running.stop()


def blocked(daemon: RunningDaemon, rule: str) -> int:
    found = next((p for p in daemon.ask("stats")["policies"] if p["name"] == "web"), None)
    rules = {r["name"]: r for r in found["rules"]} if found else {}
    return int(rules[rule]["blocked"]) if rule in rules else 0


def by_caller(daemon: RunningDaemon, rule: str) -> dict[tuple[str, str], int]:
    """(program, caller) -> blocked, from `stats`: who called what the rule blocked."""
    found = next(p for p in daemon.ask("stats")["policies"] if p["name"] == "web")
    return {
        (row["program"], row.get("caller", "")): int(row["blocked"])
        for r in found["rules"] if r["name"] == rule
        for container in r["containers"]
        for row in container["programs"]
    }  # fmt: skip


def run(container: PodmanContainer, script: str) -> subprocess.CompletedProcess[str]:
    return container.exec(["sh", "-c", script])


def test_a_shell_the_web_server_starts_is_killed(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = blocked(daemon, "no-shell-from-web")
    result = run(web, "/usr/sbin/nginx /bin/sh -c 'echo pwned'")
    assert (result.returncode, result.stdout) == (KILLED, "signal 9\n"), result
    assert blocked(daemon, "no-shell-from-web") == before + 1
    event = next(
        e for e in reversed(daemon.ask("events")["events"]) if e["rule"] == "no-shell-from-web"
    )
    assert event["caller"] == "/usr/sbin/nginx"
    assert event["filename"] == "/usr/bin/dash"
    # /bin/sh is dash: the rule's `dash` names the file that runs.
    assert by_caller(daemon, "no-shell-from-web")[("dash", "/usr/sbin/nginx")] >= 1
    table = daemon.cli("stats").stdout
    assert "CALLER" in table.splitlines()[0]
    assert any("no-shell-from-web" in line and "/usr/sbin/nginx" in line
               for line in table.splitlines()), table  # fmt: skip


def test_a_caller_named_by_its_name_is_counted_under_that_name(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = by_caller(daemon, "no-shell-from-web").get(("dash", "php-fpm"), 0)
    result = run(web, "cp /usr/sbin/nginx /usr/local/sbin/php-fpm && php-fpm /bin/sh -c :")
    assert (result.returncode, result.stdout) == (KILLED, "signal 9\n"), result
    assert by_caller(daemon, "no-shell-from-web")[("dash", "php-fpm")] == before + 1


def test_the_same_shell_from_the_entrypoint_script_runs(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = blocked(daemon, "no-shell-from-web")
    result = run(web, "/entrypoint.sh")
    assert (result.returncode, result.stdout) == (0, "entrypoint ran\n"), result
    # nginx starting anything else than a shell is no hit either.
    assert run(web, "/usr/sbin/nginx /usr/bin/true").returncode == 0
    assert blocked(daemon, "no-shell-from-web") == before


def test_the_caller_named_through_a_symlink_or_a_relative_path(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = blocked(daemon, "no-shell-from-web")
    ways = {
        "symlink": "ln -sf /usr/sbin/nginx /usr/local/bin/web && /usr/local/bin/web /bin/sh -c :",
        "relative": "cd /usr/sbin && ./nginx /bin/sh -c :",
        "/bin alias of the shell": "cd / && usr/sbin/nginx /usr/bin/dash -c :",
    }
    for way, script in ways.items():
        result = run(web, script)
        assert result.returncode == KILLED, f"{way}: {result}"
    assert blocked(daemon, "no-shell-from-web") == before + len(ways)
    # A copy of nginx elsewhere is another file: its shell runs.
    copied = run(
        web, "cp /usr/sbin/nginx /usr/local/bin/other && /usr/local/bin/other /bin/sh -c :"
    )
    assert copied.returncode == 0, copied


def test_a_child_sharing_the_callers_memory_is_still_the_caller(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = blocked(daemon, "no-shell-from-web")
    for way in ("vfork", "posix_spawn"):
        result = run(web, f"SPAWN_WITH={way} /usr/sbin/nginx /bin/sh -c :")
        assert (result.returncode, result.stdout) == (KILLED, "signal 9\n"), f"{way}: {result}"
    assert blocked(daemon, "no-shell-from-web") == before + 2


def test_only_the_direct_caller_counts(daemon: RunningDaemon, web: PodmanContainer) -> None:
    # nginx starts another program, which starts the shell: that program is the caller.
    relay = "/usr/local/bin/relay"
    script = f"cp /usr/sbin/nginx {relay} && /usr/sbin/nginx {relay} /bin/sh -c :"
    result = run(web, script)
    assert result.returncode == 0, result


def test_curl_writing_a_file_is_killed_and_curl_version_runs(
    daemon: RunningDaemon, web: PodmanContainer
) -> None:
    before = blocked(daemon, "no-curl-output")
    assert run(web, "curl --version").returncode == 0
    assert run(web, "curl -s file:///etc/hostname").returncode == 0
    for script in (
        "curl -o /tmp/x file:///etc/hostname",
        "curl -s --output /tmp/x file:///etc/hostname",
    ):
        result = run(web, script)
        assert result.returncode == KILLED, f"{script}: {result}"
    assert blocked(daemon, "no-curl-output") == before + 2
    event = next(
        e for e in reversed(daemon.ask("events")["events"]) if e["rule"] == "no-curl-output"
    )
    assert event["filename"] == "/usr/bin/curl"
    assert "--output" in event["argv"]
