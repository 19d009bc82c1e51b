"""The results as tables: plain text for the terminal, Markdown for bench/README.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import bpftrace_oneliner, floor
from bench.condition_cost import MET_ARG, PREPARE_EXEC, ConditionCost
from bench.exec_overhead import SELECTED, ExecOverhead
from bench.machine import Machine
from bench.neighbours import Quietness
from bench.race import Race
from bench.results import Results
from bench.start_reload import StartReload
from bench.storm import Storm
from bench.summary import Summary
from bench.synthetic import ARG_VALUES, CALLER_NAMES, CALLER_PATHS
from bench.syscall_cost import SyscallCost
from enforcer.cli import table

README_BEGIN = "<!-- results:begin (written by python -m bench) -->"
README_END = "<!-- results:end -->"
MIB = 1024


@dataclass(frozen=True)
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    notes: Sequence[str] = field(default_factory=list)


def tables(results: Results) -> list[Table]:
    made = [_machine(results.machine, results.quietness)]
    if results.exec_overhead:
        made.append(_exec_overhead(results.exec_overhead))
    if results.condition_cost:
        made.append(_condition_cost(results.condition_cost))
    if results.syscall_cost:
        made.append(_syscall_cost(results.syscall_cost))
    if results.start_reload:
        made.append(_start_reload(results.start_reload))
    if results.storm:
        made.extend([_storm(results.storm), _memory(results.storm)])
    if results.race:
        made.append(_race(results.race))
    if results.exec_overhead and results.syscall_cost:
        made.append(_standing(results, results.exec_overhead, results.syscall_cost))
    problems = [
        *(f"{section}: not measured: {why}" for section, why in results.errors.items()),
        *(f"check failed: {failure}" for failure in results.failed_checks()),
        *_noise(results.quietness),
    ]
    if problems:
        made.append(Table("Problems", ["PROBLEM"], [[p] for p in problems]))
    return made


def text(made: Sequence[Table]) -> str:
    parts = []
    for t in made:
        notes = "".join(f"\n  {note}" for note in t.notes)
        parts.append(f"== {t.title} ==\n{table.render(t.headers, t.rows)}{notes}")
    return "\n\n".join(parts)


def markdown(made: Sequence[Table]) -> str:
    parts = []
    for t in made:
        lines = [f"### {t.title}", "", _md_row(t.headers), _md_row(["---"] * len(t.headers))]
        lines += [_md_row([str(c) for c in row]) for row in t.rows]
        lines += ["", *(f"- {note}" for note in t.notes)] if t.notes else []
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def update_readme(readme: Path, block: str) -> None:
    """Replaces what lies between the results markers of bench/README.md."""
    text_now = readme.read_text()
    head, begin, rest = text_now.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise ValueError(f"{readme} lacks the markers {README_BEGIN!r} ... {README_END!r}")
    readme.write_text(f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}")


def _noise(quiet: Quietness | None) -> list[str]:
    if quiet is None or not quiet.noisy:
        return []
    return [
        f"{quiet.noisy} of {quiet.measurements} measurements started while other work ran: "
        f"it used up to {quiet.busiest_percent:.0f}% of the CPUs",
        *(f"another process hooked exec: {hook}" for hook in quiet.hooks),
    ]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _machine(m: Machine, quiet: Quietness | None) -> Table:
    load = ", ".join(f"{x:.2f}" for x in m.load_average)
    rows = [
        ["date", m.date_utc],
        ["kernel (uname -r)", m.kernel],
        [
            "CPUs (nproc)",
            f"{m.cpus} x {m.cpu_model}{' (virtual machine)' if m.virtualized else ''}",
        ],
        ["memory", f"{m.memory_gib} GiB"],
        ["system", f"{m.os}, Python {m.python}, bcc {m.bcc}"],
        ["enforcer", m.enforcer_commit],
        ["load average at start", load],
    ]
    if quiet is not None:
        rows.append(["quiet when measuring", _quiet_summary(quiet)])
    return Table("Machine", ["WHAT", "VALUE"], rows)


def _quiet_summary(quiet: Quietness) -> str:
    """Whether each measurement started with no other exec hook and idle CPUs."""
    waited = f"after waiting {quiet.waited_s:.0f} s in all for other work to end"
    if not quiet.noisy:
        return f"yes, at the start of all {quiet.measurements} measurements ({waited})"
    return f"no, at {quiet.noisy} of {quiet.measurements} measurements ({waited}): see Problems"


def _ratio(s: Summary) -> str:
    return f"{s.median:.3f} ({s.q1:.3f}-{s.q3:.3f})"


def _exec_overhead(e: ExecOverhead) -> Table:
    rows = [
        [
            r.label,
            f"{r.us_per_exec.median:.1f}",
            _ratio(r.ratio),
            f"{r.cpu_us_per_exec.median:.1f}",
            _ratio(r.cpu_ratio),
            f"{r.bpf_ns_per_exec.median:.0f}" if r.bpf_ns_per_exec else "-",
            f"{r.bpf_share_percent:.2f}%" if r.bpf_share_percent is not None else "-",
        ]
        for r in e.rows
    ]
    notes = [
        f"Median of {e.rounds} rounds; each round runs {e.execs_per_loop} fork+exec+wait of a "
        "static do-nothing program with the tool attached, and as many with no BPF, seconds "
        "apart. RATIO: attached / no BPF in the same round, median (quartiles); WALL is "
        "elapsed time, CPU the user + system time of the loop and its children (without the "
        f"time other work kept it waiting). Loops pinned to CPU {e.cpu}.",
        "BPF ns/exec: run_time_ns / run_cnt from the kernel (kernel.bpf_stats_enabled=1), summed "
        "over the tool's programs that run on exec; BPF SHARE: of the exec's CPU time.",
        "Enforcer rows: the loop runs in a cgroup of the selected containers; no rule names the "
        "program, so each exec takes the lookups and misses; in the allowlist row (default kill) "
        "an allow rule names it, so each exec is looked up, found, and let run. Backend: "
        f"{e.enforcer_backend}.",
        "seed's hand-written floor: bench/floor.py on the same hook as the enforcer "
        "(sched_process_exec, a raw tracepoint): the caller's cgroup id compared to the loop's "
        "and, in that cgroup, the basename of the file that runs (bprm->file->f_path.dentry->"
        "d_name, at offsets from the kernel's BTF) read and compared to one fixed name, SIGKILL on "
        "a match (each round checks that it kills a program of that name). The least a "
        'hand-written "kill X in cgroup C" does: the floor under what the general design pays.',
        "bpftrace one-liner: Debian's bpftrace, `tracepoint:sched:sched_process_exec /cgroup == "
        'ID && comm == "NAME"/ { signal("SIGKILL"); }` (bench/bpftrace_oneliner.py), what a user '
        "would type instead; each round checks that it kills a program of that name.",
        e.execsnoop_note + ".",
    ]
    headers = [
        "CONFIGURATION", "WALL us", "WALL RATIO", "CPU us", "CPU RATIO", "BPF ns/exec",
        "BPF SHARE",
    ]  # fmt: skip
    return Table("Exec overhead and per-exec BPF cost", headers, rows, notes)


def _condition_cost(c: ConditionCost) -> Table:
    rows = [[c.no_bpf.label, f"{c.no_bpf.us_per_exec.median:.1f}", "-", "-", "-", "-", "-"]]
    for r in c.rows:
        prepare = r.bpf_ns_by_hook.get(PREPARE_EXEC)
        rows.append([
            r.loop.label,
            f"{r.loop.us_per_exec.median:.1f}",
            _ratio(r.loop.ratio),
            _ratio(r.loop.cpu_ratio),
            _ns(r.loop.bpf_ns_per_exec),
            _ns(prepare),
            _ratio(r.bpf_ratio) if r.bpf_ratio else "-",
        ])  # fmt: skip
    checks = "; ".join(
        f"{m.condition}: {m.counted} of {m.execs} execs counted"
        + ("" if m.passed else " (NOT all)")
        for m in c.met_checks
    )
    notes = [
        f"Median of {c.rounds} rounds; each round runs every configuration: {c.execs_per_loop} "
        "fork+exec+wait of the static do-nothing program (the exec overhead loop, in a cgroup "
        f"of its own, pinned to CPU {c.cpu}), its argv `trivial {' '.join(c.loop_args)}`, with "
        "the enforcer loaded, and as many with no BPF right before or after. WALL and CPU "
        "RATIO: attached / no BPF in the same round, median (quartiles).",
        "BPF ns/exec: run_time_ns / run_cnt (kernel.bpf_stats_enabled=1) summed over the "
        f"enforcer's exec programs; PREPARE_EXEC ns: the part of it {PREPARE_EXEC} took (it "
        "reads the caller for calledBy rules; '-' where not attached). BPF RATIO: BPF "
        "ns/exec / the plain rules' alone (the first row of the same count) in the same "
        "round, median (quartiles).",
        f"One policy selects the loop's cgroup: the plain kill rules, and {c.conditional_rules} "
        f"kill rules each with its own calledBy ({CALLER_PATHS} paths, {CALLER_NAMES} names) "
        f"or args (anyOf, {ARG_VALUES} values). "
        "Every rule's name has the length of the program's (the kernel skips the basename "
        "lookup where no name of that length is in the set), and none is it; 'one names the "
        "program': the first conditional rule names it instead, action audit, so its "
        "condition is evaluated for every exec, and fails. No exec was counted or killed. "
        f"Backend: {c.enforcer_backend}.",
        "Checked first, with a rule whose condition the loop meets (the caller's path; the "
        f"argument {MET_ARG}), action audit: {checks}.",
    ]
    headers = [
        "CONFIGURATION", "WALL us", "WALL RATIO", "CPU RATIO", "BPF ns/exec",
        "PREPARE_EXEC ns", "BPF RATIO",
    ]  # fmt: skip
    return Table("Rule conditions (calledBy, args): per-exec BPF cost", headers, rows, notes)


def _standing(results: Results, execs: ExecOverhead, calls: SyscallCost) -> Table:
    """The floor, bpftrace and the enforcer side by side, from the sections of this run."""
    rows = []
    for label, tool in (
        (floor.LABEL, "floor"), (bpftrace_oneliner.LABEL, "bpftrace"),
        ("enforcer 1 rule x 1 container (the daemon)", "enforcer"),
    ):  # fmt: skip
        # The enforcer's smallest configuration, from the selected cgroup.
        matching = (r for r in execs.rows if r.tool == tool and r.exec_from == SELECTED
                    and r.rules in (None, 1) and r.containers in (None, 1))  # fmt: skip
        exec_row = next(matching, None)
        call_row = calls.row(tool)
        start, rss = (exec_row.start_s, exec_row.memory) if exec_row else (None, None)
        if tool == "enforcer":
            start = results.start_reload.start_s if results.start_reload else None
            rss = results.storm.memory_idle if results.storm else None
        rows.append([
            label,
            _ns(exec_row.bpf_ns_per_exec) if exec_row else "-",
            f"{exec_row.ratio.median:.3f}" if exec_row else "-",
            f"{call_row.ratio.median:.3f}" if call_row else "-",
            f"{start.median * 1000:.0f} ms" if start else "-",
            f"{rss.vm_rss_kib / MIB:.1f} MiB" if rss else "-",
        ])  # fmt: skip
    notes = [
        "Each figure from this run's sections: BPF ns per exec and the exec-loop wall ratio from "
        "the exec overhead table, the getppid wall ratio from the system call table, start "
        "(spawn -> the first kill; for the enforcer, -> enforcing, from the start table) and VmRSS "
        "once attached (for the enforcer, idle, from the memory table). The floor and "
        "bpftrace know one name in one cgroup and nothing else: no policies, paths, inodes, "
        "scripts, counters, events or restarts.",
    ]
    headers = ["TOOL", "BPF ns/exec", "EXEC RATIO", "GETPPID RATIO", "START", "RSS"]
    return Table("Where enforcer stands: the floor and a bpftrace one-liner", headers, rows, notes)


def _ns(summary: Summary | None) -> str:
    return f"{summary.median:.0f}" if summary else "-"


def _syscall_cost(s: SyscallCost) -> Table:
    rows = [
        [
            r.label,
            f"{r.ns_per_call.median:.1f}",
            _ratio(r.ratio),
            f"{r.cpu_ns_per_call.median:.1f}",
            _ratio(r.cpu_ratio),
            ", ".join(r.hooks) or "-",
        ]
        for r in s.rows
    ]
    notes = [
        f"Median of {s.rounds} rounds; each round runs {s.calls_per_loop} getppid() system calls "
        "(syscall(SYS_getppid), bench/c/getppid_loop.c) with the configuration attached, and as "
        "many with no BPF, right before or after. RATIO: attached / no BPF in the same round, "
        "median (quartiles); WALL from CLOCK_MONOTONIC around the loop, CPU the loop's user + "
        f"system time (getrusage). Loops pinned to CPU {s.cpu}, in a cgroup of their own.",
        "enforcer: `enforcer run` (backend "
        f"{s.enforcer_backend}) with a host policy, which selects the loop's cgroup. Syscall "
        "tracepoints: programs that return 0 on syscalls:sys_enter_execve and sys_enter_execveat "
        "(bench/syscall_tp.py); they never run for getppid, but while any sys_enter_* program is "
        "attached every system call of every task takes the slow path. HOOKS: what `bpftool perf "
        "show` lists for the tool's process.",
        *_syscall_target(s),
        *(
            [
                "Other processes had syscall tracepoints attached before some loops, which slows "
                f"the baselines too: {'; '.join(s.foreign_syscall_hooks)}."
            ]
            if s.foreign_syscall_hooks
            else []
        ),
    ]
    headers = ["CONFIGURATION", "WALL ns", "WALL RATIO", "CPU ns", "CPU RATIO", "HOOKS"]
    return Table("Cost to other system calls (getppid)", headers, rows, notes)


def _syscall_target(s: SyscallCost) -> list[str]:
    row = s.row("enforcer")
    if row is None:
        return []
    verdicts = [
        f"{what} {ratio.median:.3f} ({'met' if ratio.median <= s.target_ratio else 'NOT met'})"
        for what, ratio in (("CPU", row.cpu_ratio), ("wall", row.ratio))
    ]
    return [f"Target: the enforcer's ratio at most {s.target_ratio:.2f}: {', '.join(verdicts)}."]


def _summary_row(what: str, s: Summary | None, scale: float, unit: str) -> list[object]:
    if s is None:
        return [what, "-", "-", 0]
    return [what, f"{s.median * scale:.0f} {unit}", f"{s.high * scale:.0f} {unit}", s.n]


def _start_reload(s: StartReload) -> Table:
    rows = [
        _summary_row("enforcer run -> enforcing, first start", s.first_start_s, 1000, "ms"),
        _summary_row("  of which BPF compile + load (daemon log)", s.first_compile_s, 1000, "ms"),
        _summary_row("enforcer run -> enforcing, program cached", s.start_s, 1000, "ms"),
        _summary_row("  of which BPF load (daemon log)", s.compile_s, 1000, "ms"),
        _summary_row("enforcer run -> enforcing, restart (reused)", s.warm_start_s, 1000, "ms"),
        _summary_row("policy file change + SIGHUP -> enforced", s.reload_sighup_s, 1000, "ms"),
    ]
    if s.reload_file_only_s is not None:
        rows.append(
            _summary_row("policy file change alone -> enforced", s.reload_file_only_s, 1000, "ms")
        )
    for cli in s.cli:
        rows.append(_summary_row(f"{cli.command} (peak RSS {cli.max_rss_kib // MIB} MiB)",
                                 cli.wall_s, 1000, "ms"))  # fmt: skip
    notes = [
        "Enforced: the program the change adds to (or takes out of) a host policy is run in a "
        "loop until its fate flips.",
        *(
            []
            if s.reload_file_only_s
            else ["A file change alone was not enforced within 3 s: this daemon reloads on SIGHUP."]
        ),
    ]
    return Table("Start and reload", ["WHAT", "MEDIAN", "WORST", "N"], rows, notes)


def _storm(s: Storm) -> Table:
    per_loop = s.attempts // max(s.loops, 1)
    rows = [
        ["attempts", f"{s.attempts} ({s.loops} parallel loops of {per_loop})"],
        ["killed", f"{s.killed} ({'all' if s.all_killed else f'{s.not_killed} NOT killed'})"],
        [
            "counted by the daemon (enforcer stats)",
            f"{s.counted} ({'exact' if s.counters_exact else 'MISMATCH'})",
        ],
        ["ring buffer drops (status event_drops)", str(s.event_drops)],
        ["failed bpf_send_signal calls", ", ".join(f"{k} {v}" for k, v in s.signal_errors.items())],
        ["storm wall time", f"{s.wall_s:.2f} s ({s.attempts / s.wall_s:.0f} attempts/s)"],
        [
            "daemon CPU during the storm",
            f"{s.daemon_cpu_s:.2f} s ({100 * s.daemon_cpu_s / s.wall_s:.0f}% of one CPU)",
        ],
        ["daemon CPU until it handled the last event", f"{s.daemon_cpu_with_drain_s:.2f} s"],
    ]
    return Table("Exec storm", ["WHAT", "VALUE"], rows)


def _memory(s: Storm) -> Table:
    rows = [
        [when, f"{m.vm_rss_kib / MIB:.1f} MiB", f"{m.rss_anon_kib / MIB:.1f} MiB"]
        for when, m in (("idle", s.memory_idle), ("after the storm", s.memory_after))
    ]
    return Table("Daemon memory", ["WHEN", "VmRSS", "RssAnon"], rows)


def _race(r: Race) -> Table:
    appear = r.appear_s
    rows = [
        [
            r.containers,
            r.kills,
            r.escapes,
            r.other,
            f"{appear.median * 1000:.0f} ms" if appear else "-",
            f"{appear.high * 1000:.0f} ms" if appear else "-",
            r.appear_misses,
        ]
    ]
    headers = ["CONTAINERS", "KILLED", "ESCAPED", "OTHER", "APPEAR MEDIAN", "WORST", "NOT SEEN"]
    notes = [
        "podman containers whose entrypoint a policy forbids, started after the policy; "
        "APPEAR: `podman run -d` returning -> listed by the daemon."
    ]
    return Table("New-container race", headers, rows, notes)
