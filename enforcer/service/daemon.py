"""The enforcer process: load the program, keep the maps current, answer the CLI.

Event driven: the main thread waits on the kernel's event buffer (epoll inside
bcc) and wakes for events and signals; the control socket has its own thread.
SIGTERM and SIGINT stop it cleanly, SIGHUP reloads policies and containers.

With a pin directory (pins.py) the program outlives the daemon: killed, it
leaves the kernel enforcing the last policies, and the next start takes over
from that program without a moment when neither decides.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from enforcer.bpf.abi import EventKind
from enforcer.bpf.compiled import DEFAULT_CACHE_DIR
from enforcer.bpf.pins import PinDir
from enforcer.bpf.records import KernelEvent
from enforcer.containers.inventory import discover, identify
from enforcer.containers.netns import named_netns
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Engine
from enforcer.enforce.ids import Ids
from enforcer.enforce.lifecycle import Lifecycle
from enforcer.errors import EnforcerError
from enforcer.kernel import preflight
from enforcer.kernel.backends import Backend, BackendChoice
from enforcer.policy.loader import LoadResult
from enforcer.policy.watch import PolicyWatcher
from enforcer.service.control import ControlServer, UnknownCommandError
from enforcer.service.eventlog import EventLog, EventLogError, open_event_log
from enforcer.service.locks import try_lock
from enforcer.service.notify import Notifier
from enforcer.service.state import load_ids, save_ids

if TYPE_CHECKING:  # imported where used: it loads the BPF program's modules
    from enforcer.bpf.program import ExecProgram

log = logging.getLogger(__name__)

# How long one wait for events lasts: the bound on noticing a stop or reload
# request that arrived between two waits.
POLL_TIMEOUT_MS = 250
FOLLOW_LOCK = Path("/run/enforcer/follow.lock")
# How often a follower of events checks whether the daemon is stopping.
FOLLOW_WAKEUP_S = 0.5
# Default of DaemonOptions.hold_grace_s: covers a restart, compile included.
HOLD_GRACE_S = 60.0
# How often the main loop renews the grace at most: a map write per turn of
# the loop would add a system call per batch of events in an exec storm.
HOLD_RENEW_S = 1.0


class PolicyEnforceError(EnforcerError):
    """Raised at start when the policies cannot be compiled and another program enforces."""


@dataclass
class DaemonOptions:
    load: Callable[[], LoadResult]
    backend: Backend = Backend.AUTO
    socket_path: Path | None = None
    on_denial: Callable[[Denial], None] | None = None
    on_ready: Callable[[Engine], None] | None = None
    trace_all: bool = False
    on_exec: Callable[[KernelEvent], None] | None = None
    # Follow containers that start later, holding their first execs until
    # placed (see lifecycle.py). Off for the tools that need no policies.
    follow_new_cgroups: bool = True
    # Policy files and directories to watch: a change there is a reload.
    watch: Sequence[Path] = ()
    # Where counters are pinned (bpffs) and their ids saved, so that counts
    # outlive the daemon; None for the tools, which count only while they run.
    pin_dir: Path | None = None
    state_dir: Path | None = None
    # Where the compiled program is kept (bpf_object.py); None: compile every time.
    bpf_cache: Path | None = DEFAULT_CACHE_DIR
    # `--metrics ADDR` (host:port) and `--event-log TARGET` (file, journal, stderr).
    metrics: str | None = None
    event_log: str | None = None
    # On SIGTERM, leave the program enforcing in the kernel for the next start
    # (a crash or kill -9 always does); `enforcer unload` ends it.
    keep_on_exit: bool = False
    # With no daemon alive for this long, new cgroups' execs are no longer held
    # (they would wait for no one); each turn of the main loop renews it.
    hold_grace_s: float = HOLD_GRACE_S
    # After a stop that keeps the program enforcing, new cgroups' execs are
    # held this long (None: as long as hold_grace_s). 0 where the next daemon
    # itself starts in a new cgroup (a pod): it must not wait for itself.
    hold_after_stop_s: float | None = None


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
        self.event_log: EventLog | None = None
        self._notify = Notifier.from_environment()
        self.generation = 0
        self.persistent = False  # the program's links are pinned: it outlives us
        self.took_over = False  # this daemon's generation is the one in force

    def run(self) -> int:
        facts, self.choice = preflight.prepare(self.options.backend, signals_held_execs=True)
        log.info("backend %s: %s", self.choice.backend, self.choice.reason)
        pins = PinDir(self.options.pin_dir) if self.options.pin_dir else None
        if pins is not None:
            pins.lock()  # before the compile: a second daemon fails at once
            pins.release_legacy_held()
        from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (a compile needs the mounts)

        live = pins.live_generation() if pins is not None else 0
        program = ExecProgram(
            self.choice.backend,
            ring_buffer=facts.ring_buffer,
            trace_all=self.options.trace_all,
            pin_dir=self.options.pin_dir,
            cache_dir=self.options.bpf_cache,
            reuse=pins.reusable(live) if pins is not None and live else None,
        )
        if program.reused:
            log.info("BPF program of generation %d reused: nothing compiled or loaded", live)
        else:
            how = "loaded from the cache" if program.info.from_cache else "compiled and loaded"
            log.info("BPF program %s in %.2f s", how, program.info.load_seconds)
        with ExitStack() as running:
            running.callback(program.close)
            if pins is not None:
                self._prepare_generation(program, pins, running)
            # With no hold after a stop, a kill must not leave the grace holding
            # either: the next agent may be starting in a new container already.
            holds_after_stop = not self.options.keep_on_exit or self.options.hold_after_stop_s != 0
            program.held.end_holding_at_exit(0 if holds_after_stop else os.getpid())
            self._keep_holding(program)
            engine = self._start_engine(program, running)
            if pins is not None:
                self._refuse_to_replace_with_nothing(program, engine)
                self._take_over(program, pins)
            self._start_services(engine, running)
            self._install_signal_handlers()
            log.info("enforcing")
            self._notify.ready(self._summary(engine))
            if self.options.on_ready:
                self.options.on_ready(engine)
            self._loop(program, engine)
            self._notify.stopping()
        log.info("stopped")
        return 0

    def _prepare_generation(self, program: ExecProgram, pins: PinDir, running: ExitStack) -> None:
        """Makes the new program the next generation, ready to follow new cgroups."""
        previous = program.held.live_generation()
        pins.remove_links(keep=previous)  # from a start that died before taking over
        # A reused program stays the generation it was: there is no handover.
        self.generation = previous if program.reused else previous + 1
        program.held.prepare_generation(self.generation)
        if not self.options.keep_on_exit:
            running.callback(self._unpin, pins)

    def _take_over(self, program: ExecProgram, pins: PinDir) -> None:
        """Puts this generation in force (its maps are full), then lets the old one go."""
        if program.links:
            pins.pin_links(self.generation, program.links, program.generation_maps(), program.key)
            self.persistent = True
        elif program.reused:
            self.persistent = True  # its links are pinned already
        program.held.take_over(self.generation)
        self.took_over = True
        replaced = pins.remove_links(keep=self.generation)
        if replaced:
            log.info("took over from the program a previous daemon left enforcing")
        unheld = program.held.unheld_execs()
        if unheld:
            log.warning(
                "%d execs in new cgroups ran unchecked: they started while no daemon had been "
                "alive for %.0f s (--hold-grace)", unheld, self.options.hold_grace_s,
            )  # fmt: skip
        assert self.lifecycle is not None
        self._log_denials(self.lifecycle.settle_held())  # execs held while no daemon ran

    def _refuse_to_replace_with_nothing(self, program: ExecProgram, engine: Engine) -> None:
        """A program left enforcing stays, rather than one whose policies failed to compile."""
        if engine.enforce_error is None or program.held.live_generation() == 0:
            return  # compiled; or nothing was in force: run, and apply a fixed file later
        raise PolicyEnforceError(
            f"the policies cannot be enforced ({engine.enforce_error}); the program a previous "
            "daemon left keeps enforcing the policies it had. Fix the policies (`enforcer check "
            "DIR`) and start again"
        )

    def _unpin(self, pins: PinDir) -> None:
        if not self.took_over:
            return  # the generation in force is another daemon's: it goes on
        pins.remove_links()
        self.persistent = False

    def _keep_holding(self, program: ExecProgram) -> None:
        """Renews the time new cgroups' execs may be held for this daemon to settle."""
        grace_ns = int(self.options.hold_grace_s * 1e9)
        program.held.keep_holding_until(time.monotonic_ns() + grace_ns)

    def _start_engine(self, program: ExecProgram, running: ExitStack) -> Engine:
        ids, save_ids = self._persisted_ids(program)
        self.engine = engine = Engine(
            program.rules,
            program.counters,
            self.options.load,
            discover,
            named_netns,
            ids=ids,
            save_ids=save_ids,
        )
        self.lifecycle = lifecycle = Lifecycle(
            engine,
            held=program.held,
            counters=program.counters,
            identify=identify,
            report=self._log_denials,
        )
        # Kept on exit, the program goes on holding new cgroups' execs for the
        # next daemon to settle; else what is still held is let go.
        keep = self.options.keep_on_exit
        # With no hold after a stop, nothing held is left for a next daemon.
        release = not keep or self.options.hold_after_stop_s == 0
        running.callback(lambda: self._log_denials(lifecycle.close(release_undecided=release)))
        if not keep:
            running.callback(program.held.hold_new_cgroups, False)
        # Before discovery: a cgroup made after it is caught as pending.
        if self.options.follow_new_cgroups and (lock := _follow_lock()) is not None:
            running.callback(os.close, lock)
            program.held.hold_new_cgroups(True)
        engine.reload()
        program.events.open_events(self._on_kernel_event)
        return engine

    def _start_services(self, engine: Engine, running: ExitStack) -> None:
        """The event log, the policy watcher, the control socket and the metrics endpoint."""
        options = self.options
        if options.event_log:
            self.event_log = running.enter_context(closing(open_event_log(options.event_log)))
        if options.watch:
            watcher = PolicyWatcher(options.watch, lambda: self._reload(rediscover=False))
            watcher.start()
            running.callback(watcher.close)
        if options.socket_path is not None:
            server = ControlServer(options.socket_path, self.handle_command)
            server.start()
            running.callback(server.close)
        if options.metrics:
            # Here, not at the top: prometheus_client and http.server cost a start 27 ms.
            from enforcer.service.metrics import serve as serve_metrics  # noqa: PLC0415

            metrics = serve_metrics(options.metrics, engine)
            log.info("metrics on %s", metrics.url)
            running.callback(metrics.close)

    def _reload(self, rediscover: bool) -> None:
        engine = self.engine
        assert engine is not None
        self._notify.reloading()
        engine.reload(rediscover=rediscover)
        self._notify.ready(self._summary(engine))

    def _summary(self, engine: Engine) -> str:
        problems = f", {len(engine.problems)} policy problems" if engine.problems else ""
        counts = f"{len(engine.policies)} policies on {len(engine.containers)} containers"
        return f"enforcing {counts}{problems}"

    def _persisted_ids(
        self, program: ExecProgram
    ) -> tuple[Ids | None, Callable[[Ids], None] | None]:
        """The ids of the pinned counters, from the last run; counters reset if unknown."""
        state_dir = self.options.state_dir
        if self.options.pin_dir is None or state_dir is None:
            return None, None
        map_id = program.counters.counters_map_id()
        ids = load_ids(state_dir, map_id)
        if ids is None:
            program.counters.reset_counters()  # counts under ids no one can name any more
        else:
            log.info("counters kept from the previous run (map %d)", map_id)
        return ids, lambda current: save_ids(state_dir, current, map_id)

    def _loop(self, program: ExecProgram, engine: Engine) -> None:
        keepalive = self._notify.watchdog_interval()
        last_keepalive = last_renewal = time.monotonic()
        # Well inside the grace, which may be short (the tests use 0.5 s).
        renew_every = min(HOLD_RENEW_S, self.options.hold_grace_s / 4)
        while not self._flags.stop:
            program.events.poll_events(POLL_TIMEOUT_MS)
            if time.monotonic() - last_renewal >= renew_every:
                self._keep_holding(program)
                last_renewal = time.monotonic()
            if self._flags.reload:
                self._flags.reload = False
                log.info("reloading policies and containers")
                self._reopen_event_log()
                self._reload(rediscover=True)
            # The loop turning is what the watchdog vouches for.
            if keepalive is not None and time.monotonic() - last_keepalive >= keepalive:
                self._notify.watchdog()
                last_keepalive = time.monotonic()
        # At once, not once stopped: a next daemon may be starting already.
        if self.options.keep_on_exit and (after := self.options.hold_after_stop_s) is not None:
            program.held.keep_holding_until(time.monotonic_ns() + int(after * 1e9))

    def _reopen_event_log(self) -> None:
        """After logrotate moved it; on failure the old file goes on being written."""
        if self.event_log is None:
            return
        try:
            self.event_log.reopen()
        except EventLogError as e:
            log.error("%s", e)

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self._flags.stop = True

        def reload(signum: int, _frame: FrameType | None) -> None:
            self._flags.reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _on_kernel_event(self, event: KernelEvent) -> None:
        # bcc drops exceptions raised in its callbacks: log them here instead.
        try:
            self._log_denials(self._dispatch(event))
        except Exception:
            log.exception("failed to handle a kernel event: %s", event)

    def _dispatch(self, event: KernelEvent) -> list[Denial]:
        assert self.engine is not None and self.lifecycle is not None
        if event.kind is EventKind.CGROUP_NEW:
            self.lifecycle.cgroup_created(event.cgroup_id, event.filename)
            return []
        if event.kind is EventKind.CGROUP_GONE:
            self.lifecycle.cgroup_removed(event.cgroup_id)
            return []
        if event.kind is EventKind.HELD:
            return self.lifecycle.exec_held(event)
        if self.options.on_exec is not None:
            self.options.on_exec(event)
        return self.engine.denials(event.kind, event)

    def _log_denials(self, denials: list[Denial]) -> None:
        for denial in denials:
            log.warning("%s", denial, extra={"denial": denial.to_json()})
            if self.event_log is not None:
                self.event_log.write(denial.to_json())
            if self.options.on_denial is not None:
                self.options.on_denial(denial)

    def _follow_events(self, engine: Engine) -> Iterator[dict[str, object]]:
        """Every recent denial, then each new one as it happens, until the daemon stops."""
        seen = 0
        while not self._flags.stop:
            fresh, seen = engine.denials_after(seen, timeout=FOLLOW_WAKEUP_S)
            for denial in fresh:
                yield denial.to_json()

    def handle_command(self, command: str, arguments: dict[str, Any]) -> object:
        """Answers one control-socket request (runs on the socket's thread)."""
        engine = self.engine
        assert engine is not None
        commands: dict[str, Callable[[Engine, dict[str, Any]], object]] = {
            "stats": lambda engine, _: engine.stats(),
            "status": lambda engine, _: self._status(engine),
            "containers": lambda engine, _: {"containers": engine.containers_report()},
            "events": self._events,
            "reload": lambda _engine, _: self._request_reload(),
        }
        answer = commands.get(command)
        if answer is None:
            raise UnknownCommandError(
                f"unknown command {command!r}; this daemon knows {', '.join(commands)}"
            )
        return answer(engine, arguments)

    def _status(self, engine: Engine) -> dict[str, object]:
        choice = self.choice
        assert choice is not None
        in_force = engine.compiled is not None  # nothing compiled: nothing enforced
        status = engine.status(str(choice.backend), choice.reason, enforcing=in_force)
        status["classify_queued"] = self.lifecycle.queued() if self.lifecycle else 0
        status["persistence"] = {
            "generation": self.generation,
            "outlives_daemon": self.persistent,
            "keep_on_exit": self.options.keep_on_exit,
        }
        return status

    def _events(self, engine: Engine, arguments: dict[str, Any]) -> object:
        if arguments.get("follow"):
            return self._follow_events(engine)
        return {"events": [d.to_json() for d in engine.recent]}

    def _request_reload(self) -> dict[str, bool]:
        self._flags.reload = True
        return {"reloading": True}


def _follow_lock() -> int | None:
    """Only one enforcer at a time may hold new cgroups' execs: the lock's fd, or None.

    Each instance's kernel program would stop such an exec, and each would let
    go of it with SIGCONT by its own policies: one instance's SIGCONT would
    release what another still holds.
    """
    FOLLOW_LOCK.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    lock = try_lock(FOLLOW_LOCK)
    if lock is None:
        log.warning(
            "another enforcer follows new containers (it holds %s): this one enforces only "
            "containers it has seen start, and a new container's first execs may escape it",
            FOLLOW_LOCK,
        )
    return lock
