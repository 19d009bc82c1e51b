"""Syscall cost: what an exec hook costs the system calls that are not exec.

A loop of getppid() system calls (bench/c/getppid_loop.c), pinned to one CPU
inside a cgroup of its own, runs `syscall_rounds` times per configuration. A
round is one loop with the configuration attached and one with no BPF at
all, right before or right after it (in turn), as in the exec overhead
rounds, so every ratio has its own baseline. The configurations:

- the enforcer: the daemon, `enforcer run`, started as an operator starts it,
  with a host policy, which selects every cgroup outside a container, the
  loop's among them. It decides at the raw tracepoint sched_process_exec,
  which no other system call passes.
- the seed's hand-written floor (bench/floor.py) and a bpftrace one-liner
  (bench/bpftrace_oneliner.py), each killing a name nothing runs in the
  loop's cgroup: the same hook, sched_process_exec, as the enforcer.
- syscall tracepoints: empty programs on syscalls:sys_enter_execve and
  sys_enter_execveat (bench/syscall_tp.py), the hook the tracepoint backend
  used before. They never run for getppid; attaching them sets the
  syscall-tracepoint work flag on every task, and every system call of every
  task takes the slow path while they are attached.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import bpfstats, bpftrace_oneliner, daemon, floor, helper, host_policy
from bench.binaries import Binaries
from bench.cgroup import bench_cgroup
from bench.errors import MeasurementError
from bench.neighbours import Neighbours
from bench.progress import say
from bench.settings import Settings
from bench.summary import Summary

# The target for the enforcer: attached / no BPF, median.
TARGET_RATIO = 1.01
POLICY = "bench-syscall"
ENFORCER_LABEL = "enforcer (the daemon, a host policy)"
TRACEPOINTS_LABEL = "syscall tracepoints (the previous backend's hook)"
TRACEPOINTS = ("sys_enter_execve", "sys_enter_execveat")

# Attaches a configuration for the block; yields the hooks its process attached.
Attach = Callable[[], AbstractContextManager[list[str]]]


@dataclass(frozen=True)
class CallLoop:
    """What one getppid loop printed (see getppid_loop.c)."""

    calls: int
    elapsed_ns: int
    cpu_ns: int  # user + system time of the loop

    @property
    def ns_per_call(self) -> float:
        return self.elapsed_ns / self.calls

    @property
    def cpu_ns_per_call(self) -> float:
        return self.cpu_ns / self.calls


@dataclass(frozen=True)
class SyscallRow:
    """One configuration: a system call's time with it attached, against paired baselines."""

    label: str
    tool: str  # none | enforcer | floor | bpftrace | syscall-tracepoints
    hooks: list[str]  # what `bpftool perf show` lists for the tool's process
    ns_per_call: Summary  # wall time
    baseline_ns_per_call: Summary
    ratio: Summary  # attached / baseline wall time, per round
    cpu_ns_per_call: Summary  # CPU time
    baseline_cpu_ns_per_call: Summary
    cpu_ratio: Summary  # attached / baseline CPU time, per round


@dataclass(frozen=True)
class SyscallCost:
    rows: list[SyscallRow]
    calls_per_loop: int
    rounds: int
    cpu: int
    enforcer_backend: str  # as the daemon's status gives it
    target_ratio: float
    # Syscall tracepoints of other processes seen before a loop: they slow the baselines too.
    foreign_syscall_hooks: list[str]

    def row(self, tool: str) -> SyscallRow | None:
        return next((r for r in self.rows if r.tool == tool), None)


@dataclass
class _Samples:
    """Per round: the loop with the configuration attached, and its baseline."""

    attached: list[CallLoop] = field(default_factory=list)
    baseline: list[CallLoop] = field(default_factory=list)
    hooks: set[str] = field(default_factory=set)


