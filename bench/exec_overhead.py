"""Exec overhead and per-exec BPF cost: no BPF, execsnoop, the floor, and enforcer at each scale.

Each configuration runs `rounds` times. A round is one loop of execs with the
tool attached and one with no BPF at all, right before or right after it (in
turn), so every ratio has its own baseline, measured seconds apart. The loop
(bench/c/spawn_loop.c) runs N posix_spawn+wait of a static do-nothing program,
pinned to one CPU, inside a cgroup of its own that the enforcer configurations
select. Each loop gives its wall time and its CPU time (itself and its
children, user + system): the second leaves out time spent waiting for a CPU
that other work held, so it stays readable on a busy machine. The kernel's own
accounting (bpf_stats) gives the BPF time per exec.

Beside the enforcer's rows, a hand-written floor (bench/floor.py): the least a
program that kills one name in one cgroup does on the same hook, the cost
the enforcer's general design is measured against; and what a user would
pick instead, a bpftrace one-liner (bench/bpftrace_oneliner.py). Both run in
a process of their own, started afresh each round: their start (spawn ->
first kill of a program of the name) and their VmRSS are kept too.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench import bpfstats, bpftrace_oneliner, execsnoop, floor, helper
from bench.binaries import Binaries
from bench.cgroup import bench_cgroup
from bench.errors import MeasurementError
from bench.neighbours import Neighbours
from bench.proc import Memory, memory
from bench.progress import say
from bench.settings import Settings
from bench.spawn import LoopResult, run_loop
from bench.summary import Summary, optional_summary
from bench.synthetic import allowlist, synthetic
from enforcer.containers.model import Container
from enforcer.enforce.compiler import compile_policies
from enforcer.kernel import backends
from enforcer.kernel.facts import probe
from enforcer.kernel.mounts import ensure_mounts
from enforcer.policy.model import ExecPolicy

if TYPE_CHECKING:
    from enforcer.bpf.program import ExecProgram

SELECTED = "selected cgroup"
UNSELECTED = "unselected cgroup"
# How long a tool may take, once it says it is attached, to kill its target.
KILL_CHECK_S = 5.0
# Paths in the allowlist row's one allow rule.
ALLOWLIST_ENTRIES = 1000

# Yields the ids of the attached programs that run on exec.
Attach = Callable[[], AbstractContextManager[list[int]]]


@dataclass(frozen=True)
class ExecRow:
    """One configuration: exec time with it attached, against its paired baselines."""

    label: str
    tool: str  # none | execsnoop | floor | bpftrace | enforcer
    rules: int | None
    containers: int | None
    exec_from: str
    us_per_exec: Summary  # wall time
    baseline_us_per_exec: Summary
    ratio: Summary  # attached / baseline wall time, per round
    cpu_us_per_exec: Summary  # CPU time
    baseline_cpu_us_per_exec: Summary
    cpu_ratio: Summary  # attached / baseline CPU time, per round
    bpf_ns_per_exec: Summary | None
    bpf_share_percent: float | None  # of the exec's CPU time, medians
    # For a tool in a process of its own (the floor, bpftrace): spawn -> first kill, per
    # round, and its memory once attached (the largest VmRSS seen).
    start_s: Summary | None = None
    memory: Memory | None = None


@dataclass(frozen=True)
class ExecOverhead:
    rows: list[ExecRow]
    execs_per_loop: int
    rounds: int
    cpu: int
    execsnoop_used: str
    execsnoop_note: str
    enforcer_backend: str  # as `enforcer run --backend auto` would choose it


@dataclass
class Samples:
    """Per round: the loop with the tool attached, its baseline, the BPF ns per exec."""

    attached: list[LoopResult] = field(default_factory=list)
    baseline: list[LoopResult] = field(default_factory=list)
    bpf_ns: list[float] = field(default_factory=list)


class Runner:
    """Runs loops of the trivial program and keeps an eye on foreign exec hooks.

    Each exec of the trivial program gets `args` after its argv[0] (it ignores them).
    """

    def __init__(
        self, binaries: Binaries, settings: Settings, cgroup: Path, neighbours: Neighbours,
        *, args: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.binaries = binaries
        self.execs = settings.execs
        self.args = tuple(args)
        self.cgroup = cgroup
        self.neighbours = neighbours
        self.cpu = max(os.sched_getaffinity(0))
        self.baselines: list[LoopResult] = []
        self.own_pids = {os.getpid()}

    def loop(self, cgroup: Path | None) -> LoopResult:
        self.neighbours.settle(self.own_pids)
        result = run_loop(
            self.binaries.spawn_loop, self.binaries.trivial, self.execs, cgroup=cgroup,
            cpu=self.cpu, args=self.args,
        )  # fmt: skip
        if result.exited != result.execs:
            raise MeasurementError(
                f"the trivial program should exit 0 every time, but: {result} (is another "
                "enforcer running with a policy that names it?)"
            )
        return result

    def killed(self, program: Path) -> bool:
        """Runs `program` once from the loop's cgroup: True when SIGKILL ended it."""
        result = run_loop(self.binaries.spawn_loop, program, 1, cgroup=self.cgroup, cpu=self.cpu)
        return result.killed == 1

    def baseline(self) -> LoopResult:
        result = self.loop(self.cgroup)
        self.baselines.append(result)
        return result

    def paired_round(
        self, attach: Attach, wheres: Sequence[Path | None], round_index: int
    ) -> list[tuple[LoopResult, LoopResult, dict[int, float]]]:
        """(attached loop, baseline loop, BPF ns per run of each program that ran) per place
        the loop runs from."""
        before = self.baseline() if round_index % 2 == 0 else None
        measured = []
        with attach() as prog_ids:
            for where in wheres:
                start = bpfstats.totals(prog_ids)
                result = self.loop(where)
                measured.append((result, bpfstats.ns_per_run(start, bpfstats.totals(prog_ids))))
        baseline = before if before is not None else self.baseline()
        return [(result, baseline, ns) for result, ns in measured]


