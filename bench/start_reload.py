"""How long `enforcer run` takes to enforce, and a policy change to be enforced.

Start: from spawning `python -m enforcer run` to its control socket's status
saying enforcing. The first start has an empty --bpf-cache and compiles its
BPF program; the others (cold starts: nothing pinned) load it from there.
The CLI: wall time and peak RSS of `enforcer status`, `stats` (answered by
the running daemon) and `check` of one small file, each a new process as a
person or a probe runs it.
Reload: from a policy file being replaced to the kernel acting on it, seen
by running the program the change is about until its fate flips (killed,
or left alone). Each change is followed by SIGHUP, which is how a reload is
asked for; a second series, where the daemon can watch its policy directory
itself, changes the file alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import daemon, host_policy
from bench.binaries import Binaries
from bench.errors import MeasurementError
from bench.neighbours import Neighbours
from bench.settings import Settings
from bench.summary import Summary, optional_summary

RELOAD_TIMEOUT_S = 15.0
# A daemon that does not notice a changed file by then is taken not to watch.
WATCH_TIMEOUT_S = 3.0
POLICY = "bench-reload"
CLI_RUNS = 7


@dataclass(frozen=True)
class CliRun:
    command: str
    wall_s: Summary
    max_rss_kib: int  # the largest of the runs


@dataclass(frozen=True)
class StartReload:
    start_s: Summary  # with the compiled program in the cache
    compile_s: Summary | None  # what the daemon logged for its BPF (compile and) load
    first_start_s: Summary  # with an empty cache: the compile included
    first_compile_s: Summary | None
    warm_start_s: Summary  # a restart with the program in force (--keep-on-exit) reused
    reload_sighup_s: Summary
    reload_file_only_s: Summary | None  # None: the daemon does not reload on a file change
    cli: list[CliRun]


def run(
    binaries: Binaries, settings: Settings, workdir: Path, neighbours: Neighbours
) -> StartReload:
    tag = secrets.token_hex(4)
    blocked = binaries.copy_of_trivial(f"enforcer-bench-{tag}-blocked")
    flipped = binaries.copy_of_trivial(f"enforcer-bench-{tag}-flipped")
    policies = workdir / "reload-policies"
    policies.mkdir()
    policy_file = policies / "reload.yaml"
    host_policy.write(policy_file, POLICY, [blocked])
    starts: list[list[float]] = [[], []]  # first, then from the cache
    compiles: list[list[float]] = [[], []]
    bpf_cache = workdir / "bpf-cache"
    for index in range(settings.starts + 1):
        run_dir = workdir / f"start-{index}"
        run_dir.mkdir()
        neighbours.settle()
        with daemon.running(policies, run_dir, bpf_cache) as started:
            starts[index > 0].append(started.start_seconds)
            compiled = started.compile_seconds()
            if compiled is not None:
                compiles[index > 0].append(compiled)
    warm = _warm_starts(policies, workdir, bpf_cache, settings.starts, neighbours)
    run_dir = workdir / "reload"
    run_dir.mkdir()
    with daemon.running(policies, run_dir) as running:
        neighbours.settle([running.pid])
        changes = _Changes(running, policy_file, blocked, flipped)
        by_sighup = [changes.flip(signal_after=True) for _ in range(settings.reloads)]
        by_file = changes.file_only_series(settings.reloads)
        cli = [
            _cli_run(name, args)
            for name, args in (
                ("enforcer status", ["status", "--socket", str(running.socket)]),
                ("enforcer stats", ["stats", "--socket", str(running.socket)]),
                ("enforcer check (one file)", ["check", str(policy_file)]),
            )
        ]
    return StartReload(
        start_s=Summary.of(starts[1]),
        compile_s=optional_summary(compiles[1]),
        first_start_s=Summary.of(starts[0]),
        first_compile_s=optional_summary(compiles[0]),
        warm_start_s=Summary.of(warm),
        reload_sighup_s=Summary.of(by_sighup),
        reload_file_only_s=optional_summary(by_file),
        cli=cli,
    )


def _warm_starts(
    policies: Path, workdir: Path, bpf_cache: Path, count: int, neighbours: Neighbours
) -> list[float]:
    """Restarts of a daemon that left its program enforcing: the next one reuses it."""
    pins = daemon.BPFFS / f"enforcer-bench-warm-{secrets.token_hex(4)}"
    starts = []
    try:
        for index in range(count + 1):  # the first leaves the program for the others
            run_dir = workdir / f"warm-{index}"
            run_dir.mkdir()
            neighbours.settle()
            with daemon.running(policies, run_dir, bpf_cache, kept_pins=pins) as started:
                if index > 0:
                    starts.append(started.start_seconds)
    finally:
        daemon.unload(pins)
    return starts


def _cli_run(name: str, args: list[str]) -> CliRun:
    """Runs the CLI CLI_RUNS times after one warm-up (bytecode written, files cached).

    Peak RSS through GNU time: a child's own ru_maxrss starts from its
    parent's (the kernel keeps the high-water mark of the memory it forked
    from), and this benchmark's process is larger than the CLI.
    """
    gnu_time = shutil.which("time")
    if gnu_time is None:
        raise MeasurementError("GNU time is missing: apt-get install time (make bench does)")
    argv = [gnu_time, "-f", "%M", str(Path(sys.executable).with_name("enforcer")), *args]
    walls, rss = [], 0
    for index in range(CLI_RUNS + 1):
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise MeasurementError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        if index:
            walls.append(time.monotonic() - started)
            rss = max(rss, int(done.stderr.strip().splitlines()[-1]))
    return CliRun(command=name, wall_s=Summary.of(walls), max_rss_kib=rss)


class _Changes:
    """Adds `flipped` to the policy, or takes it out again, and times the effect."""

    def __init__(self, running: daemon.Daemon, policy_file: Path, blocked: Path, flipped: Path):
        self._daemon = running
        self._file = policy_file
        self._blocked = blocked
        self._flipped = flipped
        self._flipped_is_blocked = False
        if _is_killed(flipped):
            raise MeasurementError(f"{flipped.name} is killed before any policy names it")

    def flip(self, *, signal_after: bool, timeout: float = RELOAD_TIMEOUT_S) -> float:
        """Seconds from the policy change to the kernel enforcing it."""
        self._flipped_is_blocked = not self._flipped_is_blocked
        programs = [self._blocked, self._flipped] if self._flipped_is_blocked else [self._blocked]
        started = time.monotonic()
        host_policy.write(self._file, POLICY, programs)
        if signal_after:
            self._daemon.reload()
        self._wait_enforced(started + timeout)
        return time.monotonic() - started

    def _wait_enforced(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if _is_killed(self._flipped) == self._flipped_is_blocked:
                return
        raise MeasurementError("the policy change was not enforced in time")

    def file_only_series(self, count: int) -> list[float]:
        """Changes with no signal; empty when the daemon does not notice them by itself."""
        try:
            first = self.flip(signal_after=False, timeout=WATCH_TIMEOUT_S)
        except MeasurementError:
            self._daemon.reload()  # apply the change it did not see, and leave it consistent
            self._wait_enforced(time.monotonic() + RELOAD_TIMEOUT_S)
            return []
        return [first, *(self.flip(signal_after=False) for _ in range(count - 1))]


def _is_killed(program: Path) -> bool:
    """Runs the program once: True when SIGKILL ended it."""
    pid = os.posix_spawn(program, [str(program)], {})
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
