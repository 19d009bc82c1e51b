"""Run enforcer's integration tests on Debian's own kernels under qemu: kernel x backend.

This machine's kernel has neither kprobes nor a loadable BPF LSM, so the
backends are tested on second kernels: Debian 12's 6.1 and 6.12, both with
kprobes and BPF LSM, booted with TCG (no KVM here). Each cell of the matrix,
a kernel and a backend (lsm, kprobe, tracepoint), gets a fresh boot (two at
once: the host has two cores), in which guest.sh runs the steps written
here: `enforcer doctor --json`, a measurement of the BCC compile time and the
per-exec cost (measure.py), then pytest with ENFORCER_BACKEND set: host
processes and runc containers on a busybox rootfs in the guest's tmpfs.
Results come back through a second, writable 9p share; matrix.py reads them,
prints one table and checks that `doctor` agrees with what passed.

Everything lives in one temporary directory per boot, removed at the end;
qemu is killed with this process (PR_SET_PDEATHSIG) if the driver dies first,
and at the deadline otherwise.

Usage, as root, after `make test-vm`'s set-up:
    .venv/bin/python tests/vm/vm.py [--kernels 6.1 6.12] [--backends lsm kprobe tracepoint]
        [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from boot import QEMU, Fleet, Kernel, VmError, build_initramfs, find_kernel, run_vm
from matrix import BACKENDS, CellResult, doctor_disagreements, read_results, report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KERNELS = ("6.1", "6.12")
# What every backend runs on every kernel: host processes killed, denied and
# audited, the file identity cases, runc containers (no podman in the guest)
# selected by id with a neighbour left alone, deny in a container, a new
# container's entrypoint held and killed, a shell that a calledBy rule kills
# (or, where the backend cannot read the caller, the policy refused), and
# doctor's live verdicts.
EVERY_BACKEND_TESTS = (
    "tests/integration/test_backends.py",
    "tests/integration/test_file_identity.py",
    "tests/integration/test_enforce_containers.py",
    "tests/integration/test_called_by_containers.py",
    "tests/integration/test_lifecycle.py",
    "tests/integration/test_doctor_live.py",
)
# And what lsm and kprobe run only here: the program's own lookups and
# counters, reloads, and the links that keep the hooks attached while no
# daemon runs. The tracepoint backend runs these on this host's kernel with
# the rest of the suite (they took 330 of its 810 s per boot).
VM_ONLY_TESTS = (
    "tests/integration/test_enforce_host.py",
    "tests/integration/test_bpf_program.py",
    "tests/integration/test_persistence.py::test_enforcement_has_no_gap_across_kill_9_and_restart",
)
# Both kernels have BPF ring buffers, and the daemon uses them there: the
# perf buffer cases (kernels before 5.8) run on the host only. Each costs a
# BCC compile, about a minute under emulation.
DEFAULT_SELECTION = "not perf-buffer"
# A boot of the default tests took 10-15 minutes on this 2-core machine.
BOOT_TIMEOUT_S = 45 * 60


def steps_script(repo: Path, backend: str, tests: Sequence[str], pytest_args: Sequence[str]) -> str:
    """What the guest runs, from the checkout's root; results go to /vm-results."""
    python = shlex.quote(str(repo / ".venv" / "bin" / "python"))
    pytest = shlex.join(
        [
            "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=-ra", "-v",
            # A test hung in the VM shows where it hangs (traceback dumped to the console).
            "-o", "faulthandler_timeout=600",
            "--junitxml=/vm-results/junit.xml", *tests,
            *([] if "-k" in pytest_args else ["-k", DEFAULT_SELECTION]), *pytest_args,
        ]
    )  # fmt: skip
    where = shlex.quote(str(repo))
    return "\n".join(
        [
            # Hidden by a tmpfs guest.sh mounted (/tmp, /run): bring it back.
            f"[ -d {where}/.venv ] || "
            f"{{ mkdir -p {where} && mount --bind /mnt/host{where} {where}; }}",
            f"cd {where} || exit 1",
            # Bytecode of the checkout's own modules, once, into the guest's
            # overlay: a clone has none, and compiling them again at every
            # interpreter start (each daemon, each CLI call) costs seconds
            # under emulation.
            "unset PYTHONDONTWRITEBYTECODE",
            f"{python} -m compileall -q enforcer tests bench",
            f"{python} -m enforcer doctor --json > /vm-results/doctor.json",
            'echo "vm: enforcer doctor exited $?"',
            f"{python} tests/vm/measure.py --backend {backend} --out /vm-results/measure.json",
            f"ENFORCER_BACKEND={backend} ENFORCER_DAEMON_START_TIMEOUT_S=300 {python} {pytest}",
            "",
        ]
    )


def default_tests(backend: str) -> tuple[str, ...]:
    return EVERY_BACKEND_TESTS + (() if backend == "tracepoint" else VM_ONLY_TESTS)


def run_cell(
    kernel: Kernel,
    backend: str,
    tests: Sequence[str],
    pytest_args: Sequence[str],
    *,
    timeout: float,
    fleet: Fleet,
) -> CellResult:
    tag = f"{kernel.series} {backend}"
    with tempfile.TemporaryDirectory(prefix=f"enforcer-vm-{kernel.series}-{backend}-") as temp:
        work = Path(temp)
        share = work / "share"
        share.mkdir()
        initramfs = work / "initramfs.cpio"
        build_initramfs(kernel, initramfs)
        shutil.copy2(HERE / "guest.sh", share / "guest.sh")
        (share / "steps.sh").write_text(steps_script(REPO, backend, tests, pytest_args))
        started = time.monotonic()
        print(f"vm.py: [{tag}] booting {kernel.image} with {QEMU} (TCG)", flush=True)
        run_vm(kernel, initramfs, share, timeout=timeout, tag=tag, fleet=fleet)
        result = read_results(kernel.series, kernel.release, backend, share)
        result.seconds = time.monotonic() - started
        return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), metavar="SERIES")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--timeout", type=float, default=BOOT_TIMEOUT_S, help="per boot, seconds")
    parser.add_argument("--tests", nargs="+", help="instead of each backend's default tests")
    parser.add_argument("--jobs", type=int, default=2, help="VMs at once (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("vm.py: run as root (the guest loads BPF programs as root over a root-owned share)")
        return 2
    fleet = Fleet()

    def stop(signum: int, _frame: FrameType | None) -> None:
        fleet.kill_all()
        raise SystemExit(128 + signum)  # unwinds: the temp dirs go as each boot returns

    signal.signal(signal.SIGTERM, stop)
    try:
        kernels = [find_kernel(series) for series in dict.fromkeys(args.kernels)]
        cells = [(k, b) for k in kernels for b in BACKENDS if b in args.backends]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [
                pool.submit(
                    run_cell,
                    k,
                    b,
                    args.tests or default_tests(b),
                    args.pytest_args,
                    timeout=args.timeout,
                    fleet=fleet,
                )
                for k, b in cells
            ]
            results = [future.result() for future in futures]
    except KeyboardInterrupt:
        fleet.kill_all()
        raise
    except VmError as e:
        print(f"vm.py: {e}", file=sys.stderr)
        return 2
    print(report(results), flush=True)
    return 0 if all(r.ok for r in results) and not doctor_disagreements(results) else 1


if __name__ == "__main__":
    sys.exit(main())
