"""`enforcer doctor`: what this kernel offers, which backend enforcer would use, and why.

`diagnose` is pure: the facts `facts.probe()` gathered in, a `Diagnosis` out.
It holds one `Check` per feature with what was seen and, for each missing
piece, what that costs and how to fix it; then every backend, best first,
with why it can or cannot be used; and the backend `enforcer run` would
choose. `examine` gathers the facts on the running kernel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from enforcer.errors import EnforcerError
from enforcer.kernel.backends import (
    PREFERENCE,
    Backend,
    BackendChoice,
    backend_problems,
    choose_backend,
)
from enforcer.kernel.facts import KernelFacts, probe
from enforcer.kernel.headers import HeadersState
from enforcer.kernel.mounts import ensure_mounts

log = logging.getLogger(__name__)

_NO_LSM = (
    "no lsm backend: execs are decided once they have succeeded (still before the new "
    "program runs), so deny rules kill the program instead of making execve fail"
)


@dataclass(frozen=True)
class Check:
    """One feature: whether it is there, what was seen, and if not, the cost and the fix."""

    name: str
    ok: bool
    seen: str
    consequence: str = ""
    fix: str = ""
    state: str = ""  # one word for the table when "ok"/"missing" say too little

    @property
    def label(self) -> str:
        return self.state or ("ok" if self.ok else "missing")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ok": self.ok,
            "state": self.label,
            "seen": self.seen,
            "consequence": self.consequence,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class BackendVerdict:
    backend: Backend
    problems: tuple[str, ...]

    @property
    def usable(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Diagnosis:
    release: str
    root: bool
    checks: tuple[Check, ...]
    backends: tuple[BackendVerdict, ...]
    choice: BackendChoice | None

    @property
    def enforcement_possible(self) -> bool:
        return self.root and self.choice is not None

    def to_json(self) -> dict[str, object]:
        return {
            "kernel": self.release,
            "enforcement_possible": self.enforcement_possible,
            "backend": (
                {"name": str(self.choice.backend), "reason": self.choice.reason}
                if self.choice
                else None
            ),
            "backends": [
                {"name": str(v.backend), "usable": v.usable, "problems": list(v.problems)}
                for v in self.backends
            ],
            "checks": [c.to_json() for c in self.checks],
        }


def examine() -> Diagnosis:
    """Probes the running kernel (mounting tracefs and securityfs as root) and diagnoses it."""
    if os.geteuid() == 0:
        try:
            ensure_mounts()
        except EnforcerError as e:
            log.warning("%s", e)
    return diagnose(probe())


def diagnose(facts: KernelFacts) -> Diagnosis:
    verdicts = tuple(BackendVerdict(b, tuple(backend_problems(facts, b))) for b in PREFERENCE)
    try:
        choice: BackendChoice | None = choose_backend(facts)
    except EnforcerError:
        choice = None
    checks = (
        _root(facts),
        _btf(facts),
        _kprobes(facts),
        _tracepoints(facts),
        _bpf_lsm(facts),
        _send_signal(facts),
        _ring_buffer(facts),
        _cgroup2(facts),
        _headers(facts),
        _lockdown(facts),
    )
    return Diagnosis(facts.release, facts.root, checks, verdicts, choice)


def _root(facts: KernelFacts) -> Check:
    if facts.root:
        return Check("root", True, "running as root")
    return Check(
        "root",
        False,
        "not root",
        "BPF programs cannot be loaded, and tracefs and the BPF LSM test are out of reach: "
        "the checks below are incomplete",
        "run `sudo enforcer doctor`",
    )


def _btf(facts: KernelFacts) -> Check:
    layout = facts.layout
    if facts.btf and layout is not None and layout.complete:
        return Check(
            "btf",
            True,
            f"/sys/kernel/btf/vmlinux: offsets of the {len(layout.offsets)} struct fields the "
            f"exec program reads (linux_binprm.file at {layout.offset('linux_binprm', 'file')})",
        )
    seen = (
        f"/sys/kernel/btf/vmlinux does not describe {', '.join(layout.missing)}"
        if layout is not None
        else "no /sys/kernel/btf/vmlinux"
    )
    return Check(
        "btf",
        False,
        seen,
        "enforcement is impossible: the file an exec runs (its path, inode and name) is read "
        "from kernel memory at struct offsets only BTF gives reliably",
        "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    )


def _unknown(name: str, facts: KernelFacts, where: str) -> Check | None:
    """A check that cannot be made without root, when not root."""
    if facts.root:
        return None
    return Check(
        name, False, f"unknown: {where}", "not known", "run `sudo enforcer doctor`", "unknown"
    )


def _kprobes(facts: KernelFacts) -> Check:
    if facts.kprobes:
        return Check("kprobes", True, "kprobe_events in tracefs")
    if unknown := _unknown("kprobes", facts, "tracefs is readable by root only"):
        return unknown
    return Check(
        "kprobes",
        False,
        "no kprobe_events in tracefs",
        "no kprobe backend: where there is no BPF LSM either, a #! script's own file is "
        "matched by its path, resolved by the daemon while the exec waits",
        "boot a kernel built with CONFIG_KPROBES=y",
    )


def _tracepoints(facts: KernelFacts) -> Check:
    if facts.exec_tracepoint and facts.cgroup_tracepoints:
        return Check(
            "tracepoints", True, "sched:sched_process_exec, cgroup:cgroup_mkdir, cgroup_rmdir"
        )
    if unknown := _unknown("tracepoints", facts, "tracefs is readable by root only"):
        return unknown
    missing, consequences, fixes = [], [], []
    if not facts.exec_tracepoint:
        missing.append("sched:sched_process_exec")
        consequences.append("the program cannot load on any backend: it decides every exec there")
        fixes.append("CONFIG_TRACEPOINTS=y")
    if not facts.cgroup_tracepoints:
        missing.append("cgroup:cgroup_mkdir/rmdir")
        consequences.append(
            "the program cannot load on any backend: it follows new containers' cgroups "
            "through these tracepoints"
        )
        fixes.append("cgroup tracepoints (4.19 or later)")
    return Check(
        "tracepoints",
        False,
        "missing " + ", ".join(missing),
        "; ".join(consequences),
        "boot a kernel with " + " and ".join(fixes),
    )


def _bpf_lsm(facts: KernelFacts) -> Check:
    active = ",".join(facts.lsm_active)
    listed = f"active LSMs: {active}" if facts.lsm_active else "active LSMs unknown"
    if not facts.bpf_lsm:
        with_bpf = ",".join([*facts.lsm_active, "bpf"]) if facts.lsm_active else "...,bpf"
        return Check(
            "bpf_lsm",
            False,
            f"{listed} (no bpf)",
            _NO_LSM,
            f"boot with lsm={with_bpf} on a kernel built with CONFIG_BPF_LSM=y",
        )
    if unknown := _unknown("bpf_lsm", facts, f"{listed}; loading an LSM program needs root"):
        return unknown
    if facts.lsm_load_error is not None:
        fix = (
            "none on this kernel: it refuses BPF LSM programs even to root (a build option "
            "or the hypervisor's policy). Boot a kernel that allows them, such as Debian's own"
        )
        return Check(
            "bpf_lsm",
            False,
            f"{listed}; an empty bprm_check_security program: {facts.lsm_load_error}",
            _NO_LSM,
            fix,
            state="refused",
        )
    return Check(
        "bpf_lsm", True, f"{listed}; an empty bprm_check_security program loads and attaches"
    )


def _send_signal(facts: KernelFacts) -> Check:
    if facts.send_signal:
        return Check("bpf_send_signal", True, f"kernel {facts.release} (5.5 or later)")
    return Check(
        "bpf_send_signal",
        False,
        f"kernel {facts.release} is older than 5.5",
        "kill rules cannot kill and new containers' first execs cannot be held: "
        "enforcement is impossible",
        "boot kernel 5.5 or later",
    )


def _ring_buffer(facts: KernelFacts) -> Check:
    if facts.ring_buffer:
        return Check("ring_buffer", True, f"kernel {facts.release} (5.8 or later)")
    return Check(
        "ring_buffer",
        False,
        f"kernel {facts.release} is older than 5.8",
        "events go through a per-CPU perf buffer instead: they may arrive out of order "
        "across CPUs and take more memory; enforcement is the same",
        "boot kernel 5.8 or later",
    )


def _cgroup2(facts: KernelFacts) -> Check:
    if facts.cgroup2:
        return Check("cgroup_v2", True, f"mounted at {facts.cgroup2}")
    return Check(
        "cgroup_v2",
        False,
        "no cgroup2 mount",
        "containers are told apart by their cgroup v2 id: without it container selectors "
        "select nothing, and host policies apply to every process",
        "mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with "
        "systemd.unified_cgroup_hierarchy=1",
    )


def _headers(facts: KernelFacts) -> Check:
    headers = facts.headers
    if headers.state is HeadersState.MATCHING:
        return Check("kernel_headers", True, headers.path, state="matching")
    if headers.state is HeadersState.MISMATCHED:
        made_for = headers.release or "another kernel"
        return Check(
            "kernel_headers",
            False,
            f"{headers.path} is for {made_for}, not {facts.release}",
            f"bcc compiles against {made_for}'s struct layouts, which are not this kernel's. "
            "enforcer reads no kernel struct through them (helpers, and every struct at offsets "
            "from the kernel's BTF), so enforcement is unaffected",
            f"install linux-headers-{facts.release} where the distribution has it",
            state="mismatched",
        )
    return Check(
        "kernel_headers",
        False,
        f"no /lib/modules/{facts.release}/build and no /sys/kernel/kheaders.tar.xz",
        "bcc has nothing to compile the BPF program against: enforcement is impossible",
        f"install linux-headers-{facts.release} (`make headers` links Debian's nearest ones), "
        "or load the kheaders module (CONFIG_IKHEADERS)",
    )


def _lockdown(facts: KernelFacts) -> Check:
    mode = facts.lockdown
    if mode == "confidentiality":
        return Check(
            "lockdown",
            False,
            "confidentiality",
            "kprobes, tracefs and bpf_probe_read_kernel are refused: enforcement is impossible",
            "boot with lockdown=integrity (or without lockdown)",
        )
    notes = {
        "none": "none",
        "integrity": "integrity (refuses bpf_probe_write_user, which enforcer does not use)",
    }
    return Check("lockdown", True, notes.get(mode, f"{mode} (securityfs not readable)"))
