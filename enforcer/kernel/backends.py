"""What the running kernel offers, and the attach backend chosen from it.

Probing needs no bcc and runs before bcc is imported: bcc fixes its tracefs
path at import time, which is why the mounts are made here first. It reads
files (tracefs, securityfs, /proc, the kernel's BTF) and makes one system call
of its own: it loads and attaches an empty BPF LSM program, because a kernel
may list `bpf` among its LSMs and still refuse every LSM program.

Every backend decides on the file that runs, read from kernel memory at
offsets from the kernel's BTF (enforcer/kernel/layout.py), at the raw tracepoint
`sched_process_exec`: once the exec has succeeded, before the new program runs
an instruction. They differ in the pass hook they add (bpf/exec_enforcer.c),
best first:
- `lsm`: `bprm_check_security`, before the point of no return: a `deny` rule
  makes execve fail with EPERM, and a #! script's own file is matched.
- `kprobe`: a kprobe on `security_bprm_check`: a script's own file is matched.
- `tracepoint`: no pass hook; a script's path is resolved by the daemon.
None is a syscall tracepoint: those send every system call of every task
through the slow path, exec or not.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from enforcer.bpf import syscall
from enforcer.errors import KernelSupportError
from enforcer.kernel.btf import VMLINUX, Btf, BtfError, Kind
from enforcer.kernel.layout import ExecLayout, exec_layout
from enforcer.kernel.mounts import first_mount_of, is_mounted

log = logging.getLogger(__name__)

DEBUGFS = Path("/sys/kernel/debug")
TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
SECURITYFS = Path("/sys/kernel/security")
MODULES = Path("/lib/modules")
KHEADERS = Path("/sys/kernel/kheaders.tar.xz")
EXEC_TRACEPOINT = ("sched", "sched_process_exec")
# Linux 6.10+: where the tracepoint backend still sees the program calling exec.
PREPARE_EXEC_TRACEPOINT = ("sched", "sched_prepare_exec")
LSM_HOOK = "bprm_check_security"
# What the kprobe backend's pass hook attaches to: the LSM hook's caller.
KPROBE_PASS_FUNCTION = "security_bprm_check"
# bpf_send_signal_thread, which holds a new container's execs, came in 5.5.
SEND_SIGNAL_VERSION = (5, 5)
RING_BUFFER_VERSION = (5, 8)


class Backend(StrEnum):
    """How the exec hook is attached; `AUTO` lets `choose_backend` decide."""

    AUTO = "auto"
    LSM = "lsm"
    KPROBE = "kprobe"
    TRACEPOINT = "tracepoint"


# What `AUTO` tries, best first.
PREFERENCE = (Backend.LSM, Backend.KPROBE, Backend.TRACEPOINT)


class HeadersState(StrEnum):
    MATCHING = "matching"
    MISMATCHED = "mismatched"
    MISSING = "missing"


@dataclass(frozen=True)
class Headers:
    """The kernel headers bcc compiles against: /lib/modules/$(uname -r)/build."""

    state: HeadersState
    path: str  # where bcc finds them ("" when missing)
    release: str  # the kernel they were made for ("" when unknown)


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
    headers: Headers = Headers(HeadersState.MISSING, "", "")
    lockdown: str = "none"  # none, integrity, confidentiality; "unknown" if unreadable

    @property
    def bpf_lsm(self) -> bool:
        return "bpf" in self.lsm_active


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    reason: str


def ensure_mounts() -> None:
    """Mounts tracefs, debugfs and bpffs where the boot did not (as on minimal VMs).

    securityfs too, where it can be: it only tells which LSMs are active and
    the lockdown mode, and a kernel may lack it.
    """
    for fstype, target in (("debugfs", DEBUGFS), ("tracefs", TRACEFS), ("bpf", BPFFS)):
        if is_mounted(target, fstype):
            continue
        command = ["mount", "-t", fstype, fstype, str(target)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KernelSupportError(
                f"cannot mount {fstype} on {target}: {result.stderr.strip()}. "
                "Run as root, or mount it yourself before starting enforcer."
            )
        log.info("mounted %s on %s", fstype, target)
    if not is_mounted(SECURITYFS, "securityfs") and SECURITYFS.is_dir():
        command = ["mount", "-t", "securityfs", "securityfs", str(SECURITYFS)]
        if subprocess.run(command, capture_output=True, check=False).returncode == 0:
            log.info("mounted securityfs on %s", SECURITYFS)


def tracefs_root() -> Path:
    """The tracefs bcc will use: the one below debugfs first, as bcc does."""
    below_debugfs = DEBUGFS / "tracing"
    return below_debugfs if _is_dir(below_debugfs / "events") else TRACEFS


def has_prepare_exec() -> bool:
    """Whether the kernel has sched_prepare_exec (the calledBy rules of the tracepoint backend)."""
    return _is_dir(tracefs_root().joinpath("events", *PREPARE_EXEC_TRACEPOINT))


def _is_dir(path: Path) -> bool:
    """Path.is_dir, and False where a user may not look (tracefs is root's only)."""
    try:
        return path.is_dir()
    except PermissionError:
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:
        return False


def probe() -> KernelFacts:
    """Everything choose_backend and `enforcer doctor` need; call ensure_mounts() first."""
    tracefs = tracefs_root()
    release = platform.release()
    root = os.geteuid() == 0
    btf = read_btf()
    cgroup2 = first_mount_of("cgroup2")
    lsm_active = _read_lsm_list()
    if not root:
        lsm_load_error: str | None = "not tried: needs root"
    elif "bpf" not in lsm_active:
        lsm_load_error = "not tried: bpf is not an active LSM"
    elif btf is None:
        lsm_load_error = "not tried: the kernel has no BTF"
    else:
        lsm_load_error = try_lsm_program(btf)
    return KernelFacts(
        release=release,
        kprobes=_exists(tracefs / "kprobe_events"),
        exec_tracepoint=_is_dir(tracefs.joinpath("events", *EXEC_TRACEPOINT)),
        ring_buffer=kernel_version(release) >= RING_BUFFER_VERSION,
        root=root,
        btf=btf is not None,
        cgroup_tracepoints=all(
            _is_dir(tracefs / "events" / "cgroup" / event)
            for event in ("cgroup_mkdir", "cgroup_rmdir")
        ),
        send_signal=kernel_version(release) >= SEND_SIGNAL_VERSION,
        lsm_active=lsm_active,
        lsm_load_error=lsm_load_error,
        layout=current_layout(),
        kprobe_pass_function=_kprobe_target(tracefs, KPROBE_PASS_FUNCTION),
        cgroup2=None if cgroup2 is None else str(cgroup2),
        headers=probe_headers(release),
        lockdown=_read_lockdown(),
    )


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


def probe_headers(release: str) -> Headers:
    """Whether the headers bcc will compile against were made for this kernel."""
    build = MODULES / release / "build"
    if not _is_dir(build / "include"):
        if _exists(KHEADERS):
            return Headers(HeadersState.MATCHING, str(KHEADERS), release)
        return Headers(HeadersState.MISSING, "", "")
    made_for = headers_release(build)
    return Headers(classify_headers(release, made_for), str(build.resolve()), made_for)


def headers_release(build: Path) -> str:
    """The release a header tree was made for ("" if it does not say)."""
    try:
        text = (build / "include" / "generated" / "utsrelease.h").read_text()
    except OSError:
        return ""
    found = re.search(r'UTS_RELEASE\s+"([^"]+)"', text)
    return found[1] if found else ""


def classify_headers(release: str, made_for: str | None) -> HeadersState:
    if made_for is None:
        return HeadersState.MISSING
    return HeadersState.MATCHING if made_for == release else HeadersState.MISMATCHED


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release string such as '6.1.0-26-amd64'."""
    numbers = (release or platform.release()).split("-")[0].split(".")
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def backend_problems(facts: KernelFacts, backend: Backend) -> list[str]:
    """Why `backend` cannot enforce on this kernel; empty when it can."""
    problems = _common_problems(facts)
    if backend is Backend.LSM:
        if not facts.bpf_lsm:
            problems.append("bpf is not an active LSM (not in /sys/kernel/security/lsm)")
        elif facts.lsm_load_error is not None:
            problems.append(f"the kernel refuses BPF LSM programs ({facts.lsm_load_error})")
    elif backend is Backend.KPROBE:
        if not facts.kprobes:
            problems.append("the kernel has no kprobes (CONFIG_KPROBES is off)")
        elif not facts.kprobe_pass_function:
            problems.append(f"{KPROBE_PASS_FUNCTION} cannot take a kprobe on this kernel")
    return problems


def _common_problems(facts: KernelFacts) -> list[str]:
    problems = []
    if facts.headers.state is HeadersState.MISSING:
        problems.append("there are no kernel headers for bcc to compile against")
    if not facts.send_signal:
        problems.append(f"kernel {facts.release} has no bpf_send_signal_thread (5.5 or later)")
    if not facts.cgroup_tracepoints:
        problems.append("the kernel has no cgroup:cgroup_mkdir tracepoint")
    if facts.lockdown == "confidentiality":
        problems.append("lockdown=confidentiality refuses bpf_probe_read_kernel and tracing")
    if not facts.btf:
        problems.append(
            "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF is off): the file an exec runs is read "
            "at struct offsets from it"
        )
    elif facts.layout is not None and not facts.layout.complete:
        problems.append(f"the kernel's BTF does not describe {', '.join(facts.layout.missing)}")
    if not facts.exec_tracepoint:
        problems.append("the kernel has no sched:sched_process_exec tracepoint")
    return problems


_WHY_BEST = {
    Backend.LSM: "BPF LSM programs load: each binfmt pass (a script, then its interpreter) is "
    "matched before the point of no return, and deny rules make execve fail with EPERM",
    Backend.KPROBE: f"kprobes are available: each binfmt pass is matched at {KPROBE_PASS_FUNCTION}"
    ", a script's own file included; the exec is decided once it has succeeded",
    Backend.TRACEPOINT: "sched_process_exec decides each exec once it has succeeded, on the file "
    "that runs; a script's own path is resolved by the daemon",
}


def choose_backend(facts: KernelFacts, requested: Backend = Backend.AUTO) -> BackendChoice:
    """The best backend this kernel supports (lsm, kprobe, tracepoint), or the one requested."""
    if requested is not Backend.AUTO:
        problems = backend_problems(facts, requested)
        if problems:
            usable = [b.value for b in PREFERENCE if not backend_problems(facts, b)]
            instead = f", or use --backend auto (it chooses {usable[0]})" if usable else ""
            raise KernelSupportError(
                f"--backend {requested}: on kernel {facts.release} {'; '.join(problems)}. "
                f"Run `enforcer doctor`{instead}."
            )
        return BackendChoice(requested, "forced by --backend")
    passed_over: list[tuple[Backend, str]] = []
    for backend in PREFERENCE:
        problems = backend_problems(facts, backend)
        if not problems:
            why_not = "".join(f"; not {b}: {why}" for b, why in passed_over)
            return BackendChoice(backend, _WHY_BEST[backend] + why_not)
        passed_over.append((backend, "; ".join(problems)))
    raise KernelSupportError(
        f"kernel {facts.release} offers no way to enforce: "
        + "; ".join(f"{b}: {why}" for b, why in passed_over)
        + ". Run `enforcer doctor` for the fix of each."
    )


# /proc/PID/stat's flags (field 9): the task is a kernel thread.
_PF_KTHREAD = 0x00200000


def prepare(
    requested: Backend = Backend.AUTO, *, signals_held_execs: bool = False
) -> tuple[KernelFacts, BackendChoice]:
    """What every command that loads the exec program does first: as root (and,
    if it signals held execs, in the node's pid namespace), the filesystems it
    needs mounted, the kernel probed, and the backend chosen."""
    require_root()
    if signals_held_execs:
        require_node_pid_namespace()
    ensure_mounts()
    facts = probe()
    return facts, choose_backend(facts, requested)


def require_root() -> None:
    if os.geteuid() != 0:
        raise KernelSupportError("loading BPF programs needs root; run this command with sudo")


def require_node_pid_namespace(proc: Path = Path("/proc")) -> None:
    """Refuses to run in a pid namespace of its own.

    The BPF programs report pids as the node's initial pid namespace numbers
    them, and held execs are let go or killed by those pids: from a nested
    pid namespace the kernel refuses every such signal (EINVAL), and what
    is held would stay stopped. Only the initial namespace shows kernel
    threads (kthreadd is pid 2), and its /proc must be this process's own.
    """
    try:
        fields = (proc / "2" / "stat").read_text().rpartition(")")[2].split()
        kernel_thread = int(fields[6]) & _PF_KTHREAD != 0
        own_proc = os.readlink(proc / "self") == str(os.getpid())
    except (OSError, ValueError, IndexError):
        kernel_thread = own_proc = False
    if not (kernel_thread and own_proc):
        raise KernelSupportError(
            "enforcer runs in a pid namespace of its own: it could not signal the execs it "
            "holds. Run it in the node's pid namespace: hostPID: true in a pod, --pid=host "
            "with podman or docker"
        )


# --- the LSM load test: one empty program through the bpf() system call ---

# r0 = 0; exit: allow every exec.
_RETURN_ZERO = bytes.fromhex("b7000000000000009500000000000000")


def try_lsm_program(btf: Btf) -> str | None:
    """Loads and attaches an empty LSM program on bprm_check_security, then removes it.

    Returns None when both worked, else what failed, e.g.
    "BPF_PROG_LOAD: EPERM (Operation not permitted)". The program allows
    every exec and lives for microseconds.
    """
    hook_id = btf.find(Kind.FUNC, f"bpf_lsm_{LSM_HOOK}")
    if hook_id is None:
        return f"the kernel's BTF has no bpf_lsm_{LSM_HOOK}"
    try:
        prog_fd = syscall.prog_load(
            syscall.PROG_TYPE_LSM, _RETURN_ZERO, "enforcer_probe",
            expected_attach_type=syscall.ATTACH_LSM_MAC, attach_btf_id=hook_id,
        )  # fmt: skip
    except syscall.ProgramRejectedError as e:
        return f"BPF_PROG_LOAD: {_errno_text(e.errno)}"
    except syscall.UnsupportedArchitectureError as e:
        return str(e)
    try:
        os.close(syscall.raw_tracepoint_open(None, prog_fd))
        return None
    except OSError as e:
        return f"attaching to {LSM_HOOK}: {_errno_text(e.errno or 0)}"
    finally:
        os.close(prog_fd)


def _errno_text(number: int) -> str:
    return f"{errno.errorcode.get(number, str(number))} ({os.strerror(number)})"
