"""Boot one of Debian's kernels under qemu on this host's / and stream its console.

The VM shares the host's / read-only over 9p with a tmpfs overlay on top
(init.sh), so it runs this checkout, its .venv, bcc, runc and the kernel's
own headers exactly as they are on the host; only the kernel differs. The
initramfs is made here: busybox-static, init.sh and the few modules that
mount the share, decompressed when the kernel ships them compressed.
"""

from __future__ import annotations

import ctypes
import gzip
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
# What the initramfs needs to mount the host's / over virtio 9p with an overlay;
# those a kernel has built in (6.12: virtio_pci) are left out.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".ko": lambda data: data,
    ".ko.xz": lzma.decompress,
    ".ko.gz": gzip.decompress,
}
MEMORY = "3G"
PR_SET_PDEATHSIG = 1


class VmError(RuntimeError):
    """Raised when the VM cannot be prepared or booted: says what is missing and what to do."""


@dataclass(frozen=True)
class Kernel:
    series: str  # "6.1", "6.12": what KERNELS= names
    release: str
    image: Path
    modules: Path


def find_kernel(series: str, boot: Path = Path("/boot"), lib: Path = Path("/lib")) -> Kernel:
    """The newest installed Debian kernel of `series` with its modules and matching headers."""
    releases = sorted(
        (
            p.name.removeprefix("vmlinuz-")
            for p in boot.glob(f"vmlinuz-{series}.*")
            if p.name.endswith("-amd64")
        ),
        key=_version_key,
    )
    for release in reversed(releases):
        modules = lib / "modules" / release
        if (modules / "modules.dep").exists() and (modules / "build" / "include").is_dir():
            return Kernel(series, release, boot / f"vmlinuz-{release}", modules)
    raise VmError(
        f"no Debian {series} kernel with its modules and matching headers is installed "
        f"(looked for {boot}/vmlinuz-{series}.*-amd64 and {lib}/modules/<release>/build/include); "
        "run `make test-vm`, which installs linux-image-amd64 and linux-image-6.12-amd64 "
        "with their headers"
    )


def _version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", release)]


def module_order(modules_dep: str, wanted: Iterable[str], builtin: str = "") -> list[str]:
    """Module files (relative to /lib/modules/<release>) to insmod, dependencies first.

    A module the kernel has built in (listed in modules.builtin) needs no file.
    """
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[module_name(path)] = path
    built_in = {module_name(line) for line in builtin.split()}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, ()):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in built_in:
            continue
        if name not in by_name:
            raise VmError(f"kernel module {name} is neither in modules.dep nor built in")
        visit(by_name[name])
    return order


def module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def plain_module(path: str, data: bytes) -> bytes:
    """The module as insmod loads it: busybox's insmod passes the bytes as they are."""
    for suffix, decompress in DECOMPRESS.items():
        if path.endswith(suffix):
            return decompress(data)
    raise VmError(f"{path}: compressed in a way the initramfs cannot unpack (xz and gz only)")


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
    builtin = kernel.modules / "modules.builtin"
    order = module_order(
        (kernel.modules / "modules.dep").read_text(),
        MODULES,
        builtin.read_text() if builtin.exists() else "",
    )
    directory, executable, regular = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG
    entries = [CpioEntry(d, directory) for d in ("bin", "dev", "proc", "sys", "modules")]
    entries.append(CpioEntry("bin/busybox", executable, BUSYBOX.read_bytes()))
    entries.append(CpioEntry("init", executable, (HERE / "init.sh").read_bytes()))
    names = []
    for path in order:
        name = f"{module_name(path)}.ko"
        data = plain_module(path, (kernel.modules / path).read_bytes())
        entries.append(CpioEntry(f"modules/{name}", regular | 0o644, data))
        names.append(name)
    order_file = "".join(f"{name}\n" for name in names).encode()
    entries.append(CpioEntry("modules/order", regular | 0o644, order_file))
    out.write_bytes(newc_archive(entries))


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


def run_vm(
    kernel: Kernel, initramfs: Path, share: Path, *, timeout: float, tag: str, fleet: Fleet
) -> None:
    """Boots, streams the console prefixed with `tag` (and into share/console.log).

    What the guest ran leaves its results in `share` (matrix.read_results).
    """
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


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
