"""Containers that start and stop while enforcer runs, from the kernel's cgroup events.

While the daemon runs, every new cgroup starts *pending* in the kernel: an
exec there is stopped (SIGSTOP) and parked in the held map. This module
settles pending cgroups: it identifies each one (a container of which
runtime, with which metadata, or a host cgroup), places it under its policies,
and then decides every parked exec exactly as the kernel would have, killing
or continuing it. A new container's entrypoint is thus never run unchecked.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from enforcer.compiler import Hit
from enforcer.containers.cgroup import cgroup_v2_path_of_pid
from enforcer.containers.model import Container
from enforcer.decision import decide, kills
from enforcer.engine import Denial, Engine
from enforcer.errors import EnforcerError

log = logging.getLogger(__name__)

Identify = Callable[[str, int | None], Container | None]


class HeldExecs(Protocol):
    """What settling needs of the loaded program (bpf_program.ExecProgram)."""

    def held_execs(self) -> Sequence[HeldExecLike]: ...
    def release_held(self, pid: int) -> None: ...
    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None: ...


class HeldExecLike(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def cgroup_id(self) -> int: ...
    @property
    def filename(self) -> str: ...
    @property
    def name(self) -> str: ...


class Lifecycle:
    def __init__(
        self,
        engine: Engine,
        program: HeldExecs,
        identify: Identify,
        needs_pid: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._program = program
        self._identify = identify
        self._needs_pid = needs_pid
        self._paths: dict[int, str] = {}

    def cgroup_created(self, cgroup_id: int, path: str) -> list[Denial]:
        """Places a new cgroup at once where its process is not needed to place it."""
        if self._engine.set_of(cgroup_id) is not None:
            return []  # found by a discovery that ran after it was made
        self._paths[cgroup_id] = path
        container = self._identify(path, None)
        if container is None:
            self._engine.place_host(cgroup_id)
        elif not (self._needs_pid() and container.pid is None):
            self._engine.place(container)
        else:
            return []  # namespace selectors need a process: settled at its first exec
        return self.settle_held()

    def cgroup_removed(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)
        self._engine.forget_cgroup(cgroup_id)

    def settle_held(self) -> list[Denial]:
        """Decides every exec the kernel holds; returns the hits as denials."""
        denials: list[Denial] = []
        for held in self._program.held_execs():
            try:
                denials += self._settle(held)
            except (OSError, EnforcerError) as e:
                # The process is stopped: never leave it so. Fail closed.
                log.error(
                    "cannot decide held exec of %s (pid %d): %s; killing it",
                    held.filename,
                    held.pid,
                    e,
                )
                _signal(held.pid, signal.SIGKILL)
                self._program.release_held(held.pid)
        return denials

    def _settle(self, held: HeldExecLike) -> list[Denial]:
        set_number = self._engine.set_of(held.cgroup_id)
        if set_number is None:
            set_number = self._classify(held.cgroup_id, held.pid)
        compiled = self._engine.compiled
        hits = decide(compiled.maps, set_number, held.filename, held.name) if compiled else ()
        self._program.add_counts(held.cgroup_id, hits)
        _signal(held.pid, signal.SIGKILL if kills(hits) else signal.SIGCONT)
        self._program.release_held(held.pid)
        comm, uid = _comm_and_uid(held.pid)
        return [
            self._engine.record(
                hit,
                cgroup_id=held.cgroup_id,
                pid=held.pid,
                uid=uid,
                comm=comm,
                filename=held.filename,
            )
            for hit in hits
        ]

    def _classify(self, cgroup_id: int, pid: int) -> int:
        path = self._paths.get(cgroup_id) or cgroup_v2_path_of_pid(pid)
        container = self._identify(path, pid)
        if container is None:
            self._engine.place_host(cgroup_id)
        else:
            self._engine.place(container)
        return self._engine.set_of(cgroup_id) or 0


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        log.debug("held pid %d is gone already", pid)


def _comm_and_uid(pid: int) -> tuple[str, int]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "", 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return fields.get("Name", "").strip(), int(fields.get("Uid", "0").split()[0])
