"""The daemon's Prometheus endpoint and JSON-lines event log, end to end."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import host_policy, start_daemon
from prometheus_client.parser import text_string_to_metric_families

from tests.support.wait import eventually

pytestmark = pytest.mark.root

WAIT_S = 10.0


def test_metrics_and_event_log_report_a_kill(tmp_path: Path, program: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy(program, name="observed"))
    events = tmp_path / "events.jsonl"
    daemon = start_daemon(
        policies, tmp_path, "--metrics", "127.0.0.1:0", "--event-log", str(events)
    )
    try:
        assert subprocess.run([str(program), "/a", "/b"], check=False).returncode == -9
        # Logged once the endpoint listens, which may be just after the socket does.
        url = eventually(
            lambda: re.search(r"metrics on (http://\S+)", daemon.log.read_text()),
            WAIT_S,
            what=f"the metrics endpoint in the daemon's log {daemon.log}",
        )
        eventually(
            lambda: events.exists() and events.read_text(), WAIT_S, what=f"an event in {events}"
        )
        logged = json.loads(events.read_text().splitlines()[0])
        assert (logged["policy"], logged["rule"], logged["action"]) == (
            "observed",
            "forbidden",
            "kill",
        )
        assert logged["argv"][1:] == ["/a", "/b"]

        scraped = urllib.request.urlopen(url.group(1), timeout=10).read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
        }
        labels = (("container", "host"), ("policy", "observed"), ("rule", "forbidden"))
        assert samples[("enforcer_execs_blocked_total", labels)] == 1
        assert samples[("enforcer_policies", (("state", "ok"),))] == 1
    finally:
        daemon.stop()
