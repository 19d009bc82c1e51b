"""Rule conditions' cost per exec: rules with calledBy and args against the same plain rules.

The exec loop is the exec overhead section's (bench/c/spawn_loop.c running
the static trivial program, pinned to one CPU, in a cgroup of its own), its
program given LOOP_ARGS. One policy selects that cgroup. For each count of
plain rules (settings.condition_rules) the configurations are:

- the plain rules alone: the baseline the others are divided by;
- the same plus CONDITIONAL_RULES rules with `calledBy` (paths and names),
  none of them naming the loop's program; then one of them naming it (action
  audit), so that its condition is evaluated for every exec, and fails;
- the same with `args.anyOf` instead: none naming the program (the arguments
  are never read), then one naming it, so that every exec's arguments are
  read and looked up, and none is a value it lists.

No condition is met and no rule names a program that runs, so no exec is
counted, let alone killed (each round checks that the kernel counted nothing).
Before the rounds, one loop per kind of condition with a rule whose condition
the loop meets (audit) checks that the kernel counts every exec: the
conditions measured are really evaluated.

Rounds go across the configurations: round r measures every configuration,
each with its own no-BPF loop right before or after it, so a configuration's
BPF time is divided by the plain rules' of the same round. BPF time per exec
is the sum over the enforcer's exec programs (sched_process_exec and, where
attached, sched_prepare_exec, which reads the caller for calledBy rules),
kept per hook too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import bpfstats
from bench.binaries import Binaries
from bench.cgroup import bench_cgroup
from bench.errors import MeasurementError, PrerequisiteError
from bench.exec_overhead import SELECTED, ExecRow, Load, Runner, Samples, enforcer_program, finish
from bench.neighbours import Neighbours
from bench.progress import say
from bench.settings import Settings
from bench.spawn import LoopResult
from bench.summary import Summary, optional_summary
from bench.synthetic import CONDITIONAL_RULES, Condition, with_conditions
from enforcer.containers.model import Container
from enforcer.kernel import backends
from enforcer.kernel.facts import probe
from enforcer.kernel.mounts import ensure_mounts
from enforcer.policy.model import ExecPolicy

# The arguments every exec of the loop gets after argv[0] (the trivial program ignores them).
LOOP_ARGS = ("-s", "-L", "-o", "/dev/null", "--retry", "3", "--max-time", "10")
# The argument an args condition lists where the loop must meet it.
MET_ARG = "-o"
PREPARE_EXEC = "sched_prepare_exec"

# Reads how many hits the loaded program has counted so far.
Counts = Callable[[], int]


@dataclass(frozen=True)
class ConditionRow:
    """One configuration: its exec loop against paired no-BPF loops, and its BPF time."""

    plain_rules: int
    condition: str  # Condition: none | calledBy | args
    names_program: bool  # a conditional rule names the loop's program (its condition is tested)
    loop: ExecRow  # label, wall and CPU ratios, BPF ns per exec
    bpf_ns_by_hook: dict[str, Summary]  # each exec program's ns per run
    # This configuration's BPF ns per exec / the plain rules' alone, in the same round.
    bpf_ratio: Summary | None
    counted: int  # hits the kernel counted in all rounds; 0, as nothing is named or met


@dataclass(frozen=True)
class MetCheck:
    """One loop with a rule whose condition the loop meets (audit): each exec counted."""

    condition: str
    execs: int
    counted: int

    @property
    def passed(self) -> bool:
        return self.counted == self.execs


@dataclass(frozen=True)
class ConditionCost:
    no_bpf: ExecRow
    rows: list[ConditionRow]
    met_checks: list[MetCheck]
    execs_per_loop: int
    rounds: int
    cpu: int
    loop_args: list[str]
    conditional_rules: int
    enforcer_backend: str

    def failed_checks(self) -> list[str]:
        failed = [
            f"conditions: a {c.condition} condition the loop meets counted {c.counted} of "
            f"{c.execs} execs"
            for c in self.met_checks
            if not c.passed
        ]
        failed += [
            f"conditions: {r.loop.label}: the kernel counted {r.counted} hits, where nothing "
            "is named or met"
            for r in self.rows
            if r.counted
        ]
        return failed


class _Configuration:
    """One configuration's policy, loaded afresh for each round, and what the rounds saw."""

    def __init__(
        self, load: Load, runner: Runner, plain: int, condition: Condition, names_program: bool
    ) -> None:
        self.plain = plain
        self.condition = condition
        self.names_program = names_program
        self.label = _label(plain, condition, names_program)
        self._policies, self._fleet = with_conditions(
            plain, condition, runner.binaries.trivial.name, load.cgroup_id,
            names_program=names_program,
        )  # fmt: skip
        self._load = load
        self.samples = Samples()
        self.by_hook: dict[str, list[float]] = defaultdict(list)
        self.counted = 0
        self._hooks: dict[int, str] = {}  # the programs of this round's load: id -> hook

    @contextmanager
    def attached(self) -> Iterator[list[int]]:
        with _loaded(self._load, self._policies, self._fleet, self.condition) as (hooks, counts):
            self._hooks = hooks
            yield list(hooks)
            self.counted += counts()

    def add(self, attached: LoopResult, baseline: LoopResult, per_run: dict[int, float]) -> None:
        by_hook = {self._hooks[p]: ns for p, ns in per_run.items()}
        if set(by_hook) != set(self._hooks.values()):
            silent = ", ".join(sorted(set(self._hooks.values()) - set(by_hook)))
            raise MeasurementError(
                f"{self.label}: bpf_stats counted no run of the enforcer's {silent} program "
                "while the loop ran (is kernel.bpf_stats_enabled still 1?)"
            )
        self.samples.attached.append(attached)
        self.samples.baseline.append(baseline)
        self.samples.bpf_ns.append(sum(by_hook.values()))
        for hook, ns in by_hook.items():
            self.by_hook[hook].append(ns)

    def row(self, plain: _Configuration) -> ConditionRow:
        ratios = [c / p for c, p in zip(self.samples.bpf_ns, plain.samples.bpf_ns, strict=True)]
        rules = self.plain + (CONDITIONAL_RULES if self.condition is not Condition.NONE else 0)
        return ConditionRow(
            plain_rules=self.plain,
            condition=str(self.condition),
            names_program=self.names_program,
            loop=finish(self.samples, self.label, "enforcer", rules, 1, exec_from=SELECTED),
            bpf_ns_by_hook={hook: Summary.of(ns) for hook, ns in sorted(self.by_hook.items())},
            bpf_ratio=optional_summary(ratios),
            counted=self.counted,
        )