def run(binaries: Binaries, settings: Settings, neighbours: Neighbours) -> ExecOverhead:
    """Measures every configuration of `settings`; needs root."""
    ensure_mounts()
    facts = probe()
    choice = backends.choose_backend(facts)
    failure = execsnoop.real_tool_failure()
    tracer_argv = execsnoop.command(use_real_tool=failure is None)
    with bpfstats.stats_enabled(), bench_cgroup() as (cgroup, cgroup_id):
        runner = Runner(binaries, settings, cgroup, neighbours)
        load = Load(choice.backend, facts.ring_buffer, cgroup_id)
        label = "execsnoop" if failure is None else "execsnoop (tracepoint stand-in)"
        (snoop,) = _measure(
            runner, settings, label, lambda: _execsnoop_attached(tracer_argv, runner.own_pids),
            [cgroup],
        )  # fmt: skip
        rows = [finish(snoop, label, "execsnoop", None, None, exec_from=SELECTED)]
        rows.append(_floor_row(runner, settings, cgroup_id))
        rows.append(_bpftrace_row(runner, settings, cgroup_id))
        for rules, containers in settings.configs:
            largest = (rules, containers) == max(settings.configs)
            rows.extend(
                _enforcer_rows(runner, settings, load, rules, containers, unselected=largest)
            )
        rows.append(_allowlist_row(runner, settings, load))
        no_bpf = Samples(attached=runner.baselines, baseline=runner.baselines)
        rows.insert(0, finish(no_bpf, "no BPF", "none", None, None, exec_from=SELECTED))
    return ExecOverhead(
        rows=rows,
        execs_per_loop=settings.execs,
        rounds=settings.rounds,
        cpu=runner.cpu,
        execsnoop_used=" ".join(tracer_argv[-1:]),
        enforcer_backend=f"{choice.backend} ({choice.reason})",
        execsnoop_note=(
            "Debian's execsnoop-bpfcc attached"
            if failure is None
            else f"Debian's execsnoop-bpfcc cannot run here ({failure}); bench/execsnoop_tp.py, "
            "the same work on the syscall tracepoints, stands in for it"
        ),
    )


