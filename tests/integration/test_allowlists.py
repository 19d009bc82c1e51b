"""Allowlists in real Debian 12 containers (podman): only what a policy allows runs.

One daemon runs three policies before any container starts, so each
container's entrypoint is itself held and decided against its allowlist:
- `locked` (container `a`): default kill, allows sleep, sh, id, cp and cat,
  and kills cat by name (a kill rule beats an allow);
- `lenient-b` plus `no-id-b` (container `b`): an allowlist that allows id,
  and a denylist that kills it: the strictest wins;
- `audit-c` (container `c`): the same allowlist in audit mode.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, start_daemon
from podman_helpers import PodmanContainer, podman_container
from podman_helpers import run_foreground as podman_run_foreground

pytestmark = [pytest.mark.root, pytest.mark.podman]

KILLED = 137
TAG = secrets.token_hex(4)
TOOLS_RULE = """\
    - name: tools
      action: allow
      match:
        paths: [/usr/bin/sleep, /bin/sh, /usr/bin/id, /usr/bin/cp, /usr/bin/cat]
"""


def allowlist(name: str, containers: str, extra_rules: str = "", mode: str = "enforce") -> str:
    """A policy whose default is kill, allowing the tools above, in YAML."""
    return f"""\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: {name}
spec:
  mode: {mode}
  selector:
    containers:
      names: [{containers}]
  default: kill
  rules:
{TOOLS_RULE}{extra_rules}"""


NO_CAT = """\
    - name: no-cat
      action: kill
      match:
        names: [cat]
"""
NO_ID = f"""\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: no-id-b
spec:
  selector:
    containers:
      names: ["enforcer-allow-b-{TAG}"]
  rules:
    - name: no-id
      action: kill
      match:
        names: [id]
"""
LOCKED = f'"enforcer-allow-a-{TAG}", "enforcer-allow-ro-{TAG}", "enforcer-allow-new-{TAG}-*"'
POLICIES = "---\n".join(
    [
        allowlist("locked", LOCKED, NO_CAT),
        allowlist("lenient-b", f'"enforcer-allow-b-{TAG}"'),
        NO_ID,
        allowlist("audit-c", f'"enforcer-allow-c-{TAG}"', mode="audit"),
    ]
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    workdir = tmp_path_factory.mktemp("allowlists")
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "allowlists.yaml").write_text(POLICIES)
    running = start_daemon(policies, workdir)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


@pytest.fixture(scope="module")
def containers(daemon: RunningDaemon, debian_image: str) -> Iterator[dict[str, PodmanContainer]]:
    # Started with the daemon running: each entrypoint (sleep) is decided as it starts.
    with (
        podman_container(debian_image, name=f"enforcer-allow-a-{TAG}", args=("sleep", "3600")) as a,
        podman_container(debian_image, name=f"enforcer-allow-b-{TAG}", args=("sleep", "3600")) as b,
        podman_container(debian_image, name=f"enforcer-allow-c-{TAG}", args=("sleep", "3600")) as c,
        podman_container(
            debian_image,
            name=f"enforcer-allow-ro-{TAG}",
            args=("sleep", "3600"),
            options=("--read-only",),
        ) as ro,  # fmt: skip
    ):
        yield {"a": a, "b": b, "c": c, "ro": ro}


def sh(container: PodmanContainer, script: str) -> subprocess.CompletedProcess[str]:
    return container.exec(["sh", "-c", script])


def counts(daemon: RunningDaemon, policy: str, rule: str) -> tuple[int, int]:
    """(blocked, audited) of one rule, from `enforcer stats` through the socket."""
    found = next((p for p in daemon.ask("stats")["policies"] if p["name"] == policy), None)
    rules: dict[str, Any] = {r["name"]: r for r in found["rules"]} if found else {}
    row = rules.get(rule, {})
    return int(row.get("blocked", 0)), int(row.get("audited", 0))


def test_the_entrypoint_and_the_allowed_tools_run(containers: dict[str, PodmanContainer]) -> None:
    a = containers["a"]
    assert a.inspect()["State"]["Running"] is True  # type: ignore[index]
    assert sh(a, "id -u").stdout == "0\n"


def test_what_the_allowlist_does_not_name_is_killed(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    a = containers["a"]
    before = counts(daemon, "locked", "(default)")
    ways = {
        "an unlisted binary": "/usr/bin/whoami",
        # A copy is another file, wherever it lies and whatever it is called.
        "an allowed binary copied": "cp /usr/bin/id /tmp/idcopy && /tmp/idcopy",
        # Allow rules name files, not names.
        "a forbidden binary, an allowed name": "cp /usr/bin/whoami /tmp/id && /tmp/id",
    }
    for way, script in ways.items():
        result = sh(a, script)
        assert result.returncode == KILLED, f"{way}: {result}"
    assert counts(daemon, "locked", "(default)") == (before[0] + len(ways), before[1])
    events = [e for e in daemon.ask("events")["events"] if e["rule"] == "(default)"]
    assert {"/usr/bin/whoami", "/tmp/idcopy", "/tmp/id"} <= {e["filename"] for e in events}


def test_a_kill_rule_overrides_an_allow(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    before = counts(daemon, "locked", "no-cat")
    assert sh(containers["a"], "cat /etc/hostname").returncode == KILLED
    assert counts(daemon, "locked", "no-cat") == (before[0] + 1, before[1])


def test_two_policies_on_one_container_the_strictest_wins(
    containers: dict[str, PodmanContainer],
) -> None:
    b = containers["b"]
    assert sh(b, "id -u").returncode == KILLED  # lenient-b allows id, no-id-b kills it
    assert sh(b, "cp /etc/hostname /tmp/h").returncode == 0  # both let cp run
    assert sh(b, "/usr/bin/whoami").returncode == KILLED  # lenient-b's default


def test_audit_mode_kills_nothing_and_counts_the_would_be_kills(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    before = counts(daemon, "audit-c", "(default)")
    assert sh(containers["c"], "/usr/bin/whoami").stdout == "root\n"
    assert counts(daemon, "audit-c", "(default)") == (before[0], before[1] + 1)


def test_a_new_container_whose_entrypoint_is_not_allowed_is_killed_every_time(
    daemon: RunningDaemon, debian_image: str
) -> None:
    before = counts(daemon, "locked", "(default)")
    outcomes = [
        podman_run_foreground(debian_image, ["whoami"], name=f"enforcer-allow-new-{TAG}-{n}")
        for n in range(20)
    ]
    assert [o.returncode for o in outcomes] == [KILLED] * 20
    assert all(o.stdout == "" for o in outcomes)
    assert counts(daemon, "locked", "(default)")[0] == before[0] + 20


def test_status_warns_where_the_container_can_overwrite_an_allowed_file(
    daemon: RunningDaemon, containers: dict[str, PodmanContainer]
) -> None:
    warnings = daemon.ask("status")["warnings"]
    about = {
        c: [w for w in warnings if f"container {containers[c].id[:12]}" in w] for c in containers
    }
    assert any("allows /usr/bin/sleep" in w and "read-only root" in w for w in about["a"])
    assert about["ro"] == []  # its root filesystem is read-only
    shown = daemon.cli("status")
    assert "warning: policy locked allows /usr/bin/sleep" in shown.stderr


def test_the_host_is_untouched(daemon: RunningDaemon, tmp_path: Path) -> None:
    result = subprocess.run(["whoami"], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "root"
