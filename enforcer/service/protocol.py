"""The control socket's messages: what the CLI asks and what the daemon answers.

The daemon builds a reply (`service.reports`) and sends `dump(reply)`; the
CLI and the metrics endpoint read its attributes, the CLI after `parse`.
Frozen dataclasses rather than pydantic models: `enforcer status` and
`stats` import this module and must not pay pydantic's import (about 40 ms).
`parse` is as strict as a model with `extra="forbid"`: an unknown key, a
missing one or a value of the wrong type is a `ProtocolError`.

The JSON is what scripts read from `enforcer stats --json` and the others:
keys in field order, and a field marked `OMIT_EMPTY` left out when empty.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from enforcer.errors import EnforcerError

T = TypeVar("T")
JsonObject = dict[str, object]

# Field metadata: the key is left out of the JSON when the value is "".
OMIT_EMPTY: Mapping[str, bool] = {"omit_empty": True}


class ProtocolError(EnforcerError):
    """Raised when a control message does not match its model.

    `path` is where in the message (e.g. "policies[0].rules"), `reason` what is wrong there.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"malformed message at {path or 'top level'}: {reason}")


# Requests: the arguments each command takes besides its name.


@dataclass(frozen=True)
class NoArguments:
    """A command that takes none."""


@dataclass(frozen=True)
class EventsArguments:
    follow: bool = False  # stream each new denial until the client hangs up


# `stats`: counts folded policy -> rule -> container -> program (enforce/stats.py).


@dataclass(frozen=True)
class ProgramCount:
    program: str
    blocked: int
    audited: int
    caller: str = field(default="", metadata=OMIT_EMPTY)  # the calledBy entry that matched


@dataclass(frozen=True)
class ContainerCount:
    id: str  # "host" for the host's cgroups
    name: str
    cgroup_id: int
    blocked: int
    audited: int
    programs: tuple[ProgramCount, ...]


@dataclass(frozen=True)
class RuleCount:
    name: str
    blocked: int
    audited: int
    containers: tuple[ContainerCount, ...]


@dataclass(frozen=True)
class PolicyCount:
    name: str
    blocked: int
    audited: int
    rules: tuple[RuleCount, ...]


@dataclass(frozen=True)
class StatsReply:
    policies: tuple[PolicyCount, ...]


# `containers`


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    runtime: str
    labels: dict[str, str]
    cgroup_path: str
    cgroup_id: int | None
    pid: int | None
    policies: tuple[str, ...]  # the policies that select it


@dataclass(frozen=True)
class ContainersReply:
    containers: tuple[ContainerInfo, ...]


# `status`


@dataclass(frozen=True)
class SelectedContainer:
    id: str
    name: str


@dataclass(frozen=True)
class PolicyStatus:
    name: str
    mode: str
    source: str
    rules: int
    host: bool
    containers: tuple[SelectedContainer, ...]
    unresolved: tuple[str, ...]  # why some selected containers could not be placed


@dataclass(frozen=True)
class SignalErrors:
    kill: int
    stop: int


@dataclass(frozen=True)
class Persistence:
    generation: int
    outlives_daemon: bool
    keep_on_exit: bool


@dataclass(frozen=True)
class StatusReply:
    enforcing: bool
    backend: str
    backend_reason: str
    kernel: str
    uptime_seconds: float
    event_drops: int
    full_maps: dict[str, int]
    signal_errors: SignalErrors
    policies: tuple[PolicyStatus, ...]
    warnings: tuple[str, ...]
    problems: tuple[str, ...]
    enforce_error: str | None
    policy_files_with_problems: int
    containers_known: int
    classify_queued: int
    persistence: Persistence


# `events`: one denial as the CLI, the event log and `enforcer events --json` show it.


@dataclass(frozen=True)
class DenialEvent:
    time: float
    policy: str
    rule: str
    action: str
    container_id: str
    container_name: str
    cgroup_id: int
    pid: int
    uid: int
    comm: str
    filename: str
    target: str
    argv: tuple[str, ...]
    invoked: str
    caller: str


@dataclass(frozen=True)
class EventsReply:
    events: tuple[DenialEvent, ...]


@dataclass(frozen=True)
class ReloadReply:
    reloading: bool


# Not on the socket: what the metrics endpoint reads besides `stats`.


@dataclass(frozen=True)
class PolicyStates:
    """Policies in force as written (ok), in their last good version (stale), files refused."""

    ok: int
    stale: int
    error: int


def dump(message: object) -> JsonObject:
    """The JSON object of a message: its fields in order, tuples as lists."""
    dumped = _dump(message)
    assert isinstance(dumped, dict)  # a message is a dataclass
    return dumped


def _dump(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _dump(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_empty") and getattr(value, f.name) == "")
        }
    if isinstance(value, tuple | list):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    return value


def parse(model: type[T], data: object) -> T:
    """`data` (decoded JSON) as a `model`; a ProtocolError says where it does not fit."""
    return typing.cast(T, _parse(model, data, ""))


def _parse(kind: object, data: object, path: str) -> object:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _parse_fields(kind, data, path)
    if origin in (types.UnionType, typing.Union):
        if data is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _parse(inner, data, path)
    if origin is tuple:
        # A tuple too: what the daemon builds (Denial.to_json) is checked before it is sent.
        items = data if isinstance(data, tuple) else _expect(list, data, path)
        return tuple(_parse(args[0], item, f"{path}[{i}]") for i, item in enumerate(items))
    if origin is dict:
        entries = _expect(dict, data, path)
        return {
            _expect(str, key, path): _parse(args[1], value, f"{path}.{key}")
            for key, value in entries.items()
        }
    return _scalar(kind, data, path)


def _parse_fields(model: type[object], data: object, path: str) -> object:
    entries = _expect(dict, data, path)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(_Dataclass, model))}
    if unknown := sorted(set(entries) - set(fields)):
        raise ProtocolError(path, f"unknown field {unknown[0]!r} (expected {', '.join(fields)})")
    hints = typing.get_type_hints(model)
    values: dict[str, object] = {}
    for name, spec in fields.items():
        where = f"{path}.{name}" if path else name
        if name in entries:
            values[name] = _parse(hints[name], entries[name], where)
        elif spec.default is dataclasses.MISSING:
            raise ProtocolError(where, "missing")
    return model(**values)


def _scalar(kind: object, data: object, path: str) -> object:
    accepted = _SCALARS.get(kind)
    if accepted is None:
        raise TypeError(f"the protocol has no parser for {kind!r}")
    # bool is an int to Python, not to JSON.
    if not isinstance(data, accepted) or (kind is not bool and isinstance(data, bool)):
        raise ProtocolError(path, f"expected {getattr(kind, '__name__', kind)}, got {data!r}")
    return data


def _expect(kind: type[T], data: object, path: str) -> T:
    if not isinstance(data, kind):
        raise ProtocolError(path, f"expected {_JSON_NAMES[kind]}, got {data!r}")
    return data


_JSON_NAMES: dict[type, str] = {list: "a list", dict: "an object", str: "a string"}
# A float may come as an int: json.dumps writes 5.0 as 5.0, but a script may write 5.
_SCALARS: dict[object, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (float, int),
    str: (str,),
}


class _Dataclass(typing.Protocol):
    __dataclass_fields__: typing.ClassVar[dict[str, dataclasses.Field[object]]]
