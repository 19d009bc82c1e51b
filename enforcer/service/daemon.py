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
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
from enforcer.kernel.facts import KernelFacts
from enforcer.policy.loader import LoadResult
from enforcer.policy.watch import PolicyWatcher
from enforcer.service import signals
from enforcer.service.commands import Commands
from enforcer.service.control import ControlServer
from enforcer.service.eventlog import EventLog, EventLogError, open_event_log
from enforcer.service.follow_lock import follow_lock
from enforcer.service.handover import Handover
from enforcer.service.notify import Notifier
from enforcer.service.protocol import StatusReply
from enforcer.service.reports import Reports
from enforcer.service.state import load_ids, save_ids

if TYPE_CHECKING:  # imported where used: it loads the BPF program's modules
    from enforcer.bpf.program import ExecProgram

log = logging.getLogger(__name__)

# How long one wait for events lasts: the bound on noticing a stop or reload
# request that arrived between two waits.
POLL_TIMEOUT_MS = 250
# Default of DaemonOptions.hold_grace_s: covers a restart, compile included.
HOLD_GRACE_S = 60.0
# How often the main loop renews the grace at most: a map write per turn of
# the loop would add a system call per batch of events in an exec storm.
HOLD_RENEW_S = 1.0


class PolicyEnforceError(EnforcerError):
    """Raised at start when the policies cannot be compiled and another program enforces."""


@dataclass
class DaemonOptions:
    """What a daemon is to do: configuration only, the same before, during and after run()."""

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


class Daemon:
    """Runs the enforcer as its options say; the state of a run lives in `_Running`."""

    def __init__(self, options: DaemonOptions) -> None:
        self.options = options

    def run(self) -> int:
        options = self.options
        facts, choice = preflight.prepare(options.backend, signals_held_execs=True)
        log.info("backend %s: %s", choice.backend, choice.reason)
        pins = PinDir(options.pin_dir) if options.pin_dir else None
        if pins is not None:
            pins.lock()  # before the compile: a second daemon fails at once
            pins.release_legacy_held()
        program = _load_program(options, choice, facts, pins)
        with ExitStack() as stack:
            stack.callback(program.close)
            handover = Handover()
            if pins is not None:
                handover.prepare(program, pins, stack, keep=options.keep_on_exit)
            # With no hold after a stop, a kill must not leave the grace holding
            # either: the next agent may be starting in a new container already.
            holds_after_stop = not options.keep_on_exit or options.hold_after_stop_s != 0
            program.held.end_holding_at_exit(0 if holds_after_stop else os.getpid())
            _keep_holding(program, options.hold_grace_s)
            running = _Running.create(options, choice, program, handover)
            running.start_engine(stack)
            if pins is not None:
                running.refuse_to_replace_with_nothing()
                handover.take_over(program, pins, options.hold_grace_s)
                running.denials(running.lifecycle.settle_held())  # held while no daemon ran
            # Before the socket answers: a SIGHUP sent once `status` says
            # enforcing must reload, not kill the daemon (its default action).
            signals.install(running.requests)
            running.start_services(stack)
            log.info("enforcing")
            running.notify.ready(running.summary())
            if options.on_ready:
                options.on_ready(running.engine)
            running.loop()
            running.notify.stopping()
        log.info("stopped")
        return 0


def _load_program(
    options: DaemonOptions, choice: BackendChoice, facts: KernelFacts, pins: PinDir | None
) -> ExecProgram:
    """The BPF program: reused from the pins when the live one can be, else loaded."""
    from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (a compile needs the mounts)

    live = pins.live_generation() if pins is not None else 0
    program = ExecProgram(
        choice.backend,
        ring_buffer=facts.ring_buffer,
        trace_all=options.trace_all,
        pin_dir=options.pin_dir,
        cache_dir=options.bpf_cache,
        reuse=pins.reusable(live) if pins is not None and live else None,
    )
    if program.reused:
        log.info("BPF program of generation %d reused: nothing compiled or loaded", live)
    else:
        how = "loaded from the cache" if program.info.from_cache else "compiled and loaded"
        log.info("BPF program %s in %.2f s", how, program.info.load_seconds)
    return program


def _keep_holding(program: ExecProgram, seconds: float) -> None:
    """New cgroups' execs may be held for `seconds` from now, for a daemon to settle."""
    program.held.keep_holding_until(time.monotonic_ns() + int(seconds * 1e9))


def _persisted_ids(
    options: DaemonOptions, program: ExecProgram
) -> tuple[Ids | None, Callable[[Ids], None] | None]:
    """The ids of the pinned counters, from the last run; counters reset if unknown."""
    state_dir = options.state_dir
    if options.pin_dir is None or state_dir is None:
        return None, None
    map_id = program.counters.counters_map_id()
    ids = load_ids(state_dir, map_id)
    if ids is None:
        program.counters.reset_counters()  # counts under ids no one can name any more
    else:
        log.info("counters kept from the previous run (map %d)", map_id)
    return ids, lambda current: save_ids(state_dir, current, map_id)


@dataclass
class _DenialLog:
    """Where denials go: the daemon's log, the event log once open, the tool's callback."""

    on_denial: Callable[[Denial], None] | None
    event_log: EventLog | None = None

    def __call__(self, denials: list[Denial]) -> None:
        for denial in denials:
            record = denial.to_json()
            log.warning("%s", denial, extra={"denial": record})
            if self.event_log is not None:
                self.event_log.write(record)
            if self.on_denial is not None:
                self.on_denial(denial)


