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

The kernel also parks a #! script's exec where it cannot match the script's
own file (the tracepoint backend, in a set with enforce-mode path rules): the
daemon resolves the script's path in the caller's root and decides it with
its interpreter, at once.

A new container's entrypoint therefore never runs unchecked.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from enforcer.bpf import abi
from enforcer.bpf.abi import ExecFlag
from enforcer.bpf.records import HeldExec, KernelEvent
from enforcer.containers.cgroup import cgroup_dir, cgroup_v2_path_of_pid, find_cgroup2_mount
from enforcer.containers.model import Container
from enforcer.containers.namespaces import in_host_mount_namespace
from enforcer.enforce import proc
from enforcer.enforce.decision import decide, kills
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Engine
from enforcer.enforce.held import held_context, held_files, unstored_held
from enforcer.enforce.resolve import ResolveError, RootView, root_view
from enforcer.enforce.tables import CounterTables, HeldTable
from enforcer.errors import EnforcerError

log = logging.getLogger(__name__)

Identify = Callable[[str, int | None], Container | None]


class Lifecycle:
    """Settles held execs, and places the cgroups they wait on from a worker thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        held: HeldTable,
        counters: CounterTables,
        identify: Identify,
        report: Callable[[list[Denial]], None],
    ) -> None:
        self._engine = engine
        self._placement = engine.placement
        self._held = held
        self._counters = counters
        self._identify = identify
        self._report = report
        self._paths: dict[int, str] = {}
        self._settling = threading.Lock()
        # Cgroups (and held pids) to classify, oldest first, each once. A
        # cgroup removed before its turn leaves the queue, so a mkdir/rmdir
        # loop keeps it no longer than the cgroups that exist.
        self._jobs: OrderedDict[tuple[int, int | None], None] = OrderedDict()
        self._jobs_changed = threading.Condition()
        self._closing = False
        # Held execs the held map had no room for, known from their event.
        self._unstored: dict[int, HeldExec] = {}
        self._worker = threading.Thread(target=self._work, name="classify", daemon=True)
        self._worker.start()

    def cgroup_created(self, cgroup_id: int, path: str) -> None:
        self._paths[cgroup_id] = path
        self._queue(cgroup_id, None)

    def _queue(self, cgroup_id: int, pid: int | None) -> None:
        with self._jobs_changed:
            self._jobs[(cgroup_id, pid)] = None
            self._jobs_changed.notify()

    def queued(self) -> int:
        """How many classifications wait for the worker."""
        with self._jobs_changed:
            return len(self._jobs)

    def cgroup_removed(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)
        with self._jobs_changed:
            self._jobs.pop((cgroup_id, None), None)
        self._placement.forget_cgroup(cgroup_id)

    def exec_held(self, event: KernelEvent) -> list[Denial]:
        """An exec the kernel stopped; settles it with every other one that can be."""
        if event.flags & ExecFlag.UNSTORED:
            with self._settling:
                self._unstored[event.pid] = unstored_held(event)
        return self.settle_held()

    def close(self, release_undecided: bool = True) -> list[Denial]:
        """Stops the worker and settles what it can; the rest is let go, or left held.

        Left held when the program stays in the kernel after the daemon: the
        next daemon decides those execs.
        """
        with self._jobs_changed:
            self._closing = True
            self._jobs_changed.notify()
        self._worker.join()
        return self.settle_held(final=release_undecided)

    def settle_held(self, final: bool = False) -> list[Denial]:
        """Decides every parked exec that can be decided now; returns the hits."""
        denials: list[Denial] = []
        with self._settling:
            for held in [*self._held.held_execs(), *self._unstored.values()]:
                try:
                    denials += self._settle(held, final)
                except (OSError, EnforcerError) as e:
                    # The process is stopped: never leave it so. Fail closed.
                    log.error("cannot decide held exec %s (pid %d): %s; killing it",
                              held.path, held.pid, e)  # fmt: skip
                    self._let_go(held.pid, signal.SIGKILL)
        return denials

    def _settle(self, held: HeldExec, final: bool) -> list[Denial]:
        engine, placement = self._engine, self._placement
        if held.set_id == abi.SET_PENDING:
            set_number = placement.set_of(held.cgroup_id)
        else:  # a script held in a set the kernel knew
            set_number = placement.enforced_set(held.cgroup_id)
        log.debug("held %r pid %d in cgroup %d: set %s",
                  held.path, held.pid, held.cgroup_id, set_number)  # fmt: skip
        files = held_files(held)
        runtime = in_host_mount_namespace(held.pid)  # the runtime's own exec: no default
        if placement.unplaceable(held.cgroup_id):
            # Its policies could not be compiled: any rule that names it kills it.
            named = engine.any_rule.names(files, self._view(held.pid), runtime_exec=runtime)
            self._let_go(held.pid, signal.SIGKILL if named else signal.SIGCONT, held.cgroup_id)
            return []
        if set_number is None:
            named = engine.any_rule.names(files, self._view(held.pid), runtime_exec=runtime)
            if final or not named:
                self._let_go(held.pid, signal.SIGCONT, held.cgroup_id)
            else:
                self._queue(held.cgroup_id, held.pid)
            return []
        if placement.metadata_unknown(held.cgroup_id) and engine.any_rule.names(
            files, self._view(held.pid), runtime_exec=runtime
        ):
            log.error("killed %s (pid %d): a policy names it and the container's runtime did not "
                      "say whether that policy selects it", held.path, held.pid)  # fmt: skip
            self._let_go(held.pid, signal.SIGKILL, held.cgroup_id)
            return []
        compiled = engine.compiled
        context = held_context(held)
        hits = (
            decide(compiled.maps, set_number, files, runtime_exec=runtime, context=context)
            if compiled
            else ()
        )
        self._counters.add_counts(held.cgroup_id, hits)
        comm, uid = proc.comm_and_uid(held.pid)
        argv = proc.argv(held.pid)  # stopped after its exec: /proc shows the new program's
        self._let_go(held.pid, signal.SIGKILL if kills(hits) else signal.SIGCONT, held.cgroup_id)
        record = engine.denial_log.record
        return [
            record(hit, cgroup_id=held.cgroup_id, pid=held.pid, uid=uid, comm=comm,
                   filename=held.path, argv=argv, invoked=held.invoked, caller=held.caller.path)
            for hit in hits
        ]  # fmt: skip

    def _view(self, pid: int) -> RootView:
        """Every policy path resolved in the held process's root; empty if it cannot be read."""
        try:
            return root_view(Path(f"/proc/{pid}/root"), self._engine.any_rule.targets)
        except ResolveError:
            return {}

    def _let_go(self, pid: int, signum: int, cgroup_id: int | None = None) -> None:
        """Signals a held process through a pidfd, once it is known to be that process.

        A pid alone may have been reused since the kernel held it (someone
        else killed it): the pidfd pins one process, which must still be
        stopped or in the cgroup the exec was held in.
        """
        log.debug("let go of pid %d with signal %d", pid, signum)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            log.debug("held pid %d is gone already", pid)
            self._release(pid)
            return
        try:
            stopped = proc.wait_stopped(pid) if signum == signal.SIGCONT else proc.stopped(pid)
            if cgroup_id is None or stopped or proc.in_cgroup(pid, cgroup_id):
                signal.pidfd_send_signal(pidfd, signum)
            else:
                log.warning("pid %d is no longer the exec held in cgroup %d: not signalled",
                            pid, cgroup_id)  # fmt: skip
        except ProcessLookupError:
            log.debug("held pid %d is gone already", pid)
        finally:
            os.close(pidfd)
        self._release(pid)

    def _release(self, pid: int) -> None:
        self._held.release_held(pid)
        self._unstored.pop(pid, None)

    def _next_job(self) -> tuple[int, int | None] | None:
        with self._jobs_changed:
            while not self._jobs and not self._closing:
                self._jobs_changed.wait()
            if self._closing:
                return None
            return self._jobs.popitem(last=False)[0]

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
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
        placement = self._placement
        if placement.set_of(cgroup_id) is not None:
            return
        # Taken, not read: what stays behind would be kept for a cgroup whose
        # removal the kernel could not report (its event buffer full).
        path = self._paths.pop(cgroup_id, None) or (cgroup_v2_path_of_pid(pid) if pid else None)
        if path is None:
            return
        if not cgroup_dir(find_cgroup2_mount(), path).is_dir():
            placement.forget_cgroup(cgroup_id)  # removed already
            return
        if placement.place_below(cgroup_id, path):
            return
        container = self._identify(path, pid)
        log.debug("cgroup %d (%s): %s", cgroup_id, path, container.id if container else "host")
        if container is None:
            placement.place_host(cgroup_id)
        elif placement.needs_pid() and container.pid is None:
            return  # namespace selectors need a process: placed at its first held exec
        else:
            placement.place(container)
