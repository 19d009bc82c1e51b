"""The control messages: as strict as pydantic's extra="forbid", and the JSON scripts read."""

from __future__ import annotations

import json

import pytest

from enforcer.service.protocol import (
    ContainerInfo,
    EventsArguments,
    ProgramCount,
    ProtocolError,
    dump,
    parse,
)

INFO = {
    "id": "c" * 64,
    "name": "web-1",
    "image": "nginx",
    "runtime": "podman",
    "labels": {"app": "web"},
    "cgroup_path": "/machine.slice/libpod-c.scope",
    "cgroup_id": None,
    "pid": 4242,
    "policies": ["web"],
}


def test_a_message_survives_the_wire_unchanged() -> None:
    info = parse(ContainerInfo, json.loads(json.dumps(INFO)))

    assert info.policies == ("web",) and info.cgroup_id is None
    assert json.dumps(dump(info)) == json.dumps(INFO)


def test_an_empty_caller_is_left_out() -> None:
    plain = {"program": "/usr/bin/nc", "blocked": 1, "audited": 0}
    called = plain | {"caller": "/usr/sbin/nginx"}

    assert dump(parse(ProgramCount, plain)) == plain
    assert dump(parse(ProgramCount, called)) == called


def test_what_python_builds_is_accepted_as_its_json() -> None:
    assert parse(ContainerInfo, INFO | {"policies": ("web", "db")}).policies == ("web", "db")


@pytest.mark.parametrize(
    ("changed", "complaint"),
    [
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"pid": "4242"}, "at pid: expected int"),
        ({"pid": True}, "at pid: expected int"),
        ({"policies": "web"}, "at policies: expected a list"),
        ({"labels": {"app": 1}}, r"at labels\.app: expected str"),
        ({"labels": ["app"]}, "at labels: expected an object"),
    ],
)
def test_a_message_that_does_not_fit_says_where(changed: dict[str, object], complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        parse(ContainerInfo, INFO | changed)


def test_a_missing_field_is_named() -> None:
    partial = {key: value for key, value in INFO.items() if key != "runtime"}

    with pytest.raises(ProtocolError, match="at runtime: missing"):
        parse(ContainerInfo, partial)


def test_arguments_take_their_defaults() -> None:
    assert parse(EventsArguments, {}) == EventsArguments(follow=False)
    assert parse(EventsArguments, {"follow": True}).follow
    with pytest.raises(ProtocolError, match="top level: expected an object"):
        parse(EventsArguments, ["follow"])
