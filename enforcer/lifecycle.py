"""Containers that start and stop while enforcer runs, from the kernel's cgroup events.

While the daemon runs, every new cgroup starts *pending* in the kernel: an
exec there is stopped (SIGSTOP) and parked in the held map. This module
settles them:

- A parked exec of a program that no rule of any policy names goes on at
  once. Container runtimes exec their own helpers in the new cgroup while
  they set it up, and must not wait for metadata they are busy producing.
- Every new cgroup is identified on a worker thread (a container of which
  runtime, with which name, image and labels; or a host cgroup) and placed
  under its policies; asking a runtime for metadata can take a while, and the
  event loop must keep answering meanwhile.
- Once its cgroup is placed, a parked exec is decided exactly as the kernel
  would have decided it, and killed or let go.

A new container's entrypoint therefore never runs unchecked.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
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


class HeldExecLike(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def cgroup_id(self) -> int: ...
    @property
    def filename(self) -> str: ...
    @property
    def name(self) -> str: ...


class HeldExecs(Protocol):
    """What settling needs of the loaded program (bpf_program.ExecProgram)."""

    def held_execs(self) -> Sequence[HeldExecLike]: ...
    def release_held(self, pid: int) -> None: ...
    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None: ...


class Lifecycle:
    def __init__(
        self,
        engine: Engine,
        program: HeldExecs,
        identify: Identify,
        report: Callable[[list[Denial]], None],
    ) -> None:
        self._engine = engine
        self._program = program
        self._identify = identify
        self._report = report
        self._paths: dict[int, str] = {}
        self._settling = threading.Lock()
        self._jobs: queue.Queue[tuple[int, int | None] | None] = queue.Queue()
        self._queued: set[tuple[int, int | None]] = set()
        self._worker = threading.Thread(target=self._work, name="classify", daemon=True)
        self._worker.start()

    def cgroup_created(self, cgroup_id: int, path: str) -> None:
        self._paths[cgroup_id] = path
        self._queue(cgroup_id, None)

    def _queue(self, cgroup_id: int, pid: int | None) -> None:
        if (cgroup_id, pid) not in self._queued:
            self._queued.add((cgroup_id, pid))
            self._jobs.put((cgroup_id, pid))

    def cgroup_removed(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)
        self._engine.forget_cgroup(cgroup_id)

    def close(self, release_undecided: bool = True) -> list[Denial]:
        """Stops the worker and settles what it can; the rest is let go, or left held.

        Left held when the program stays in the kernel after the daemon: the
        next daemon decides those execs.
        """
        self._jobs.put(None)
        self._worker.join()
        return self.settle_held(final=release_undecided)

    def settle_held(self, final: bool = False) -> list[Denial]:
        """Decides every parked exec that can be decided now; returns the hits."""
        denials: list[Denial] = []
        with self._settling:
            for held in self._program.held_execs():
                try:
                    denials += self._settle(held, final)
                except (OSError, EnforcerError) as e:
                    # The process is stopped: never leave it so. Fail closed.
                    log.error("cannot decide held exec %s (pid %d): %s; killing it",
                              held.filename, held.pid, e)  # fmt: skip
                    self._let_go(held.pid, signal.SIGKILL)
        return denials

    def _settle(self, held: HeldExecLike, final: bool) -> list[Denial]:
        engine = self._engine
        set_number = engine.set_of(held.cgroup_id)
        log.debug(
            "held %r pid %d in cgroup %d: set %s",
            held.filename,
            held.pid,
            held.cgroup_id,
            set_number,
        )
        if set_number is None:
            if final or not engine.any_rule.names(held.filename, held.name):
                self._let_go(held.pid, signal.SIGCONT)
            else:
                self._queue(held.cgroup_id, held.pid)
            return []
        if engine.metadata_unknown(held.cgroup_id) and engine.any_rule.names(
            held.filename, held.name
        ):
            log.error("killed %s (pid %d): a policy names it and the container's runtime did not "
                      "say whether that policy selects it", held.filename, held.pid)  # fmt: skip
            self._let_go(held.pid, signal.SIGKILL)
            return []
        compiled = engine.compiled
        hits = decide(compiled.maps, set_number, held.filename, held.name) if compiled else ()
        self._program.add_counts(held.cgroup_id, hits)
        comm, uid = _comm_and_uid(held.pid)
        argv = _argv(held.pid)  # stopped after its exec: /proc shows the new program's
        self._let_go(held.pid, signal.SIGKILL if kills(hits) else signal.SIGCONT)
        return [
            engine.record(hit, cgroup_id=held.cgroup_id, pid=held.pid, uid=uid, comm=comm,
                          filename=held.filename, argv=argv)
            for hit in hits
        ]  # fmt: skip

    def _let_go(self, pid: int, signum: int) -> None:
        log.debug("let go of pid %d with signal %d", pid, signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            log.debug("held pid %d is gone already", pid)
        self._program.release_held(pid)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._queued.discard(job)
            cgroup_id, pid = job
            try:
                self._place(cgroup_id, pid)
                self._report(self.settle_held())
            except (FileNotFoundError, ProcessLookupError):
                log.debug("cgroup %d or pid %s went away before it was placed", cgroup_id, pid)
            except Exception:
                log.exception("failed to place cgroup %d", cgroup_id)
                if pid is not None:  # fail closed: it is stopped, and named by a rule
                    self._let_go(pid, signal.SIGKILL)

    def _place(self, cgroup_id: int, pid: int | None) -> None:
        engine = self._engine
        if engine.set_of(cgroup_id) is not None:
            return
        path = self._paths.get(cgroup_id) or (cgroup_v2_path_of_pid(pid) if pid else None)
        if path is None:
            return
        container = self._identify(path, pid)
        log.debug("cgroup %d (%s): %s", cgroup_id, path, container.id if container else "host")
        if container is None:
            engine.place_host(cgroup_id)
        elif engine.needs_pid() and container.pid is None:
            return  # namespace selectors need a process: placed at its first held exec
        else:
            engine.place(container)


def _argv(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1])


def _comm_and_uid(pid: int) -> tuple[str, int]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "", 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return fields.get("Name", "").strip(), int(fields.get("Uid", "0").split()[0])
