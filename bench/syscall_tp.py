"""Empty programs on the execve and execveat syscall tracepoints: the previous backend's hook.

The enforcer's tracepoint backend decided each exec at syscalls:sys_enter_execve
and sys_enter_execveat before it moved to sched_process_exec. This tool
attaches programs there that do nothing (bench/c/syscall_tp.c), to show what
that attachment alone costs system calls that are not exec. Runs until
SIGTERM or SIGINT: `python -m bench.syscall_tp`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import helper
from enforcer.kernel.mounts import ensure_mounts
from enforcer.kernel.preflight import require_root

SOURCE = Path(__file__).resolve().parent / "c" / "syscall_tp.c"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    require_root()
    helper.hold_stop_signals()
    ensure_mounts()
    from bcc import BPF  # noqa: PLC0415  (after the mounts: bcc fixes tracefs at import)

    bpf = BPF(src_file=str(SOURCE).encode())
    try:
        print(helper.ATTACHED, flush=True)
        helper.await_stop()
    finally:
        bpf.cleanup()


if __name__ == "__main__":
    main()