def _floor_row(runner: Runner, settings: Settings, cgroup_id: int) -> ExecRow:
    """The floor, killing a name the loop never runs, in the loop's cgroup."""
    target = runner.binaries.copy_of_trivial(f"enforcer-bench-{secrets.token_hex(4)}-floor")
    tool = _Tool(runner, floor.command(cgroup_id, target.name), helper.ATTACHED, target)
    (sample,) = _measure(runner, settings, floor.LABEL, tool.attached, [runner.cgroup])
    return tool.finish(finish(sample, floor.LABEL, "floor", None, None, exec_from=SELECTED))


def _bpftrace_row(runner: Runner, settings: Settings, cgroup_id: int) -> ExecRow:
    """The bpftrace one-liner, killing a name the loop never runs, in the loop's cgroup."""
    target = runner.binaries.copy_of_trivial(f"enfb-{secrets.token_hex(4)}")
    argv = bpftrace_oneliner.command(cgroup_id, target.name)
    tool = _Tool(runner, argv, bpftrace_oneliner.READY, target)
    (sample,) = _measure(runner, settings, bpftrace_oneliner.LABEL, tool.attached, [runner.cgroup])
    return tool.finish(
        finish(sample, bpftrace_oneliner.LABEL, "bpftrace", None, None, exec_from=SELECTED)
    )


def _allowlist_row(runner: Runner, settings: Settings, load: Load) -> ExecRow:
    """An allowlist of ALLOWLIST_ENTRIES paths (default kill) naming the loop's programs."""
    label = f"enforcer allowlist of {ALLOWLIST_ENTRIES} paths, the program allowed"
    allowed = [str(runner.binaries.trivial), str(runner.binaries.spawn_loop)]

    def attach() -> AbstractContextManager[list[int]]:
        return _enforcer_attached(load, *allowlist(ALLOWLIST_ENTRIES, allowed, load.cgroup_id))

    (sample,) = _measure(runner, settings, label, attach, [runner.cgroup])
    return finish(sample, label, "enforcer", ALLOWLIST_ENTRIES, 1, exec_from=SELECTED)


def _enforcer_rows(
    runner: Runner, settings: Settings, load: Load, rules: int, containers: int,
    *, unselected: bool,
) -> list[ExecRow]:  # fmt: skip
    """The loop from the selected cgroup; at the largest scale also from an unselected one."""
    label = f"enforcer {rules} rules x {containers} containers"
    wheres: list[Path | None] = [runner.cgroup, None] if unselected else [runner.cgroup]
    samples = _measure(
        runner, settings, label,
        lambda: _enforcer_attached(load, *synthetic(rules, containers, load.cgroup_id)), wheres,
    )  # fmt: skip
    return [
        finish(
            sample,
            label,
            "enforcer",
            rules,
            containers,
            exec_from=SELECTED if where else UNSELECTED,
        )
        for sample, where in zip(samples, wheres, strict=True)
    ]


def _measure(
    runner: Runner, settings: Settings, label: str, attach: Attach,
    wheres: Sequence[Path | None],
) -> list[Samples]:  # fmt: skip
    samples = [Samples() for _ in wheres]
    for round_index in range(settings.rounds):
        say(f"  {label}: round {round_index + 1} of {settings.rounds}")
        measured = runner.paired_round(attach, wheres, round_index)
        for sample, (attached, baseline, per_run) in zip(samples, measured, strict=True):
            sample.attached.append(attached)
            sample.baseline.append(baseline)
            if (bpf_ns := bpfstats.ns_per_exec(per_run)) is not None:
                sample.bpf_ns.append(bpf_ns)
    return samples


