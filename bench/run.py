"""Runs the benchmark suite, prints a table, writes results.json, results.png and the README.

Run as root from the repository root:
    python -m bench            the full suite (make bench), about 20 minutes
    python -m bench --quick    fewer rounds and containers, about 6 minutes
    python -m bench --smoke    tiny counts: checks that every benchmark starts
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench import (
    condition_cost,
    exec_overhead,
    machine,
    plot,
    race,
    report,
    start_reload,
    storm,
    syscall_cost,
)
from bench.binaries import Binaries, build
from bench.errors import BenchError
from bench.neighbours import Neighbours
from bench.progress import say
from bench.results import Results
from bench.settings import SETTINGS, Mode
from enforcer.errors import EnforcerError
from enforcer.kernel.preflight import require_root

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS = ("exec", "conditions", "syscall", "start-reload", "storm", "race")


def main() -> None:
    args = _parse()
    for signum in (signal.SIGTERM, signal.SIGINT):  # so every `finally` cleans up
        signal.signal(signum, _interrupt)
    try:
        require_root()
        code = _main(args)
    except EnforcerError as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        say("interrupted; what the suite had started is stopped and removed")
        code = 130
    sys.exit(code)


def _main(args: argparse.Namespace) -> int:
    mode = Mode.SMOKE if args.smoke else Mode.QUICK if args.quick else Mode.FULL
    # Only a whole measuring run replaces the results kept in bench/.
    complete = mode is not Mode.SMOKE and not args.only
    patience = 0.0 if mode is Mode.SMOKE else args.patience
    with tempfile.TemporaryDirectory(prefix="enforcer-bench-") as tmp:
        results = _run(mode, args.only or list(SECTIONS), Path(tmp), Neighbours(patience))
        out = args.out or (BENCH_DIR if complete else Path(tmp))
        _write(results, out, readme=complete and out == BENCH_DIR)
        print(report.text(report.tables(results)))
    failed = [*results.errors, *results.failed_checks()]
    if mode is Mode.SMOKE and not failed:
        print("\nsmoke: every benchmark started and passed its checks")
    return 1 if failed else 0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds and containers")
    size.add_argument("--smoke", action="store_true", help="tiny counts; writes nothing in bench/")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        help="run only these sections; writes nothing in bench/",
    )
    parser.add_argument(
        "--out", type=Path,
        help="where results.json and results.png go (default: bench/ for a whole run)",
    )  # fmt: skip
    parser.add_argument(
        "--patience", type=float, default=900.0,
        help="seconds the run may wait, in all, for other exec hooks and busy CPUs to go "
        "before its measurements (default 900)",
    )  # fmt: skip
    return parser.parse_args()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(mode: Mode, sections: list[str], workdir: Path, neighbours: Neighbours) -> Results:
    results = Results(machine=machine.describe(), settings=SETTINGS[mode])
    binaries = build(workdir)
    for name in sections:
        say(f"{name} ({mode} run)")
        neighbours.settle()
        started = time.monotonic()
        try:
            _measure(name, results, binaries, workdir, neighbours)
        except (BenchError, EnforcerError) as e:
            results.errors[name] = str(e)
            say(f"{name} failed: {e}")
        say(f"{name} done in {time.monotonic() - started:.0f} s")
    results.quietness = neighbours.quietness()
    return results


def _measure(
    name: str, results: Results, binaries: Binaries, workdir: Path, neighbours: Neighbours
) -> None:
    settings = results.settings
    match name:
        case "exec":
            results.exec_overhead = exec_overhead.run(binaries, settings, neighbours)
        case "conditions":
            results.condition_cost = condition_cost.run(binaries, settings, neighbours)
        case "syscall":
            results.syscall_cost = syscall_cost.run(binaries, settings, workdir, neighbours)
        case "start-reload":
            results.start_reload = start_reload.run(binaries, settings, workdir, neighbours)
        case "storm":
            results.storm = storm.run(binaries, settings, workdir, neighbours)
        case "race":
            results.race = race.run(settings, workdir)


def _write(results: Results, out: Path, *, readme: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        plot.write(results, out / "results.png")
    except BenchError as e:
        results.errors["plot"] = str(e)
        say(f"no plot: {e}")
    results.write_json(out / "results.json")
    if readme:
        block = report.markdown(report.tables(results))
        report.update_readme(BENCH_DIR / "README.md", block)
    say(
        f"wrote {out / 'results.json'}, {out / 'results.png'}"
        + (" and README.md" if readme else "")
    )
