"""The hand-written floor: kill one program name in one cgroup, and nothing else.

bench/c/floor.c, on the raw tracepoint the enforcer decides at
(sched_process_exec): the caller's cgroup id compared to one id and, in that
cgroup, the basename of the file that runs read and compared to one fixed
name, SIGKILL on a match. What any program that kills X in cgroup C must do at
least; the enforcer's general design (policies, sets, paths, inodes, counters,
events) is paid for above it. Struct offsets come from the kernel's BTF, as
the enforcer's do (enforcer/kernel/layout.py).
Runs until SIGTERM or SIGINT: `python -m bench.floor --cgroup-id ID --name NAME`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench import helper
from enforcer.errors import KernelSupportError
from enforcer.kernel.facts import current_layout
from enforcer.kernel.mounts import ensure_mounts
from enforcer.kernel.preflight import require_root

SOURCE = Path(__file__).resolve().parent / "c" / "floor.c"
LABEL = "seed's hand-written floor"  # its rows in the tables
# The fields floor.c reads, as enforcer/kernel/layout.py names their -D flags.
OFFSETS = ("OFF_BPRM_FILE", "OFF_FILE_PATH", "OFF_PATH_DENTRY", "OFF_DENTRY_NAME", "OFF_QSTR_NAME")
# A name that needs no quoting inside a -D flag.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def cflags(cgroup_id: int, name: str) -> list[str]:
    """The -D flags of floor.c: the cgroup, the name and the running kernel's offsets."""
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"{name!r}: give a basename of letters, digits, '.', '_' or '-'")
    layout = current_layout()
    if layout is None or any(field not in layout.offsets for field in OFFSETS):
        raise KernelSupportError(
            "the kernel's BTF (/sys/kernel/btf/vmlinux) does not give the offsets of "
            f"{', '.join(OFFSETS)}: the floor reads the exec's file at them"
        )
    return [
        f"-DCGROUP_ID={cgroup_id}ULL",
        f'-DTARGET_NAME="{name}"',
        *(f"-D{field}={layout.offsets[field]}" for field in OFFSETS),
    ]


def command(cgroup_id: int, name: str) -> list[str]:
    return helper.module_command("floor", "--cgroup-id", str(cgroup_id), "--name", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cgroup-id", type=int, required=True, help="the cgroup v2 id")
    parser.add_argument("--name", required=True, help="the basename to kill in that cgroup")
    args = parser.parse_args()
    require_root()
    helper.hold_stop_signals()
    ensure_mounts()
    from bcc import BPF  # noqa: PLC0415  (after the mounts: bcc fixes tracefs at import)

    bpf = BPF(src_file=str(SOURCE).encode(), cflags=cflags(args.cgroup_id, args.name))
    try:
        print(helper.ATTACHED, flush=True)
        helper.await_stop()
    finally:
        bpf.cleanup()


if __name__ == "__main__":
    main()
