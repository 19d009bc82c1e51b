"""`enforcer stats|status|containers|events --json` print the daemon's reply byte for byte.

The CLI parses each reply into its model and dumps it again: what scripts
read must not change on the way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_printing import STATS

from enforcer.cli.main import main
from enforcer.service.control import ControlServer
from enforcer.service.protocol import JsonObject

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the server chowns its socket to root")

DENIAL = {
    "time": 1700000000.25, "policy": "web", "rule": "no-shell", "action": "kill",
    "container_id": "host", "container_name": "", "cgroup_id": 1, "pid": 77, "uid": 0,
    "comm": "sh", "filename": "/bin/dash", "target": "/bin/sh", "argv": ["sh", "-c", "id"],
    "invoked": "/bin/sh", "caller": "",
}  # fmt: skip
CONTAINER = {
    "id": "e" * 64, "name": "web-1", "image": "nginx", "runtime": "podman",
    "labels": {"app": "web"}, "cgroup_path": "/web", "cgroup_id": 101, "pid": None,
    "policies": ["web"],
}  # fmt: skip
STATUS = {
    "enforcing": True, "backend": "lsm", "backend_reason": "BPF LSM is enabled",
    "kernel": "6.8.0", "uptime_seconds": 3.0, "event_drops": 0,
    "full_maps": {"cgroups_unplaced": 0}, "signal_errors": {"kill": 0, "stop": 0},
    "policies": [{
        "name": "web", "mode": "enforce", "source": "/etc/enforcer/policies/web.yaml",
        "rules": 1, "host": False, "containers": [{"id": "e" * 64, "name": "web-1"}],
        "unresolved": [],
    }],
    "warnings": [], "problems": [], "enforce_error": None, "policy_files_with_problems": 0,
    "containers_known": 1, "classify_queued": 0,
    "persistence": {"generation": 2, "outlives_daemon": True, "keep_on_exit": False},
}  # fmt: skip
REPLIES: dict[str, JsonObject] = {
    "stats": STATS,
    "status": STATUS,
    "containers": {"containers": [CONTAINER]},
    "events": {"events": [DENIAL]},
}


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    def answer(command: str, _arguments: JsonObject) -> JsonObject:
        return REPLIES[command]

    server = ControlServer(tmp_path / "run" / "enforcer.sock", answer)
    server.start()
    yield server.path
    server.close()


@pytest.mark.parametrize(
    ("command", "printed"),
    [
        ("stats", json.dumps(STATS, indent=2)),
        ("status", json.dumps(STATUS, indent=2)),
        ("containers", json.dumps([CONTAINER], indent=2)),
        ("events", json.dumps(DENIAL)),
    ],
)
def test_json_is_the_reply_unchanged(socket_path: Path, command: str, printed: str) -> None:
    result = CliRunner().invoke(main, [command, "--json", "--socket", str(socket_path)])

    assert result.exit_code == 0, result.output
    assert result.output == printed + "\n"
