"""The attach backend, chosen from what the running kernel offers (facts.py).

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

from dataclasses import dataclass
from enum import StrEnum

from enforcer.errors import KernelSupportError
from enforcer.kernel.facts import KPROBE_PASS_FUNCTION, KernelFacts
from enforcer.kernel.headers import HeadersState


class Backend(StrEnum):
    """How the exec hook is attached; `AUTO` lets `choose_backend` decide."""

    AUTO = "auto"
    LSM = "lsm"
    KPROBE = "kprobe"
    TRACEPOINT = "tracepoint"


# What `AUTO` tries, best first.
PREFERENCE = (Backend.LSM, Backend.KPROBE, Backend.TRACEPOINT)


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    reason: str


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
