"""bench/results.png: exec overhead, per-exec BPF cost, and start/reload times."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.errors import PrerequisiteError
from bench.exec_overhead import ExecOverhead, ExecRow
from bench.results import Results
from bench.start_reload import StartReload
from bench.summary import Summary


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as e:
        raise PrerequisiteError(
            "matplotlib is missing: apt-get install python3-matplotlib "
            "(or pip install -e '.[bench]' in the venv)"
        ) from e
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def write(results: Results, path: Path) -> None:
    plt = _pyplot()
    panels = [
        draw
        for draw, data in (
            (_ratio_panel, results.exec_overhead),
            (_bpf_panel, results.exec_overhead),
            (_lifecycle_panel, results.start_reload),
        )
        if data is not None
    ]
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6), squeeze=False)
    for draw, ax in zip(panels, axes[0], strict=True):
        draw(ax, results)
    m = results.machine
    figure.suptitle(f"enforcer benchmarks: {m.kernel}, {m.cpus} CPUs, {m.date_utc}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _short(row: ExecRow) -> str:
    if row.tool != "enforcer":
        return row.label.replace(" (tracepoint stand-in)", "\n(tracepoint stand-in)")
    where = "" if row.exec_from == "selected cgroup" else "\nexec from unselected"
    return f"enforcer {row.rules}r x {row.containers}c{where}"


def _dots(
    ax: Any, labels: list[str], summaries: list[Summary], color: str, *, shift: float = 0.0,
    legend: str | None = None,
) -> None:  # fmt: skip
    """Medians as dots, quartiles as whiskers, first label at the top."""
    where = [i + shift for i in range(len(labels))]
    medians = [s.median for s in summaries]
    spread = [[s.median - s.q1 for s in summaries], [s.q3 - s.median for s in summaries]]
    ax.errorbar(medians, where, xerr=spread, fmt="o", capsize=3, color=color, label=legend)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)


def _ratio_panel(ax: Any, results: Results) -> None:
    overhead: ExecOverhead | None = results.exec_overhead
    assert overhead is not None
    rows = overhead.rows
    labels = [_short(r) for r in rows]
    _dots(ax, labels, [r.ratio for r in rows], "tab:blue", shift=-0.15, legend="wall time")
    _dots(ax, labels, [r.cpu_ratio for r in rows], "tab:orange", shift=0.15, legend="CPU time")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.legend()
    ax.set_xlabel("exec time / no-BPF baseline in the same round (median, quartiles)")
    ax.set_title("Exec overhead")


def _bpf_panel(ax: Any, results: Results) -> None:
    overhead = results.exec_overhead
    assert overhead is not None
    rows = [r for r in overhead.rows if r.bpf_ns_per_exec is not None]
    ns = [r.bpf_ns_per_exec for r in rows if r.bpf_ns_per_exec is not None]
    _dots(ax, [_short(r) for r in rows], ns, "tab:red")
    ax.set_xscale("log")
    ax.set_xlabel("BPF ns per exec (kernel bpf_stats, log scale)")
    ax.set_title("Per-exec BPF cost")


def _lifecycle_panel(ax: Any, results: Results) -> None:
    times: StartReload | None = results.start_reload
    assert times is not None
    named = [
        ("first start\n(compiles)", times.first_start_s),
        ("cold start\n(cached)", times.start_s),
        ("BPF load\n(cached)", times.compile_s),
        ("restart\n(reused)", times.warm_start_s),
        ("policy change\n+ SIGHUP", times.reload_sighup_s),
        ("policy change\nalone", times.reload_file_only_s),
    ]
    present = [(label, s) for label, s in named if s is not None]
    labels = [label for label, _ in present]
    medians = [s.median * 1000 for _, s in present]
    bars = ax.bar(labels, medians, color="tab:green", label="median")
    ax.bar_label(bars, labels=[f"{m:.0f} ms" for m in medians])
    ax.scatter(labels, [s.high * 1000 for _, s in present], color="black", marker="_", s=400,
               label="worst", zorder=3)  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("ms (log scale)")
    ax.legend()
    ax.set_title("Start and reload")
