"""Measure one backend on the running kernel: BCC compile time and the cost per exec.

Loads the exec program with the backend asked for, applies a host policy that
names a program which never runs (so every exec does all its lookups and
misses, the common case), turns on the kernel's own BPF accounting
(kernel.bpf_stats_enabled), runs --execs execs of /bin/true and reads
run_time_ns / run_cnt of the exec hook's program with bpftool. tests/vm/vm.py
runs it inside the VM; it runs on the host too. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from enforcer.enforce.compiler import compile_policies
from enforcer.kernel import backends
from enforcer.kernel.backends import Backend
from enforcer.kernel.facts import probe
from enforcer.kernel.mounts import ensure_mounts
from enforcer.kernel.preflight import require_root
from enforcer.policy.model import ExecPolicy

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
NEVER_RUN = "enforcer-measure-never-runs"


def host_policy() -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "measure"},
            "spec": {
                "selector": {"host": True},
                "rules": [{"name": "never", "match": {"names": [NEVER_RUN]}}],
            },
        }
    )


def prog_stats(program_ids: tuple[int, ...]) -> dict[int, tuple[str, int, int]]:
    """Program id -> (name, run_time_ns, run_cnt), from bpftool."""
    stats = {}
    for prog_id in program_ids:
        out = subprocess.run(
            ["bpftool", "prog", "show", "id", str(prog_id), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info: dict[str, Any] = json.loads(out)
        stats[prog_id] = (
            str(info.get("name", "?")),
            int(info.get("run_time_ns", 0)),
            int(info.get("run_cnt", 0)),
        )
    return stats


def measure(backend: Backend, execs: int) -> dict[str, object]:
    require_root()
    ensure_mounts()
    facts = probe()
    choice = backends.choose_backend(facts, backend)
    from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (bcc after the mounts)

    program = ExecProgram(choice.backend, ring_buffer=facts.ring_buffer)
    previous = STATS_SYSCTL.read_text().strip()
    try:
        program.rules.apply(compile_policies([host_policy()], []).maps)
        STATS_SYSCTL.write_text("1")
        before = prog_stats(program.info.program_ids)
        started = time.monotonic()
        for _ in range(execs):
            subprocess.run(["/bin/true"], check=True)
        wall = time.monotonic() - started
        after = prog_stats(program.info.program_ids)
    finally:
        STATS_SYSCTL.write_text(previous)
        program.close()
    # The exec hook is the program that ran about once per exec; the cgroup
    # tracepoints barely run.
    deltas = {
        prog_id: (name, after[prog_id][1] - ns, after[prog_id][2] - count)
        for prog_id, (name, ns, count) in before.items()
    }
    name, run_ns, runs = max(deltas.values(), key=lambda d: d[2])
    return {
        "kernel": facts.release,
        "backend": str(choice.backend),
        "compile_seconds": round(program.info.load_seconds, 2),
        "program": name,
        "execs": execs,
        "run_cnt": runs,
        "run_time_ns": run_ns,
        "ns_per_exec": round(run_ns / runs, 1) if runs else None,
        "wall_ms_per_exec": round(1000 * wall / execs, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[b.value for b in Backend], default="auto")
    parser.add_argument("--execs", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(Backend(args.backend), args.execs)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
