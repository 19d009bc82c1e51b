"""Exec storm: parallel loops run a blocked program; then the daemon's counts, CPU and memory.

The daemon runs one policy that reaches the host and names nothing but a
program made for this run. Every attempt must be killed, and the daemon's
counters (`enforcer stats --json`) must grow by exactly the number of
attempts. Its CPU time is read from /proc over the storm and until it has
handled the last event; its resident memory at idle and after the storm.
"""

from __future__ import annotations

import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from bench import daemon, host_policy
from bench.binaries import Binaries
from bench.errors import MeasurementError
from bench.neighbours import Neighbours
from bench.proc import Memory
from bench.processes import stop
from bench.settings import Settings
from bench.spawn import LoopResult, finish_loop, start_loop

POLICY = "bench-storm"
IDLE_SETTLE_S = 3.0
# The daemon has caught up when its CPU time stops growing for this long.
DRAIN_QUIET_S = 1.0
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Storm:
    attempts: int
    loops: int
    killed: int
    not_killed: int
    counted: int  # growth of the daemon's blocked count for the storm policy
    wall_s: float
    daemon_cpu_s: float  # during the storm
    daemon_cpu_with_drain_s: float  # until the daemon handled the last event
    event_drops: int
    signal_errors: dict[str, int]
    memory_idle: Memory
    memory_after: Memory
    all_killed: bool
    counters_exact: bool  # the counted growth equals the attempts exactly


def run(binaries: Binaries, settings: Settings, workdir: Path, neighbours: Neighbours) -> Storm:
    target = binaries.copy_of_trivial(f"enforcer-bench-{secrets.token_hex(4)}-storm")
    policies = workdir / "storm-policies"
    policies.mkdir()
    host_policy.write(policies / "storm.yaml", POLICY, [target])
    run_dir = workdir / "storm"
    run_dir.mkdir()
    with daemon.running(policies, run_dir) as running:
        time.sleep(IDLE_SETTLE_S)
        neighbours.settle([running.pid])
        memory_idle = running.memory()
        drops_before = int(running.cli_json("status")["event_drops"])
        counted_before = running.blocked(POLICY)
        cpu_before = running.cpu_seconds()
        started = time.monotonic()
        results = _storm(binaries, target, settings)
        wall = time.monotonic() - started
        cpu_storm = running.cpu_seconds() - cpu_before
        cpu_drain = _cpu_until_quiet(running) - cpu_before
        status = running.cli_json("status")
        counted = running.blocked(POLICY) - counted_before
        memory_after = running.memory()
    attempts = sum(r.execs for r in results)
    killed = sum(r.killed for r in results)
    return Storm(
        attempts=attempts,
        loops=len(results),
        killed=killed,
        not_killed=attempts - killed,
        counted=counted,
        wall_s=wall,
        daemon_cpu_s=cpu_storm,
        daemon_cpu_with_drain_s=cpu_drain,
        event_drops=int(status["event_drops"]) - drops_before,
        signal_errors=dict(status.get("signal_errors", {})),
        memory_idle=memory_idle,
        memory_after=memory_after,
        all_killed=killed == attempts,
        counters_exact=counted == attempts,
    )


def _storm(binaries: Binaries, target: Path, settings: Settings) -> list[LoopResult]:
    """`storm_loops` loops at once, sharing the attempts."""
    share, extra = divmod(settings.storm_attempts, settings.storm_loops)
    processes = []
    try:
        for i in range(settings.storm_loops):
            processes.append(start_loop(binaries.spawn_loop, target, share + (i < extra)))
        return [finish_loop(p) for p in processes]
    finally:
        for process in processes:  # those an interruption left running
            stop(process, signal.SIGKILL, 0)


def _cpu_until_quiet(running: daemon.Daemon) -> float:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last = running.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(DRAIN_QUIET_S)
        now = running.cpu_seconds()
        if now == last:
            return now
        last = now
    raise MeasurementError(f"the daemon was still busy {DRAIN_TIMEOUT_S:.0f} s after the storm")
