"""The control socket's commands: one small method each, looked up in a table.

Runs on the socket's thread (service/control.py): every answer is a
protocol model dumped to JSON, or, for a stream, an iterator of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from enforcer.service.control import UnknownCommandError
from enforcer.service.protocol import (
    EventsArguments,
    JsonObject,
    NoArguments,
    ReloadReply,
    StatusReply,
    dump,
    parse,
)
from enforcer.service.reports import Reports

A = TypeVar("A")


class RunningDaemon(Protocol):
    """What the commands ask of the daemon while it runs, besides the reports."""

    def status(self) -> StatusReply: ...
    def stopping(self) -> bool: ...
    def request_reload(self) -> None: ...


class _Runs(Protocol):
    def run(self, arguments: JsonObject) -> JsonObject | Iterator[JsonObject]: ...


@dataclass(frozen=True)
class _Command(Generic[A]):
    """A command's arguments model and the method that answers it."""

    arguments: type[A]
    answer: Callable[[A], JsonObject | Iterator[JsonObject]]

    def run(self, arguments: JsonObject) -> JsonObject | Iterator[JsonObject]:
        return self.answer(parse(self.arguments, arguments))


class Commands:
    """Answers control-socket requests from the reports and the running daemon."""

    def __init__(self, reports: Reports, daemon: RunningDaemon) -> None:
        self._reports = reports
        self._daemon = daemon
        self._table: dict[str, _Runs] = {
            "stats": _Command(NoArguments, self._stats),
            "status": _Command(NoArguments, self._status),
            "containers": _Command(NoArguments, self._containers),
            "events": _Command(EventsArguments, self._events),
            "reload": _Command(NoArguments, self._reload),
        }

    def handle(self, command: str, arguments: JsonObject) -> JsonObject | Iterator[JsonObject]:
        """The reply to one request; a ProtocolError when its arguments do not fit."""
        entry = self._table.get(command)
        if entry is None:
            raise UnknownCommandError(
                f"unknown command {command!r}; this daemon knows {', '.join(self._table)}"
            )
        return entry.run(arguments)

    def _stats(self, _: NoArguments) -> JsonObject:
        return dump(self._reports.stats())

    def _status(self, _: NoArguments) -> JsonObject:
        return dump(self._daemon.status())

    def _containers(self, _: NoArguments) -> JsonObject:
        return dump(self._reports.containers())

    def _events(self, arguments: EventsArguments) -> JsonObject | Iterator[JsonObject]:
        if arguments.follow:
            return (dump(event) for event in self._reports.follow(self._daemon.stopping))
        return dump(self._reports.events())

    def _reload(self, _: NoArguments) -> JsonObject:
        self._daemon.request_reload()
        return dump(ReloadReply(reloading=True))
