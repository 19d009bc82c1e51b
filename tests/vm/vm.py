"""Boot Debian's 6.1 kernel under qemu and run enforcer's integration tests in it, per backend.

This machine's kernel has neither kprobes nor a loadable BPF LSM, so the `lsm`
and `kprobe` backends are tested on a second kernel: Debian's 6.1, which has
both, booted with TCG (no KVM here). The VM shares the host's / read-only over
9p with a tmpfs overlay on top (init.sh), so it runs this checkout, its .venv,
bcc and the 6.1 headers exactly as they are on the host; only the kernel
differs. Each backend gets a fresh boot (both at once: a BCC compile uses
one CPU, and the host has two), in which guest.sh runs the steps
written here: `enforcer doctor --json`, a measurement of the BCC compile time
and the per-exec cost (measure.py), then pytest with ENFORCER_BACKEND set.
Results come back through a second, writable 9p share.

Everything lives in one temporary directory, removed at the end; qemu is
killed with this process (PR_SET_PDEATHSIG) if the driver dies first, and at
the deadline otherwise.

Usage, as root, after `make test-vm`'s set-up:
    .venv/bin/python tests/vm/vm.py [--backend lsm] [--backend kprobe] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
KERNEL_SERIES = "6.1.0-"
# What the initramfs needs to mount the host's / over virtio 9p with an overlay.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
BACKENDS = ("lsm", "kprobe")
# No runc or podman containers in the VM: host processes cover kill, audit,
# deny, counters, reloads and the program's own lookups; and the links that
# keep each backend's hooks attached while no daemon runs.
DEFAULT_TESTS = (
    "tests/integration/test_backends.py",
    "tests/integration/test_enforce_host.py",
    "tests/integration/test_bpf_program.py",
    "tests/integration/test_doctor_live.py",
    "tests/integration/test_file_identity.py",
    "tests/integration/test_persistence.py::test_enforcement_has_no_gap_across_kill_9_and_restart",
)
# The 6.1 kernel has BPF ring buffers, and the daemon uses them there: the
# perf buffer cases (kernels before 5.8) run on the host only. Each costs a
# BCC compile, about a minute under emulation.
DEFAULT_SELECTION = "not perf-buffer"
MEMORY = "3G"
# A boot with the default tests took 50-70 minutes on a slow day of this
# 2-core machine (every BCC compile 60-110 s under emulation).
BOOT_TIMEOUT_S = 60 * 60
PR_SET_PDEATHSIG = 1


class VmError(RuntimeError):
    """Raised when the VM cannot be prepared or booted: says what is missing and what to do."""


class Fleet:
    """The qemu processes running now, so that a signal to the driver stops them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[bytes]] = []

    def add(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.append(process)

    def remove(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.remove(process)

    def kill_all(self) -> None:
        with self._lock:
            for process in self._processes:
                process.kill()


@dataclass(frozen=True)
class Kernel:
    release: str
    image: Path
    modules: Path


@dataclass
class BackendResult:
    backend: str
    exit_code: int | None = None
    seconds: float = 0.0
    tests: list[tuple[str, str]] = field(default_factory=list)  # (test id, outcome)
    measure: dict[str, object] = field(default_factory=dict)
    doctor: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for _, o in self.tests if o == outcome)

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and bool(self.tests)
            and self.count("failed") == 0
            and self.count("error") == 0
        )


def find_kernel(release: str | None = None) -> Kernel:
    """The newest Debian 6.1 kernel installed with its modules and matching headers."""
    candidates = sorted(
        (p.name.removeprefix("vmlinuz-") for p in Path("/boot").glob(f"vmlinuz-{KERNEL_SERIES}*")),
        key=_version_key,
    )
    if release is not None:
        candidates = [c for c in candidates if c == release]
    for candidate in reversed(candidates):
        modules = Path("/lib/modules") / candidate
        if (modules / "modules.dep").exists() and (modules / "build" / "include").is_dir():
            return Kernel(candidate, Path("/boot") / f"vmlinuz-{candidate}", modules)
    raise VmError(
        f"no Debian {KERNEL_SERIES}* kernel with its modules and matching headers is installed "
        f"(looked for /boot/vmlinuz-{KERNEL_SERIES}* and /lib/modules/<release>/build/include); "
        "run `make test-vm`, which installs linux-image-amd64 and linux-headers-amd64"
    )


