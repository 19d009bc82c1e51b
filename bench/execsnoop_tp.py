"""bcc's execsnoop on the syscall tracepoints: the stand-in where kprobes are missing.

Debian's `execsnoop-bpfcc` attaches kprobes only. This program does per exec
what it does (bench/c/execsnoop_tp.c) and what its userspace does with each
event: gather the arguments per pid, print one line per exec on return.
Runs until SIGTERM or SIGINT: `python -m bench.execsnoop_tp > /dev/null`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

from enforcer.kernel.mounts import ensure_mounts
from enforcer.kernel.preflight import require_root

SOURCE = Path(__file__).resolve().parent / "c" / "execsnoop_tp.c"
EVENT_ARG, EVENT_RET = 0, 1
POLL_TIMEOUT_MS = 250
HEADER = f"{'PCOMM':<16} {'PID':<7} {'PPID':<7} {'RET':>3} ARGS"


class Printer:
    """execsnoop's print_event: arguments gathered per pid, one line on return."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self._argv: defaultdict[int, list[bytes]] = defaultdict(list)

    def __call__(self, _cpu: Any, data: Any, _size: Any) -> None:
        event = self._events.event(data)
        if event.type == EVENT_ARG:
            self._argv[event.pid].append(event.argv)
            return
        args = b" ".join(self._argv.pop(event.pid, [])).replace(b"\n", b"\\n")
        if event.retval == 0:
            ppid = b"%d" % event.ppid if event.ppid > 0 else b"?"
            line = b"%-16s %-7d %-7s %3d %s\n" % (event.comm, event.pid, ppid, event.retval, args)
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-args", type=int, default=20, help="as execsnoop's --max-args")
    args = parser.parse_args()
    require_root()
    ensure_mounts()
    from bcc import BPF  # noqa: PLC0415  (after the mounts: bcc fixes tracefs at import)

    bpf = BPF(src_file=str(SOURCE).encode(), cflags=[f"-DMAXARG={args.max_args}"])
    bpf[b"events"].open_perf_buffer(Printer(bpf[b"events"]))
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(HEADER, flush=True)  # the caller's sign that the probes are attached
    try:
        while not stopping:
            bpf.perf_buffer_poll(POLL_TIMEOUT_MS)
    finally:
        bpf.cleanup()


if __name__ == "__main__":
    main()
