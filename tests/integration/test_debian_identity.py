"""In a real Debian 12 container (merged /usr), a rule names the file that runs.

The image is Debian's own minbase (tests/images/debian_rootfs.sh), run with
podman. `/bin` there is a symlink to `usr/bin` and `python3` one to
`python3.11`, as on every Debian host. Container `a` is selected by a policy
naming whoami by a path written with the /bin alias, and a directory;
container `c` by one naming the python3 interpreter; `b` by none. Each case
runs the named file one way, expects 137 (killed) and one more count; beside
it a neighbour that must run.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
from conftest import RunningDaemon, build_helper, start_daemon
from podman_helpers import PODMAN, PodmanContainer, podman_container

pytestmark = [pytest.mark.root, pytest.mark.podman]

KILLED = 137  # 128 + SIGKILL, as podman exec reports it

POLICIES = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: identity
spec:
  selector:
    containers:
      names: ["{a}"]
  rules:
    - name: whoami
      action: kill
      match:
        paths: [/bin/whoami]
    - name: scratch
      action: kill
      match:
        dirs: [/tmp]
---
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: no-python
spec:
  selector:
    containers:
      names: ["{c}"]
  rules:
    - name: python
      action: kill
      match:
        paths: [/usr/bin/python3]
"""


@pytest.fixture(scope="module")
def containers(
    debian_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PodmanContainer]]:
    unpaged = build_helper("unpaged_exec", tmp_path_factory.mktemp("helpers"))
    tag = secrets.token_hex(4)
    with (
        podman_container(debian_image, name=f"enforcer-id-a-{tag}", args=("sleep", "3600")) as a,
        podman_container(debian_image, name=f"enforcer-id-b-{tag}", args=("sleep", "3600")) as b,
        podman_container(debian_image, name=f"enforcer-id-c-{tag}", args=("sleep", "3600")) as c,
    ):
        subprocess.run(
            [PODMAN, "cp", str(unpaged), f"{a.id}:/usr/local/bin/unpaged_exec"], check=True
        )
        yield {"a": a, "b": b, "c": c}


@pytest.fixture(scope="module")
def daemon(
    containers: dict[str, PodmanContainer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    workdir = tmp_path_factory.mktemp("daemon")
    policies = workdir / "policies"
    policies.mkdir()
    text = POLICIES.format(a=containers["a"].name, c=containers["c"].name)
    (policies / "identity.yaml").write_text(text)
    running = start_daemon(policies, workdir)
    try:
        yield running
    finally:
        running.stop()


def blocked(daemon: RunningDaemon, policy: str, rule: str) -> int:
    found = next((p for p in daemon.ask("stats")["policies"] if p["name"] == policy), None)
    rules = {r["name"]: r for r in found["rules"]} if found else {}
    return int(rules[rule]["blocked"]) if rule in rules else 0


def sh(container: PodmanContainer, script: str) -> subprocess.CompletedProcess[str]:
    return container.exec(["sh", "-c", script])


def assert_killed_each(
    daemon: RunningDaemon, container: PodmanContainer, rule: tuple[str, str], ways: dict[str, str]
) -> None:
    before = blocked(daemon, *rule)
    for way, script in ways.items():
        result = sh(container, script)
        assert result.returncode == KILLED, f"{way}: {result}"
    assert blocked(daemon, *rule) == before + len(ways)


def test_merged_usr_aliases_and_spellings_of_the_path(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    ways = {
        "the file": "/usr/bin/whoami",
        "the /bin alias the policy wrote": "/bin/whoami",
        "relative": "cd /usr/bin && ./whoami",
        "dot-dot": "/usr/lib/../bin/whoami",
        "double slashes": "//usr//bin//whoami",
        "by PATH": "whoami",
    }
    assert_killed_each(daemon, containers["a"], ("identity", "whoami"), ways)
    # Neighbours: another program, a copy elsewhere (a copy is another file).
    a = containers["a"]
    assert sh(a, "id -u").stdout == "0\n"
    copied = sh(a, "cp /usr/bin/whoami /usr/local/bin/whoamix && /usr/local/bin/whoamix")
    assert copied.stdout == "root\n"


def test_another_container_and_the_host_are_untouched(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    assert sh(containers["b"], "/bin/whoami").stdout == "root\n"
    assert sh(containers["c"], "/bin/whoami").stdout == "root\n"
    host = subprocess.run(["whoami"], capture_output=True, text=True, check=False)
    assert (host.returncode, host.stdout) == (0, "root\n")


def test_symlink_hardlink_fd_and_execveat(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    fd_exec = "import os; fd = os.open('/usr/bin/whoami', os.O_RDONLY); "
    ways = {
        "symlink": "ln -sf /usr/bin/whoami /usr/local/bin/me && /usr/local/bin/me",
        "hardlink": "ln -f /usr/bin/whoami /usr/local/bin/me2 && /usr/local/bin/me2",
        "/proc/self/fd/N": f"python3 -c \"{fd_exec}os.execv(f'/proc/self/fd/{{fd}}', ['x'])\"",
        "execveat AT_EMPTY_PATH": f"python3 -c \"{fd_exec}os.execve(fd, ['x'], {{}})\"",
        "filename in an unpaged page": "unpaged_exec /usr/bin/whoami",
    }
    assert_killed_each(daemon, containers["a"], ("identity", "whoami"), ways)


def test_a_directory_rule_and_its_sibling(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    a = containers["a"]
    assert (
        sh(a, "cp /usr/bin/true /tmp/t && mkdir -p /tmpx && cp /usr/bin/true /tmpx/t").returncode
        == 0
    )
    ways = {
        "absolute": "/tmp/t",
        "relative": "cd /tmp && ./t",
        "through /var/../tmp": "/var/../tmp/t",
    }
    assert_killed_each(daemon, a, ("identity", "scratch"), ways)
    assert sh(a, "/tmpx/t").returncode == 0
    assert (
        sh(a, "ln -sf /usr/bin/true /tmp/link && /tmp/link").returncode == 0
    )  # runs /usr/bin/true


def test_a_script_whose_interpreter_is_named(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    c = containers["c"]
    setup = (
        "printf '#!/usr/bin/python3\\nprint(1)\\n' > /s1 && "
        "printf '#!/usr/bin/env python3\\nprint(1)\\n' > /s2 && chmod +x /s1 /s2"
    )
    assert sh(c, setup).returncode == 0
    ways = {
        "#!/usr/bin/python3": "/s1",
        "#!/usr/bin/env python3": "/s2",
        "python3.11": "python3.11 -V",
    }
    assert_killed_each(daemon, c, ("no-python", "python"), ways)
    assert sh(c, "printf '#!/bin/sh\\necho ok\\n' > /s3 && chmod +x /s3 && /s3").stdout == "ok\n"


def test_a_failed_exec_is_not_counted(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    a = containers["a"]
    before = blocked(daemon, "identity", "whoami")
    code = "import os\ntry:\n os.execv('/nonexistent/whoami', ['x'])\n"
    code += "except OSError as e:\n print(e.errno)"
    result = a.exec(["python3", "-c", code])
    assert (result.returncode, result.stdout) == (0, "2\n")  # ENOENT, and the caller goes on
    assert blocked(daemon, "identity", "whoami") == before


def test_a_renamed_file_is_still_the_named_file(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    # Last: it moves whoami away for good.
    ways = {"renamed": "mv /usr/bin/whoami /usr/local/bin/renamed && /usr/local/bin/renamed"}
    assert_killed_each(daemon, containers["a"], ("identity", "whoami"), ways)