def _version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", release)]


def module_order(modules_dep: str, wanted: Iterable[str]) -> list[str]:
    """Module files (relative to /lib/modules/<release>) to insmod, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, ()):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise VmError(f"kernel module {name} is not in modules.dep")
        visit(by_name[name])
    return order


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


@dataclass(frozen=True)
class CpioEntry:
    name: str
    mode: int
    data: bytes = b""


def newc_archive(entries: Sequence[CpioEntry]) -> bytes:
    """An uncompressed cpio archive in the kernel's initramfs ("newc") format."""
    out = bytearray()

    def add(ino: int, entry: CpioEntry) -> None:
        name = entry.name.encode() + b"\0"
        fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(entry.data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate(entries, start=1):
        add(ino, entry)
    add(0, CpioEntry("TRAILER!!!", 0))
    return bytes(out)


def build_initramfs(kernel: Kernel, out: Path) -> None:
    if not BUSYBOX.exists():
        raise VmError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    order = module_order((kernel.modules / "modules.dep").read_text(), MODULES)
    directory, executable, regular = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG
    entries = [CpioEntry(d, directory) for d in ("bin", "dev", "proc", "sys", "modules")]
    entries.append(CpioEntry("bin/busybox", executable, BUSYBOX.read_bytes()))
    entries.append(CpioEntry("init", executable, (HERE / "init.sh").read_bytes()))
    for path in order:
        if not path.endswith(".ko"):
            raise VmError(f"{path} is compressed; the initramfs loads plain .ko modules only")
        data = (kernel.modules / path).read_bytes()
        entries.append(CpioEntry(f"modules/{Path(path).name}", regular | 0o644, data))
    names = "".join(f"{Path(p).name}\n" for p in order)
    entries.append(CpioEntry("modules/order", regular | 0o644, names.encode()))
    out.write_bytes(newc_archive(entries))


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
            "export PYTHONDONTWRITEBYTECODE=1",
            f"{python} -m enforcer doctor --json > /vm-results/doctor.json",
            'echo "vm: enforcer doctor exited $?"',
            f"{python} tests/vm/measure.py --backend {backend} --out /vm-results/measure.json",
            f"ENFORCER_BACKEND={backend} ENFORCER_DAEMON_START_TIMEOUT_S=300 {python} {pytest}",
            "",
        ]
    )


def run_vm(
    kernel: Kernel, initramfs: Path, share: Path, *, timeout: float, tag: str, fleet: Fleet
) -> int | None:
    """Boots, streams the console prefixed with `tag`; the guest's exit code, None if none."""
    if shutil.which(QEMU) is None:
        raise VmError(f"{QEMU} is not installed: apt-get install qemu-system-x86")
    cpus = str(min(2, os.cpu_count() or 1))
    argv = [
        QEMU, "-accel", "tcg", "-cpu", "max", "-smp", cpus, "-m", MEMORY,
        "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
        "-kernel", str(kernel.image), "-initrd", str(initramfs),
        "-append", "console=ttyS0 loglevel=4 panic=-1 quiet",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={share},mount_tag=results,security_model=none",
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # noqa: PLW1509  (qemu must not outlive the driver)
    )
    fleet.add(process)
    timed_out = threading.Event()

    def kill_at_deadline() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill_at_deadline)
    timer.start()
    try:
        assert process.stdout is not None
        with (share / "console.log").open("wb") as log:
            for raw in process.stdout:
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\r\n")
                print(f"[{tag}] {line}", flush=True)
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        fleet.remove(process)
    if timed_out.is_set():
        print(f"[{tag}] the VM did not finish within {timeout:.0f} s and was killed", flush=True)
    exit_file = share / "exit-code"
    return int(exit_file.read_text().strip()) if exit_file.exists() else None


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def read_results(backend: str, share: Path) -> BackendResult:
    result = BackendResult(backend)
    exit_file = share / "exit-code"
    if exit_file.exists():
        result.exit_code = int(exit_file.read_text().strip())
    for name, target in (("measure.json", result.measure), ("doctor.json", result.doctor)):
        path = share / name
        try:
            target.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    junit = share / "junit.xml"
    if junit.exists():
        result.tests, result.failures = parse_junit(junit.read_text())
    return result


