"""The enforcer process: load the program, keep the maps current, answer the CLI.

Event driven: the main thread waits on the kernel's event buffer (epoll inside
bcc) and wakes for events and signals; the control socket has its own thread.
SIGTERM and SIGINT stop it cleanly, SIGHUP reloads policies and containers.
"""

from __future__ import annotations

import fcntl
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from enforcer import kernel
from enforcer.abi import EventKind
from enforcer.containers.inventory import discover, identify
from enforcer.containers.netns import named_netns
from enforcer.control import ControlServer, UnknownCommandError
from enforcer.engine import Denial, Engine
from enforcer.kernel import Backend, BackendChoice
from enforcer.lifecycle import Lifecycle
from enforcer.policy.loader import LoadResult
from enforcer.policy.watch import PolicyWatcher

log = logging.getLogger(__name__)

# How long one wait for events lasts: the bound on noticing a stop or reload
# request that arrived between two waits.
POLL_TIMEOUT_MS = 250
FOLLOW_LOCK = Path("/run/enforcer/follow.lock")


@dataclass
class DaemonOptions:
    load: Callable[[], LoadResult]
    backend: Backend = Backend.AUTO
    socket_path: Path | None = None
    on_denial: Callable[[Denial], None] | None = None
    on_ready: Callable[[Engine], None] | None = None
    trace_all: bool = False
    on_exec: Callable[[Any], None] | None = None
    # Follow containers that start later, holding their first execs until
    # placed (see lifecycle.py). Off for the tools that need no policies.
    follow_new_cgroups: bool = True
    # Policy files and directories to watch: a change there is a reload.
    watch: Sequence[Path] = ()


@dataclass
class _Flags:
    stop: bool = False
    reload: bool = False


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self._flags = _Flags()
        self.choice: BackendChoice | None = None
        self.engine: Engine | None = None
        self.lifecycle: Lifecycle | None = None

    def run(self) -> int:
        kernel.require_root()
        kernel.ensure_mounts()
        facts = kernel.probe()
        self.choice = kernel.choose_backend(facts, self.options.backend)
        log.info("backend %s: %s", self.choice.backend, self.choice.reason)
        from enforcer.bpf_program import ExecProgram  # noqa: PLC0415  (bcc after the mounts)

        program = ExecProgram(
            self.choice.backend, ring_buffer=facts.ring_buffer, trace_all=self.options.trace_all
        )
        log.info("BPF program compiled and loaded in %.2f s", program.info.compile_seconds)
        server: ControlServer | None = None
        watcher: PolicyWatcher | None = None
        try:
            self.engine = engine = Engine(program, self.options.load, discover, named_netns)
            self.lifecycle = Lifecycle(engine, program, identify, self._log_denials)
            # Before discovery: a cgroup made after it is caught as pending.
            follow_lock = _follow_lock() if self.options.follow_new_cgroups else None
            program.hold_new_cgroups(follow_lock is not None)
            engine.reload()
            if self.options.watch:
                watcher = PolicyWatcher(self.options.watch, lambda: engine.reload(rediscover=False))
                watcher.start()
            program.open_events(self._on_kernel_event)
            if self.options.socket_path is not None:
                server = ControlServer(self.options.socket_path, self.handle_command)
                server.start()
            self._install_signal_handlers()
            log.info("enforcing")
            if self.options.on_ready:
                self.options.on_ready(engine)
            self._loop(program, engine)
        finally:
            if watcher is not None:
                watcher.close()
            if server is not None:
                server.close()
            program.hold_new_cgroups(False)
            if self.lifecycle is not None:
                self._log_denials(self.lifecycle.close())
            program.close()
        log.info("stopped")
        return 0

    def _loop(self, program: Any, engine: Engine) -> None:
        while not self._flags.stop:
            program.poll_events(POLL_TIMEOUT_MS)
            if self._flags.reload:
                self._flags.reload = False
                log.info("reloading policies and containers")
                engine.reload()

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self._flags.stop = True

        def reload(signum: int, _frame: FrameType | None) -> None:
            self._flags.reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _on_kernel_event(self, event: Any) -> None:
        # bcc drops exceptions raised in its callbacks: log them here instead.
        try:
            self._log_denials(self._dispatch(event))
        except Exception:
            log.exception("failed to handle a kernel event: %s", event)

    def _dispatch(self, event: Any) -> list[Denial]:
        assert self.engine is not None and self.lifecycle is not None
        if event.kind is EventKind.CGROUP_NEW:
            self.lifecycle.cgroup_created(event.cgroup_id, event.filename)
            return []
        if event.kind is EventKind.CGROUP_GONE:
            self.lifecycle.cgroup_removed(event.cgroup_id)
            return []
        if event.kind is EventKind.HELD:
            return self.lifecycle.settle_held()
        if self.options.on_exec is not None:
            self.options.on_exec(event)
        denial = self.engine.denial(event.kind, event)
        return [denial] if denial else []

    def _log_denials(self, denials: list[Denial]) -> None:
        for denial in denials:
            log.warning("%s", denial, extra={"denial": denial.to_json()})
            if self.options.on_denial is not None:
                self.options.on_denial(denial)

    def handle_command(self, command: str, _arguments: dict[str, Any]) -> object:
        """Answers one control-socket request (runs on the socket's thread)."""
        engine, choice = self.engine, self.choice
        assert engine is not None and choice is not None
        if command == "stats":
            return engine.stats()
        if command == "status":
            return engine.status(str(choice.backend), choice.reason, enforcing=True)
        if command == "containers":
            return {"containers": engine.containers_report()}
        if command == "events":
            return {"events": [d.to_json() for d in engine.recent]}
        if command == "reload":
            self._flags.reload = True
            return {"reloading": True}
        raise UnknownCommandError(
            f"unknown command {command!r}; "
            "this daemon knows stats, status, containers, events, reload"
        )


def _follow_lock() -> TextIO | None:
    """Only one enforcer at a time may hold new cgroups' execs.

    Each instance's kernel program would stop such an exec, and each would let
    go of it with SIGCONT by its own policies: one instance's SIGCONT would
    release what another still holds. The lock is released when the process
    exits, however it exits.
    """
    FOLLOW_LOCK.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    lock = FOLLOW_LOCK.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        log.warning(
            "another enforcer follows new containers (it holds %s): this one enforces only "
            "containers it has seen start, and a new container's first execs may escape it",
            FOLLOW_LOCK,
        )
        return None
    return lock