def finish(
    sample: Samples, label: str, tool: str, rules: int | None, containers: int | None,
    *, exec_from: str,
) -> ExecRow:  # fmt: skip
    pairs = list(zip(sample.attached, sample.baseline, strict=True))
    cpu_us = Summary.of([a.cpu_us_per_exec for a, _ in pairs])
    ns = optional_summary(sample.bpf_ns)
    return ExecRow(
        label=label if exec_from == SELECTED else f"{label}, exec from an unselected cgroup",
        tool=tool,
        rules=rules,
        containers=containers,
        exec_from=exec_from,
        us_per_exec=Summary.of([a.us_per_exec for a, _ in pairs]),
        baseline_us_per_exec=Summary.of([b.us_per_exec for _, b in pairs]),
        ratio=Summary.of([a.us_per_exec / b.us_per_exec for a, b in pairs]),
        cpu_us_per_exec=cpu_us,
        baseline_cpu_us_per_exec=Summary.of([b.cpu_us_per_exec for _, b in pairs]),
        cpu_ratio=Summary.of([a.cpu_us_per_exec / b.cpu_us_per_exec for a, b in pairs]),
        bpf_ns_per_exec=ns,
        bpf_share_percent=100 * ns.median / (1000 * cpu_us.median) if ns else None,
    )


@contextmanager
def _execsnoop_attached(argv: list[str], own_pids: set[int]) -> Iterator[list[int]]:
    with execsnoop.running(argv) as pid:
        own_pids.add(pid)
        try:
            yield [h.prog_id for h in bpfstats.exec_hooks_of(pid)]
        finally:
            own_pids.discard(pid)


class _Tool:
    """A tool in a process of its own, started afresh per round, timed and weighed."""

    def __init__(self, runner: Runner, argv: list[str], ready_mark: str, target: Path) -> None:
        self._runner = runner
        self._argv = argv
        self._ready_mark = ready_mark
        self._target = target
        self._starts: list[float] = []
        self._memory: Memory | None = None

    @contextmanager
    def attached(self) -> Iterator[list[int]]:
        """Its exec hooks, once it has shown it kills `target` in the loop's cgroup."""
        started = time.monotonic()
        with helper.running(self._argv, self._ready_mark) as pid:
            self._runner.own_pids.add(pid)
            try:
                if not self._kills_soon():
                    raise MeasurementError(
                        f"{self._argv[0]} did not kill {self._target.name} in the loop's cgroup"
                    )
                self._starts.append(time.monotonic() - started)  # spawn -> its first kill
                weighed = memory(pid)
                if self._memory is None or weighed.vm_rss_kib > self._memory.vm_rss_kib:
                    self._memory = weighed
                yield [h.prog_id for h in bpfstats.exec_hooks_of(pid)]
            finally:
                self._runner.own_pids.discard(pid)

    def _kills_soon(self) -> bool:
        """bpftrace says it is attaching a moment before its probe is in place."""
        deadline = time.monotonic() + KILL_CHECK_S
        while not self._runner.killed(self._target):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def finish(self, row: ExecRow) -> ExecRow:
        return replace(row, start_s=optional_summary(self._starts), memory=self._memory)


@dataclass(frozen=True)
class Load:
    """How the daemon would load its program here, and the real cgroup of container 0."""

    backend: backends.Backend
    ring_buffer: bool
    cgroup_id: int


@contextmanager
def enforcer_program(
    load: Load, policies: list[ExecPolicy], fleet: list[Container]
) -> Iterator[tuple[ExecProgram, list[bpfstats.Hook]]]:
    """The enforcer's program, loaded in this process, its maps filled with these policies;
    and its hooks on exec (sched_process_exec, and sched_prepare_exec where attached)."""
    from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (bcc after the mounts)

    program = ExecProgram(load.backend, ring_buffer=load.ring_buffer)
    try:
        program.rules.apply(compile_policies(policies, fleet).maps)
        ours = set(program.info.program_ids)
        yield program, [h for h in bpfstats.exec_hooks_of(os.getpid()) if h.prog_id in ours]
    finally:
        program.close()


@contextmanager
def _enforcer_attached(
    load: Load, policies: list[ExecPolicy], fleet: list[Container]
) -> Iterator[list[int]]:
    """The ids of the exec programs of enforcer_program."""
    with enforcer_program(load, policies, fleet) as (_, hooks):
        yield [h.prog_id for h in hooks]