class _Runner:
    """Runs getppid loops and notes other processes' syscall tracepoints."""

    def __init__(
        self, binaries: Binaries, settings: Settings, cgroup: Path, neighbours: Neighbours
    ) -> None:
        self.program = binaries.getppid_loop
        self.calls = settings.syscall_calls
        self.cgroup = cgroup
        self.neighbours = neighbours
        self.cpu = max(os.sched_getaffinity(0))
        self.baselines: list[CallLoop] = []
        self.own_pids = {os.getpid()}
        self.foreign: set[str] = set()

    def loop(self) -> CallLoop:
        self.neighbours.settle(self.own_pids)
        self.foreign.update(
            f"pid {h.pid} on {h.attach}" for h in bpfstats.foreign_syscall_hooks(self.own_pids)
        )
        argv = [str(self.program), "-g", str(self.cgroup), "-c", str(self.cpu), str(self.calls)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise MeasurementError(
                f"getppid_loop exited {result.returncode}: {result.stderr.strip()}"
            )
        return CallLoop(**json.loads(result.stdout))

    def baseline(self) -> CallLoop:
        result = self.loop()
        self.baselines.append(result)
        return result

    def paired_round(self, attach: Attach, round_index: int) -> tuple[CallLoop, CallLoop, set[str]]:
        """(attached loop, baseline loop, hooks attached)."""
        before = self.baseline() if round_index % 2 == 0 else None
        with attach() as hooks:
            result = self.loop()
        baseline = before if before is not None else self.baseline()
        return result, baseline, set(hooks)


def run(
    binaries: Binaries, settings: Settings, workdir: Path, neighbours: Neighbours
) -> SyscallCost:
    """Measures the enforcer and the syscall tracepoints against no BPF; needs root."""
    policies = workdir / "syscall-policies"
    policies.mkdir()
    # A name nothing runs: the policy selects the loop's cgroup and never kills.
    host_policy.write(policies / "syscall.yaml", POLICY, [workdir / "enforcer-bench-never-run"])
    with bench_cgroup() as (cgroup, cgroup_id):
        runner = _Runner(binaries, settings, cgroup, neighbours)
        enforcer = _Enforcer(runner, policies, workdir)
        never_run = f"enforcer-bench-{secrets.token_hex(4)}"
        peers = [
            (floor.LABEL, "floor", floor.command(cgroup_id, never_run), helper.ATTACHED),
            (bpftrace_oneliner.LABEL, "bpftrace",
             bpftrace_oneliner.command(cgroup_id, never_run[:15]), bpftrace_oneliner.READY),
        ]  # fmt: skip
        measured = [
            (
                ENFORCER_LABEL,
                "enforcer",
                _measure(runner, settings, ENFORCER_LABEL, enforcer.attached),
            ),
            (
                TRACEPOINTS_LABEL,
                "syscall-tracepoints",
                _measure(
                    runner, settings, TRACEPOINTS_LABEL, lambda: _tracepoints_attached(runner)
                ),
            ),
        ]
        for label, tool, argv, mark in peers:
            attach = functools.partial(_tool_attached, runner, argv, mark)
            measured.append((label, tool, _measure(runner, settings, label, attach)))
    no_bpf = _Samples(attached=runner.baselines, baseline=runner.baselines)
    return SyscallCost(
        rows=[
            _finish(no_bpf, "no BPF", "none"),
            *(_finish(samples, label, tool) for label, tool, samples in measured),
        ],
        calls_per_loop=settings.syscall_calls,
        rounds=settings.syscall_rounds,
        cpu=runner.cpu,
        enforcer_backend=enforcer.backend,
        target_ratio=TARGET_RATIO,
        foreign_syscall_hooks=sorted(runner.foreign),
    )


def _measure(runner: _Runner, settings: Settings, label: str, attach: Attach) -> _Samples:
    samples = _Samples()
    for round_index in range(settings.syscall_rounds):
        say(f"  {label}: round {round_index + 1} of {settings.syscall_rounds}")
        attached, baseline, hooks = runner.paired_round(attach, round_index)
        samples.attached.append(attached)
        samples.baseline.append(baseline)
        samples.hooks |= hooks
    return samples


def _finish(sample: _Samples, label: str, tool: str) -> SyscallRow:
    pairs = list(zip(sample.attached, sample.baseline, strict=True))
    return SyscallRow(
        label=label,
        tool=tool,
        hooks=sorted(sample.hooks),
        ns_per_call=Summary.of([a.ns_per_call for a, _ in pairs]),
        baseline_ns_per_call=Summary.of([b.ns_per_call for _, b in pairs]),
        ratio=Summary.of([a.ns_per_call / b.ns_per_call for a, b in pairs]),
        cpu_ns_per_call=Summary.of([a.cpu_ns_per_call for a, _ in pairs]),
        baseline_cpu_ns_per_call=Summary.of([b.cpu_ns_per_call for _, b in pairs]),
        cpu_ratio=Summary.of([a.cpu_ns_per_call / b.cpu_ns_per_call for a, b in pairs]),
    )


@contextmanager
def _tool_attached(runner: _Runner, argv: list[str], ready_mark: str) -> Iterator[list[str]]:
    with helper.running(argv, ready_mark) as pid:
        runner.own_pids.add(pid)
        try:
            yield _hooks_of(pid)
        finally:
            runner.own_pids.discard(pid)


def _hooks_of(pid: int) -> list[str]:
    return sorted({h.attach for h in bpfstats.hooks() if h.pid == pid})


class _Enforcer:
    """The daemon with the host policy, started afresh for each round."""

    def __init__(self, runner: _Runner, policies: Path, workdir: Path) -> None:
        self._runner = runner
        self._policies = policies
        self._workdir = workdir
        self._starts = itertools.count()
        self.backend = "?"

    @contextmanager
    def attached(self) -> Iterator[list[str]]:
        run_dir = self._workdir / f"syscall-enforcer-{next(self._starts)}"
        run_dir.mkdir()
        with daemon.running(self._policies, run_dir) as running:
            self._runner.own_pids.add(running.pid)
            try:
                self.backend = str(running.cli_json("status")["backend"])
                running.wait_idle()
                yield _hooks_of(running.pid)
            finally:
                self._runner.own_pids.discard(running.pid)


@contextmanager
def _tracepoints_attached(runner: _Runner) -> Iterator[list[str]]:
    """bench/syscall_tp.py in its own process, once bpftool lists both of its tracepoints."""
    with helper.running(helper.module_command("syscall_tp")) as pid:
        runner.own_pids.add(pid)
        try:
            hooks = _hooks_of(pid)
            if not set(TRACEPOINTS) <= set(hooks):
                raise MeasurementError(
                    f"bench/syscall_tp.py should attach {', '.join(TRACEPOINTS)}; bpftool lists "
                    f"{', '.join(hooks) or 'nothing'} for it"
                )
            yield hooks
        finally:
            runner.own_pids.discard(pid)