@dataclass
class _Running:
    """What exists only while the daemon runs: the program, the engine, the services' state."""

    options: DaemonOptions
    choice: BackendChoice
    program: ExecProgram
    engine: Engine
    lifecycle: Lifecycle
    handover: Handover
    denials: _DenialLog
    reports: Reports
    notify: Notifier = field(default_factory=Notifier.from_environment)
    requests: signals.Requests = field(default_factory=signals.Requests)

    @classmethod
    def create(
        cls,
        options: DaemonOptions,
        choice: BackendChoice,
        program: ExecProgram,
        handover: Handover,
    ) -> _Running:
        ids, save = _persisted_ids(options, program)
        engine = Engine(program.rules, options.load, discover, named_netns, ids=ids, save_ids=save)
        denials = _DenialLog(options.on_denial)
        lifecycle = Lifecycle(
            engine, held=program.held, counters=program.counters, identify=identify, report=denials
        )
        reports = Reports(engine, program.counters)
        return cls(options, choice, program, engine, lifecycle, handover, denials, reports)

    def start_engine(self, stack: ExitStack) -> None:
        """Fills the maps and opens the kernel's events; what it holds is let go at the end."""
        program, lifecycle = self.program, self.lifecycle
        # Kept on exit, the program goes on holding new cgroups' execs for the
        # next daemon to settle; else what is still held is let go.
        keep = self.options.keep_on_exit
        # With no hold after a stop, nothing held is left for a next daemon.
        release = not keep or self.options.hold_after_stop_s == 0
        stack.callback(lambda: self.denials(lifecycle.close(release_undecided=release)))
        if not keep:
            stack.callback(program.held.hold_new_cgroups, False)
        # Before discovery: a cgroup made after it is caught as pending.
        if self.options.follow_new_cgroups and (lock := follow_lock()) is not None:
            stack.callback(os.close, lock)
            program.held.hold_new_cgroups(True)
        self.engine.reload()
        program.events.open_events(self.on_kernel_event)

    def refuse_to_replace_with_nothing(self) -> None:
        """A program left enforcing stays, rather than one whose policies failed to compile."""
        engine = self.engine
        if engine.enforce_error is None or self.program.held.live_generation() == 0:
            return  # compiled; or nothing was in force: run, and apply a fixed file later
        raise PolicyEnforceError(
            f"the policies cannot be enforced ({engine.enforce_error}); the program a previous "
            "daemon left keeps enforcing the policies it had. Fix the policies (`enforcer check "
            "DIR`) and start again"
        )

    def start_services(self, stack: ExitStack) -> None:
        """The event log, the policy watcher, the control socket and the metrics endpoint."""
        options = self.options
        if options.event_log:
            event_log = stack.enter_context(closing(open_event_log(options.event_log)))
            self.denials.event_log = event_log
        if options.watch:
            watcher = PolicyWatcher(options.watch, lambda: self.reload(rediscover=False))
            watcher.start()
            stack.callback(watcher.close)
        if options.socket_path is not None:
            server = ControlServer(options.socket_path, Commands(self.reports, self).handle)
            server.start()
            stack.callback(server.close)
        if options.metrics:
            # Here, not at the top: prometheus_client and http.server cost a start 27 ms.
            from enforcer.service.metrics import serve as serve_metrics  # noqa: PLC0415

            metrics = serve_metrics(options.metrics, self.reports)
            log.info("metrics on %s", metrics.url)
            stack.callback(metrics.close)

    def reload(self, rediscover: bool) -> None:
        self.notify.reloading()
        self.engine.reload(rediscover=rediscover)
        self.notify.ready(self.summary())

    def summary(self) -> str:
        engine = self.engine
        problems = f", {len(engine.problems)} policy problems" if engine.problems else ""
        counts = f"{len(engine.policies)} policies on {len(engine.containers)} containers"
        return f"enforcing {counts}{problems}"

    def loop(self) -> None:
        program, requests = self.program, self.requests
        keepalive = self.notify.watchdog_interval()
        last_keepalive = last_renewal = time.monotonic()
        # Well inside the grace, which may be short (the tests use 0.5 s).
        renew_every = min(HOLD_RENEW_S, self.options.hold_grace_s / 4)
        while not requests.stop:
            program.events.poll_events(POLL_TIMEOUT_MS)
            if time.monotonic() - last_renewal >= renew_every:
                _keep_holding(program, self.options.hold_grace_s)
                last_renewal = time.monotonic()
            if requests.reload:
                requests.reload = False
                log.info("reloading policies and containers")
                self._reopen_event_log()
                self.reload(rediscover=True)
            # The loop turning is what the watchdog vouches for.
            if keepalive is not None and time.monotonic() - last_keepalive >= keepalive:
                self.notify.watchdog()
                last_keepalive = time.monotonic()
        # At once, not once stopped: a next daemon may be starting already.
        if self.options.keep_on_exit and (after := self.options.hold_after_stop_s) is not None:
            _keep_holding(program, after)

    def _reopen_event_log(self) -> None:
        """After logrotate moved it; on failure the old file goes on being written."""
        if self.denials.event_log is None:
            return
        try:
            self.denials.event_log.reopen()
        except EventLogError as e:
            log.error("%s", e)

    def on_kernel_event(self, event: KernelEvent) -> None:
        # bcc drops exceptions raised in its callbacks: log them here instead.
        try:
            self.denials(self._dispatch(event))
        except Exception:
            log.exception("failed to handle a kernel event: %s", event)

    def _dispatch(self, event: KernelEvent) -> list[Denial]:
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

    # What the control socket's commands ask of the running daemon (commands.RunningDaemon).

    def status(self) -> StatusReply:
        choice = self.choice
        persistence = self.handover.persistence(self.options.keep_on_exit)
        queued = self.lifecycle.queued()
        return self.reports.status(str(choice.backend), choice.reason, queued, persistence)

    def stopping(self) -> bool:
        return self.requests.stop

    def request_reload(self) -> None:
        self.requests.reload = True
