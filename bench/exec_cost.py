"""Per-exec cost of the enforcer's BPF program, from the kernel's own accounting.

For each configuration (rules x selected cgroup ids) the program is loaded,
its maps filled by the real compiler, and a loop of execs runs inside one of
the selected cgroups. With `kernel.bpf_stats_enabled=1` the kernel sums the
time spent in the program; run_time_ns / run_cnt is the cost per exec. The
same loop from an unselected cgroup shows the cost where no policy applies.

Run as root: `.venv/bin/python bench/exec_cost.py` (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer import kernel
from enforcer.compiler import compile_policies
from enforcer.containers.cgroup import find_cgroup2_mount
from enforcer.containers.model import Container
from enforcer.policy.model import ExecPolicy

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
CONFIGS = ((1, 1), (100, 100), (10_000, 1_000))
POLICIES_PER_CONFIG = 10
EXEC_LOOP = """
import os, sys
for _ in range(int(sys.argv[1])):
    pid = os.posix_spawn("/bin/true", ["true"], {})
    os.waitpid(pid, 0)
"""


@dataclass(frozen=True)
class Cost:
    rules: int
    cgroups: int
    where: str
    execs: int
    ns_per_exec: float
    wall_us_per_exec: float  # the whole fork+exec+wait, for scale

    @property
    def share(self) -> float:
        """The BPF program's part of one exec's wall time, in percent."""
        return 100 * self.ns_per_exec / (1000 * self.wall_us_per_exec)


def synthetic(
    rules: int, cgroups: int, real_cgroup: int
) -> tuple[list[ExecPolicy], list[Container]]:
    """`rules` kill rules in up to ten policies over `cgroups` containers, one of them real."""
    policies_n = min(POLICIES_PER_CONFIG, rules, cgroups)
    containers = [
        Container(
            id=f"bench{i:059d}", runtime="runc", cgroup_ids=(real_cgroup if i == 0 else 10**9 + i,)
        )
        for i in range(cgroups)
    ]
    policies = []
    for p in range(policies_n):
        mine = containers[p::policies_n]
        rule_count = rules // policies_n + (1 if p < rules % policies_n else 0)
        policies.append(
            ExecPolicy.model_validate(
                {
                    "apiVersion": "enforcer/v1",
                    "kind": "ExecPolicy",
                    "metadata": {"name": f"bench-{p}"},
                    "spec": {
                        "selector": {"containers": {"ids": [c.id for c in mine]}},
                        "rules": [
                            {"name": f"r{r}", "match": {"names": [f"bench-prog-{p}-{r}"]}}
                            for r in range(rule_count)
                        ],
                    },
                }
            )
        )
    return policies, containers


@contextmanager
def bpf_stats() -> Iterator[None]:
    previous = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield
    finally:
        STATS_SYSCTL.write_text(previous)


@contextmanager
def bench_cgroup() -> Iterator[tuple[Path, int]]:
    path = find_cgroup2_mount() / f"enforcer-bench-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path, path.stat().st_ino
    finally:
        path.rmdir()


def prog_stats(prog_id: int) -> tuple[int, int]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "id", str(prog_id), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    info = json.loads(out.stdout)
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


def exec_loop(execs: int, cgroup: Path | None) -> None:
    def join() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    subprocess.run([sys.executable, "-c", EXEC_LOOP, str(execs)], preexec_fn=join, check=True)


def measure(program: Any, execs: int, cgroup: Path | None) -> tuple[int, float, float]:
    """(execs counted, BPF ns per exec, wall us per exec) for one exec loop."""
    execve_prog = program.info.program_ids[0]
    time_before, count_before = prog_stats(execve_prog)
    started = time.perf_counter()
    exec_loop(execs, cgroup)
    wall = time.perf_counter() - started
    time_after, count_after = prog_stats(execve_prog)
    runs = count_after - count_before
    return runs, (time_after - time_before) / max(runs, 1), wall * 1e6 / execs


def run(execs: int) -> list[Cost]:
    kernel.require_root()
    kernel.ensure_mounts()
    facts = kernel.probe()
    choice = kernel.choose_backend(facts)
    from enforcer.bpf_program import ExecProgram  # noqa: PLC0415  (bcc after the mounts)

    results = []
    with bpf_stats(), bench_cgroup() as (cgroup, cgroup_id):
        for rules, cgroups in CONFIGS:
            program = ExecProgram(choice.backend, ring_buffer=facts.ring_buffer)
            try:
                policies, containers = synthetic(rules, cgroups, cgroup_id)
                program.apply(compile_policies(policies, containers).maps)
                for where, target in (("selected cgroup", cgroup), ("unselected", None)):
                    results.append(Cost(rules, cgroups, where, *measure(program, execs, target)))
            finally:
                program.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=3000, help="execs per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = run(args.execs)
    if args.json:
        print(json.dumps([{**r.__dict__, "share_percent": r.share} for r in results], indent=2))
        return
    print(f"{'rules':>7} {'cgroups':>7}  {'exec from':16} {'execs':>6}  {'BPF ns/exec':>11}  "
          f"{'exec wall us':>12}  {'BPF share':>9}")  # fmt: skip
    for r in results:
        print(f"{r.rules:>7} {r.cgroups:>7}  {r.where:16} {r.execs:>6}  {r.ns_per_exec:>11.0f}  "
              f"{r.wall_us_per_exec:>12.0f}  {r.share:>8.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()