def parse_junit(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(test id, outcome) per test case, and the message of each failure or error."""
    tests: list[tuple[str, str]] = []
    failures: list[str] = []
    for case in ET.fromstring(text).iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
                # The first line of the message: the console above has the rest.
                message = (child.get("message") or "").strip().split("\n")[0]
                skipped = " skipped" if child.tag == "skipped" else ""
                failures.append(f"{test_id}{skipped}: {message}")
        tests.append((test_id, outcome))
    return tests, failures


def report(results: Sequence[BackendResult]) -> str:
    lines = ["", "VM test results (Debian 6.1 kernel under qemu/TCG):"]
    header = f"{'BACKEND':8}  {'CHOSEN':10}  {'TESTS':>5}  {'PASSED':>6}  {'FAILED':>6}  "
    header += f"{'SKIPPED':>7}  {'COMPILE_S':>9}  {'NS/EXEC':>8}  {'WALL_S':>6}"
    lines.append(header)
    for r in results:
        chosen = str(r.measure.get("backend", "?"))
        compile_s = r.measure.get("compile_seconds")
        per_exec = r.measure.get("ns_per_exec")
        lines.append(
            f"{r.backend:8}  {chosen:10}  {len(r.tests):>5}  {r.count('passed'):>6}  "
            f"{r.count('failed') + r.count('error'):>6}  {r.count('skipped'):>7}  "
            f"{_number(compile_s):>9}  {_number(per_exec, 0):>8}  {r.seconds:>6.0f}"
        )
    for r in results:
        doctor_backend = r.doctor.get("backend", {})
        chosen = doctor_backend.get("name") if isinstance(doctor_backend, dict) else None
        lines.append(f"{r.backend}: enforcer doctor chose {chosen}; guest exit code {r.exit_code}")
        lines.extend(f"  {message}" for message in r.failures)
        if not r.tests:
            lines.append("  no test results: see the console output above")
    return "\n".join(lines)


def _number(value: object, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def run_backend(
    kernel: Kernel,
    backend: str,
    tests: Sequence[str],
    pytest_args: Sequence[str],
    *,
    timeout: float,
    fleet: Fleet,
) -> BackendResult:
    with tempfile.TemporaryDirectory(prefix=f"enforcer-vm-{backend}-") as temp:
        work = Path(temp)
        share = work / "share"
        share.mkdir()
        initramfs = work / "initramfs.cpio"
        build_initramfs(kernel, initramfs)
        shutil.copy2(HERE / "guest.sh", share / "guest.sh")
        (share / "steps.sh").write_text(steps_script(REPO, backend, tests, pytest_args))
        started = time.monotonic()
        run_vm(kernel, initramfs, share, timeout=timeout, tag=backend, fleet=fleet)
        result = read_results(backend, share)
        result.seconds = time.monotonic() - started
        return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=BACKENDS, dest="backends")
    parser.add_argument("--kernel", help="kernel release, e.g. 6.1.0-26-amd64 (default: newest)")
    parser.add_argument("--timeout", type=float, default=BOOT_TIMEOUT_S, help="per boot, seconds")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS))
    parser.add_argument("--jobs", type=int, default=2, help="VMs at once (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("vm.py: run as root (the guest loads BPF programs as root over a root-owned share)")
        return 2

    fleet = Fleet()

    def stop(signum: int, _frame: FrameType | None) -> None:
        fleet.kill_all()
        raise SystemExit(128 + signum)  # unwinds: the temp dirs go as each boot returns

    signal.signal(signal.SIGTERM, stop)
    try:
        kernel = find_kernel(args.kernel)
        print(f"vm.py: booting {kernel.image} with {QEMU} (TCG)", flush=True)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [
                pool.submit(
                    run_backend,
                    kernel,
                    backend,
                    args.tests,
                    args.pytest_args,
                    timeout=args.timeout,
                    fleet=fleet,
                )
                for backend in args.backends or BACKENDS
            ]
            results = [future.result() for future in futures]
    except KeyboardInterrupt:
        fleet.kill_all()
        raise
    except VmError as e:
        print(f"vm.py: {e}", file=sys.stderr)
        return 2
    print(report(results), flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
