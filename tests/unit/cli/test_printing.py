"""What `enforcer stats`, `status` and `events` print for people, from the typed replies."""

from __future__ import annotations

import pytest

from enforcer.cli import printing
from enforcer.service.protocol import (
    DenialEvent,
    Persistence,
    SignalErrors,
    StatsReply,
    StatusReply,
    parse,
)

WEB_ID = "d" * 64


def program(name: str, blocked: int, caller: str = "") -> dict[str, object]:
    row: dict[str, object] = {"program": name, "blocked": blocked, "audited": 0}
    return row | {"caller": caller} if caller else row


STATS = {
    "policies": [
        {
            "name": "web",
            "blocked": 3,
            "audited": 0,
            "rules": [
                {
                    "name": "no-shell",
                    "blocked": 3,
                    "audited": 0,
                    "containers": [
                        {
                            "id": WEB_ID,
                            "name": "web-1",
                            "cgroup_id": 101,
                            "blocked": 3,
                            "audited": 0,
                            "programs": [
                                program("/bin/sh", 2, caller="/usr/sbin/nginx"),
                                program("/bin/nc", 1),
                            ],
                        }
                    ],
                }
            ],
        },
        {"name": "idle", "blocked": 0, "audited": 0, "rules": []},
    ]
}


def test_stats_rows_name_the_container_and_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    printing.print_stats(parse(StatsReply, STATS))

    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["POLICY", "RULE", "CONTAINER", "PROGRAM", "CALLER", "BLOCKED", "AUDITED"]
    short = WEB_ID[:12]
    assert lines[1:] == [
        ["web", "no-shell", short, "(web-1)", "/bin/sh", "/usr/sbin/nginx", "2", "0"],
        ["web", "no-shell", short, "(web-1)", "/bin/nc", "-", "1", "0"],
        ["idle", "-", "-", "-", "-", "0", "0"],
    ]


def test_an_event_line_says_how_it_was_invoked(capsys: pytest.CaptureFixture[str]) -> None:
    event = DenialEvent(
        time=0.0, policy="web", rule="no-shell", action="kill", container_id="host",
        container_name="", cgroup_id=1, pid=77, uid=0, comm="sh", filename="/bin/dash",
        target="/bin/sh", argv=("sh", "-c", "id"), invoked="/bin/sh", caller="/usr/sbin/nginx",
    )  # fmt: skip

    printing.print_event(event)

    line = capsys.readouterr().out.rstrip("\n")
    assert line.split()[2:] == [
        "kill", "web/no-shell", "host", "77", "/bin/dash", "(invoked", "as", "/bin/sh)", "-c",
        "id", "(called", "by", "/usr/sbin/nginx)",
    ]  # fmt: skip


def test_status_prints_state_policies_and_problems(capsys: pytest.CaptureFixture[str]) -> None:
    status = StatusReply(
        enforcing=False, backend="lsm", backend_reason="BPF LSM is enabled", kernel="6.8.0",
        uptime_seconds=12.5, event_drops=0, full_maps={"held_lost": 2, "cgroups_unplaced": 0},
        signal_errors=SignalErrors(kill=0, stop=0), policies=(), warnings=("w",),
        problems=("p",), enforce_error="too many rules", policy_files_with_problems=1,
        containers_known=4, classify_queued=0,
        persistence=Persistence(generation=1, outlives_daemon=False, keep_on_exit=False),
    )  # fmt: skip

    printing.print_status(status)

    captured = capsys.readouterr()
    assert captured.out.splitlines()[:2] == [
        "NOT enforcing  backend=lsm (BPF LSM is enabled)",
        "kernel 6.8.0, up 12.5 s, 4 containers known, 0 events dropped",
    ]
    assert captured.err.splitlines() == [
        "problem: p",
        "warning: w",
        "maps were full: held_lost 2",
        "not applied, the policies above stay in force: too many rules",
    ]
