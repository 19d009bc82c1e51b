"""What the running kernel offers: the facts the backend choice and `enforcer doctor` need.

Probing needs no bcc and runs before bcc is imported (mounts.ensure_mounts
first). It reads files (tracefs, securityfs, /proc, the kernel's BTF) and
makes the system calls of one LSM load test (lsm_probe.py).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from enforcer.kernel.btf import VMLINUX, Btf, BtfError
from enforcer.kernel.headers import NO_HEADERS, Headers, probe_headers
from enforcer.kernel.layout import ExecLayout, exec_layout
from enforcer.kernel.lsm_probe import lsm_load_error
from enforcer.kernel.mounts import SECURITYFS, exists, first_mount_of, is_dir, tracefs_root

log = logging.getLogger(__name__)

EXEC_TRACEPOINT = ("sched", "sched_process_exec")
# Linux 6.10+: where the tracepoint backend still sees the program calling exec.
PREPARE_EXEC_TRACEPOINT = ("sched", "sched_prepare_exec")
# What the kprobe backend's pass hook attaches to: the LSM hook's caller.
KPROBE_PASS_FUNCTION = "security_bprm_check"
# bpf_send_signal_thread, which holds a new container's execs, came in 5.5.
SEND_SIGNAL_VERSION = (5, 5)
RING_BUFFER_VERSION = (5, 8)


@dataclass(frozen=True)
class KernelFacts:
    release: str
    kprobes: bool
    exec_tracepoint: bool
    ring_buffer: bool
    root: bool = True
    btf: bool = False
    cgroup_tracepoints: bool = True
    send_signal: bool = True
    lsm_active: tuple[str, ...] = ()  # /sys/kernel/security/lsm; () if unreadable
    lsm_load_error: str | None = "not tried"  # None: an LSM program loaded and attached
    layout: ExecLayout | None = None  # None without BTF
    kprobe_pass_function: bool = True  # security_bprm_check can be kprobed
    cgroup2: str | None = None  # where cgroup v2 is mounted
    headers: Headers = NO_HEADERS
    lockdown: str = "none"  # none, integrity, confidentiality; "unknown" if unreadable

    @property
    def bpf_lsm(self) -> bool:
        return "bpf" in self.lsm_active


def probe() -> KernelFacts:
    """Everything choose_backend and `enforcer doctor` need; call ensure_mounts() first."""
    tracefs = tracefs_root()
    release = platform.release()
    root = os.geteuid() == 0
    btf = read_btf()
    cgroup2 = first_mount_of("cgroup2")
    lsm_active = _read_lsm_list()
    return KernelFacts(
        release=release,
        kprobes=exists(tracefs / "kprobe_events"),
        exec_tracepoint=is_dir(tracefs.joinpath("events", *EXEC_TRACEPOINT)),
        ring_buffer=kernel_version(release) >= RING_BUFFER_VERSION,
        root=root,
        btf=btf is not None,
        cgroup_tracepoints=all(
            is_dir(tracefs / "events" / "cgroup" / event)
            for event in ("cgroup_mkdir", "cgroup_rmdir")
        ),
        send_signal=kernel_version(release) >= SEND_SIGNAL_VERSION,
        lsm_active=lsm_active,
        lsm_load_error=lsm_load_error(root=root, lsm_active=lsm_active, btf=btf),
        layout=current_layout(),
        kprobe_pass_function=_kprobe_target(tracefs, KPROBE_PASS_FUNCTION),
        cgroup2=None if cgroup2 is None else str(cgroup2),
        headers=probe_headers(release),
        lockdown=_read_lockdown(),
    )


def has_prepare_exec() -> bool:
    """Whether the kernel has sched_prepare_exec (the calledBy rules of the tracepoint backend)."""
    return is_dir(tracefs_root().joinpath("events", *PREPARE_EXEC_TRACEPOINT))


@functools.cache
def read_btf() -> Btf | None:
    """The running kernel's BTF, read once per process (it does not change); None if unusable."""
    try:
        return Btf.from_file(VMLINUX)
    except (OSError, BtfError) as e:
        log.debug("no usable BTF at %s: %s", VMLINUX, e)
        return None


@functools.cache
def current_layout() -> ExecLayout | None:
    """The struct offsets the exec program reads at, from this kernel's BTF."""
    btf = read_btf()
    return exec_layout(btf) if btf is not None else None


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release string such as '6.1.0-26-amd64'."""
    numbers = (release or platform.release()).split("-")[0].split(".")
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def _kprobe_target(tracefs: Path, function: str) -> bool:
    """Whether `function` can take a kprobe (listed where ftrace may attach)."""
    try:
        with (tracefs / "available_filter_functions").open() as functions:
            return any(line.split(" ", 1)[0].strip() == function for line in functions)
    except OSError:
        return False


def _read_lsm_list() -> tuple[str, ...]:
    try:
        return tuple((SECURITYFS / "lsm").read_text().strip().split(","))
    except OSError:
        return ()


def _read_lockdown() -> str:
    """The bracketed mode of "none [integrity] confidentiality"; none without the LSM."""
    try:
        text = (SECURITYFS / "lockdown").read_text()
    except FileNotFoundError:
        return "none" if (SECURITYFS / "lsm").exists() else "unknown"
    except OSError:
        return "unknown"
    found = re.search(r"\[(\w+)\]", text)
    return found[1] if found else "unknown"
