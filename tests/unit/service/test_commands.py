"""The control socket's command table, over a fake engine: no kernel, no root."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from enforcer.bpf.abi import Action
from enforcer.bpf.records import CounterKey
from enforcer.containers.model import Container
from enforcer.enforce.compiler import compile_policies
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Snapshot
from enforcer.enforce.ids import CounterName
from enforcer.policy.loader import LoadedPolicy
from enforcer.policy.model import ExecPolicy
from enforcer.service.commands import Commands, RunningDaemon
from enforcer.service.control import UnknownCommandError
from enforcer.service.protocol import (
    ContainersReply,
    EventsReply,
    JsonObject,
    Persistence,
    ProtocolError,
    ReloadReply,
    StatsReply,
    StatusReply,
    parse,
)
from enforcer.service.reports import CounterReader, EngineState, Reports

WEB = Container(
    id="b" * 64, runtime="podman", name="web-1", image="nginx", cgroup_ids=(101,), pid=4242
)
POLICY = ExecPolicy.model_validate(
    {
        "apiVersion": "enforcer/v1",
        "kind": "ExecPolicy",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"containers": {"names": ["web-*"]}},
            "rules": [{"name": "no-nc", "match": {"names": ["nc"]}}],
        },
    }
)
KILLED = CounterKey(cgroup_id=101, policy_id=1, rule_id=1, target_id=1, action=Action.KILL)
DENIAL = Denial(
    time=1700000000.25,
    policy="web",
    rule="no-nc",
    action="kill",
    container_id=WEB.id,
    container_name=WEB.name,
    cgroup_id=101,
    pid=77,
    uid=0,
    comm="sh",
    filename="/usr/bin/nc",
    target="nc",
    argv=("nc", "-l"),
)


@dataclass
class FakeEngine:
    """An EngineState: one policy selecting one container, and the denials given."""

    recent: list[Denial] = field(default_factory=list)
    started: float = 0.0
    loaded: tuple[LoadedPolicy, ...] = (LoadedPolicy(POLICY, Path("policies/web.yaml"), 1),)

    def snapshot(self) -> Snapshot:
        compiled = compile_policies([p.policy for p in self.loaded], [WEB])
        return Snapshot(self.loaded, (), (WEB,), compiled, None)

    def counter_names(self, keys: Iterable[CounterKey]) -> dict[CounterKey, CounterName]:
        return {key: CounterName("web", "no-nc", "nc") for key in keys}

    def selections(self) -> list[tuple[Container, list[str]]]:
        return [(WEB, ["web"])]

    def owner(self, cgroup_id: int) -> tuple[str, str]:
        return (WEB.id, WEB.name) if cgroup_id in WEB.cgroup_ids else ("host", "")

    def denials_after(self, seen: int, timeout: float) -> tuple[list[Denial], int]:
        return self.recent[seen:], len(self.recent)


@dataclass
class FakeCounters:
    counts: dict[CounterKey, int] = field(default_factory=lambda: {KILLED: 3})

    def counters(self) -> dict[CounterKey, int]:
        return self.counts

    def event_drops(self) -> int:
        return 2

    def signal_errors(self) -> tuple[int, int]:
        return 0, 1

    def full_maps(self) -> dict[str, int]:
        return {"held_lost": 0}


@dataclass
class FakeDaemon:
    """A RunningDaemon: its status from the reports, a reload request remembered."""

    reports: Reports
    reload_requested: bool = False
    stop_after: int = 1  # `stopping()` calls answered False before it says True

    def status(self) -> StatusReply:
        persistence = Persistence(generation=3, outlives_daemon=True, keep_on_exit=False)
        return self.reports.status("lsm", "BPF LSM is enabled", 0, persistence)

    def stopping(self) -> bool:
        self.stop_after -= 1
        return self.stop_after < 0

    def request_reload(self) -> None:
        self.reload_requested = True


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(recent=[DENIAL])


@pytest.fixture
def daemon(engine: FakeEngine) -> FakeDaemon:
    return FakeDaemon(Reports(engine, FakeCounters()))


@pytest.fixture
def commands(daemon: FakeDaemon) -> Commands:
    return Commands(daemon.reports, daemon)


def reply(commands: Commands, command: str, **arguments: object) -> JsonObject:
    answer = commands.handle(command, dict(arguments))
    assert isinstance(answer, dict)
    # What goes on the wire: it must survive JSON.
    decoded: JsonObject = json.loads(json.dumps(answer))
    return decoded


def test_the_fakes_are_the_real_interfaces(daemon: FakeDaemon, engine: FakeEngine) -> None:
    # mypy checks the assignments: the test doubles are the real interfaces.
    checked: tuple[EngineState, CounterReader, RunningDaemon] = (engine, FakeCounters(), daemon)
    assert checked


def test_unknown_command_lists_the_commands(commands: Commands) -> None:
    with pytest.raises(UnknownCommandError) as caught:
        commands.handle("statz", {})

    assert "'statz'" in str(caught.value)
    assert "stats, status, containers, events, reload" in str(caught.value)


def test_stats_nests_counts_by_policy_rule_container_program(commands: Commands) -> None:
    stats = parse(StatsReply, reply(commands, "stats"))

    (policy,) = stats.policies
    assert (policy.name, policy.blocked, policy.audited) == ("web", 3, 0)
    (container,) = policy.rules[0].containers
    assert (container.id, container.name, container.cgroup_id) == (WEB.id, "web-1", 101)
    assert [(p.program, p.blocked) for p in container.programs] == [("nc", 3)]


def test_stats_json_keeps_its_keys(commands: Commands) -> None:
    wire = json.dumps(reply(commands, "stats"))

    # No "caller" key where the rule names none: scripts read the rows as they were.
    assert '"programs": [{"program": "nc", "blocked": 3, "audited": 0}]' in wire
    assert wire.startswith('{"policies": [{"name": "web", "blocked": 3, "audited": 0, "rules"')


def test_status_says_what_is_enforced(commands: Commands) -> None:
    answer = reply(commands, "status")
    status = parse(StatusReply, answer)

    assert status.enforcing
    assert (status.backend, status.event_drops) == ("lsm", 2)
    assert (status.signal_errors.kill, status.signal_errors.stop) == (0, 1)
    (policy,) = status.policies
    assert (policy.name, policy.source, policy.rules) == ("web", "policies/web.yaml", 1)
    assert [c.name for c in policy.containers] == ["web-1"]
    assert status.persistence.generation == 3
    assert list(answer)[-3:] == ["containers_known", "classify_queued", "persistence"]


def test_containers_lists_each_with_its_policies(commands: Commands) -> None:
    (found,) = parse(ContainersReply, reply(commands, "containers")).containers

    assert (found.id, found.image, found.cgroup_id, found.pid) == (WEB.id, "nginx", 101, 4242)
    assert found.policies == ("web",)


def test_events_are_the_denials_as_recorded(commands: Commands) -> None:
    answer = reply(commands, "events")
    (event,) = parse(EventsReply, answer).events

    assert answer["events"] == [json.loads(json.dumps(DENIAL.to_json()))]
    assert (event.policy, event.argv, event.invoked) == ("web", ("nc", "-l"), "")


def test_events_follow_streams_until_the_daemon_stops(commands: Commands) -> None:
    answer = commands.handle("events", {"follow": True})

    assert isinstance(answer, Iterator)
    assert [event["pid"] for event in answer] == [77]


def test_reload_is_requested(commands: Commands, daemon: FakeDaemon) -> None:
    assert parse(ReloadReply, reply(commands, "reload")) == ReloadReply(reloading=True)
    assert daemon.reload_requested


@pytest.mark.parametrize(
    ("command", "arguments", "complaint"),
    [
        ("events", {"follow": "yes"}, "follow: expected bool"),
        ("events", {"folow": True}, "unknown field 'folow'"),
        ("stats", {"policy": "web"}, "unknown field 'policy'"),
    ],
)
def test_malformed_arguments_are_refused(
    commands: Commands, command: str, arguments: JsonObject, complaint: str
) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        commands.handle(command, arguments)