def run(binaries: Binaries, settings: Settings, neighbours: Neighbours) -> ConditionCost:
    """Measures every configuration for each count of plain rules; needs root."""
    ensure_mounts()
    facts = probe()
    choice = backends.choose_backend(facts)
    with bpfstats.stats_enabled(), bench_cgroup() as (cgroup, cgroup_id):
        runner = Runner(binaries, settings, cgroup, neighbours, args=LOOP_ARGS)
        load = Load(choice.backend, facts.ring_buffer, cgroup_id)
        checks = [_met_check(runner, load, c) for c in (Condition.CALLED_BY, Condition.ARGS)]
        scales = [
            [
                _Configuration(load, runner, plain, condition, named)
                for condition, named in (
                    (Condition.NONE, False),
                    (Condition.CALLED_BY, False), (Condition.CALLED_BY, True),
                    (Condition.ARGS, False), (Condition.ARGS, True),
                )
            ]
            for plain in settings.condition_rules
        ]  # fmt: skip
        for round_index in range(settings.rounds):
            for config in (c for scale in scales for c in scale):
                say(f"  {config.label}: round {round_index + 1} of {settings.rounds}")
                ((attached, baseline, per_run),) = runner.paired_round(
                    config.attached, [cgroup], round_index
                )
                config.add(attached, baseline, per_run)
        no_bpf = Samples(attached=runner.baselines, baseline=runner.baselines)
    return ConditionCost(
        no_bpf=finish(no_bpf, "no BPF", "none", None, None, exec_from=SELECTED),
        rows=[config.row(scale[0]) for scale in scales for config in scale],
        met_checks=checks,
        execs_per_loop=settings.execs,
        rounds=settings.rounds,
        cpu=runner.cpu,
        loop_args=list(LOOP_ARGS),
        conditional_rules=CONDITIONAL_RULES,
        enforcer_backend=f"{choice.backend} ({choice.reason})",
    )


def _label(plain: int, condition: Condition, names_program: bool) -> str:
    if condition is Condition.NONE:
        return f"{plain} plain {'rule' if plain == 1 else 'rules'}"
    tested = {Condition.CALLED_BY: "caller tested", Condition.ARGS: "argv looked up"}[condition]
    named = f"program named ({tested}, not met)" if names_program else "program not named"
    return f"{plain} plain + {CONDITIONAL_RULES} {condition}, {named}"


def _met_check(runner: Runner, load: Load, condition: Condition) -> MetCheck:
    """One loop with a rule naming the loop's program whose `condition` the loop meets."""
    met_by = str(runner.binaries.spawn_loop) if condition is Condition.CALLED_BY else MET_ARG
    policies, fleet = with_conditions(
        1, condition, runner.binaries.trivial.name, load.cgroup_id, names_program=True,
        met_by=met_by,
    )  # fmt: skip
    say(f"  {condition} met (audit): checking that each exec is counted")
    with _loaded(load, policies, fleet, condition) as (_, counts):
        result = runner.loop(runner.cgroup)
        return MetCheck(condition=str(condition), execs=result.execs, counted=counts())


@contextmanager
def _loaded(
    load: Load, policies: list[ExecPolicy], fleet: list[Container], condition: Condition
) -> Iterator[tuple[dict[int, str], Counts]]:
    """The enforcer with these policies: ({exec program id: hook}, a reader of its hit count).

    On the tracepoint backend a calledBy rule needs sched_prepare_exec to read the caller:
    without it the rules could never be met, and the figures would not be theirs. Where
    the program has it, bpftool must list it, or its time would be left out.
    """
    with enforcer_program(load, policies, fleet) as (program, hooks):
        if condition is Condition.CALLED_BY and not program.rules.reads_callers:
            raise PrerequisiteError(
                f"the {load.backend} backend cannot read the calling program here (the kernel "
                f"has no {PREPARE_EXEC}, Linux 6.10+): calledBy rules cannot be measured"
            )
        attached = {h.prog_id: h.attach for h in hooks}
        has_prepare_exec = (
            load.backend is backends.Backend.TRACEPOINT and program.rules.reads_callers
        )
        if has_prepare_exec and PREPARE_EXEC not in attached.values():
            raise MeasurementError(
                f"bpftool perf show lists no {PREPARE_EXEC} program of this process (it lists "
                f"{', '.join(sorted(attached.values())) or 'none'}): its BPF time would be missing"
            )
        yield attached, lambda: sum(program.counters.counters().values())
