"""Backend choice from kernel facts: the best usable one, and why the better ones are not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enforcer.errors import KernelSupportError
from enforcer.kernel.backends import Backend, BackendChoice, backend_problems, choose_backend
from enforcer.kernel.facts import KernelFacts
from enforcer.kernel.headers import Headers, HeadersState
from enforcer.kernel.layout import FIELDS, ExecLayout

# Every field the exec program reads, at made-up offsets.
LAYOUT = ExecLayout({name: 8 * i for i, name in enumerate(FIELDS)})

# Debian 12's own kernel, as the VM tests boot it: everything is there.
DEBIAN = KernelFacts(
    release="6.1.0-26-amd64",
    kprobes=True,
    exec_tracepoint=True,
    ring_buffer=True,
    root=True,
    btf=True,
    cgroup_tracepoints=True,
    send_signal=True,
    lsm_active=("lockdown", "capability", "landlock", "yama", "apparmor", "bpf"),
    lsm_load_error=None,
    layout=LAYOUT,
    cgroup2="/sys/fs/cgroup",
    headers=Headers(
        HeadersState.MATCHING, "/usr/src/linux-headers-6.1.0-26-amd64", "6.1.0-26-amd64"
    ),
    lockdown="none",
)
EPERM = "BPF_PROG_LOAD: EPERM (Operation not permitted)"
# This machine: no kprobes, bpf listed but LSM programs refused, another kernel's headers.
THIS_MACHINE = replace(
    DEBIAN,
    release="6.18.44-fc-v782",
    kprobes=False,
    lsm_load_error=EPERM,
    headers=Headers(
        HeadersState.MISMATCHED, "/usr/src/linux-headers-6.1.0-26-amd64", "6.1.0-26-amd64"
    ),
    cgroup2="/sys/fs/cgroup/unified",
    lockdown="integrity",
)


def test_lsm_is_chosen_where_lsm_programs_load() -> None:
    choice = choose_backend(DEBIAN)
    assert choice.backend is Backend.LSM
    assert "EPERM" in choice.reason and "before the point of no return" in choice.reason


def test_kprobe_is_next_and_the_reason_says_why_not_lsm() -> None:
    choice = choose_backend(replace(DEBIAN, lsm_load_error=EPERM))
    assert choice.backend is Backend.KPROBE
    assert f"not lsm: the kernel refuses BPF LSM programs ({EPERM})" in choice.reason


def test_this_machine_gets_tracepoints_with_both_reasons() -> None:
    choice = choose_backend(THIS_MACHINE)
    assert choice.backend is Backend.TRACEPOINT
    assert "not lsm: the kernel refuses BPF LSM programs" in choice.reason
    assert "not kprobe: the kernel has no kprobes" in choice.reason


def test_lsm_needs_the_lsm_listed() -> None:
    facts = replace(DEBIAN, lsm_active=("lockdown", "capability"))
    assert "bpf is not an active LSM" in " ".join(backend_problems(facts, Backend.LSM))
    assert choose_backend(facts).backend is Backend.KPROBE


def test_kprobe_needs_its_pass_function_traceable() -> None:
    facts = replace(DEBIAN, lsm_load_error=EPERM, kprobe_pass_function=False)
    assert "security_bprm_check cannot take a kprobe" in " ".join(
        backend_problems(facts, Backend.KPROBE)
    )
    assert choose_backend(facts).backend is Backend.TRACEPOINT


def test_mismatched_headers_do_not_rule_out_lsm_offsets_come_from_btf() -> None:
    facts = replace(THIS_MACHINE, lsm_load_error=None)
    assert choose_backend(facts).backend is Backend.LSM


def test_forcing_an_unusable_backend_says_why_and_what_auto_would_choose() -> None:
    with pytest.raises(KernelSupportError) as error:
        choose_backend(THIS_MACHINE, Backend.LSM)
    assert "--backend lsm" in str(error.value) and EPERM in str(error.value)
    assert "--backend auto (it chooses tracepoint)" in str(error.value)
    with pytest.raises(KernelSupportError, match="no kprobes"):
        choose_backend(THIS_MACHINE, Backend.KPROBE)


def test_a_usable_backend_can_be_forced() -> None:
    assert choose_backend(DEBIAN, Backend.TRACEPOINT) == BackendChoice(
        Backend.TRACEPOINT, "forced by --backend"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"headers": Headers(HeadersState.MISSING, "", "")}, "no kernel headers"),
        ({"lockdown": "confidentiality"}, "lockdown=confidentiality"),
        ({"send_signal": False}, "bpf_send_signal_thread"),
        ({"cgroup_tracepoints": False}, "cgroup:cgroup_mkdir"),
        ({"exec_tracepoint": False}, "sched:sched_process_exec"),
        ({"btf": False, "layout": None}, "no BTF"),
        ({"layout": ExecLayout({}, ("linux_binprm.file",))}, "does not describe linux_binprm"),
    ],
)
def test_what_every_backend_needs_leaves_none_when_missing(
    change: dict[str, object], why: str
) -> None:
    facts = replace(DEBIAN, **change)  # type: ignore[arg-type]
    with pytest.raises(KernelSupportError, match="offers no way to enforce") as error:
        choose_backend(facts)
    assert why in str(error.value)
