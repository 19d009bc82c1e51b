"""Backend choice from kernel facts: the best usable one, and why the better ones are not."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from enforcer.errors import KernelSupportError
from enforcer.kernel import backends
from enforcer.kernel.backends import (
    Backend,
    Headers,
    HeadersState,
    KernelFacts,
    choose_backend,
    classify_headers,
)
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
    assert "bpf is not an active LSM" in " ".join(backends.backend_problems(facts, Backend.LSM))
    assert choose_backend(facts).backend is Backend.KPROBE


def test_kprobe_needs_its_pass_function_traceable() -> None:
    facts = replace(DEBIAN, lsm_load_error=EPERM, kprobe_pass_function=False)
    assert "security_bprm_check cannot take a kprobe" in " ".join(
        backends.backend_problems(facts, Backend.KPROBE)
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
    assert choose_backend(DEBIAN, Backend.TRACEPOINT) == backends.BackendChoice(
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


def test_headers_are_classified_against_the_running_release() -> None:
    assert classify_headers("6.1.0-26-amd64", "6.1.0-26-amd64") is HeadersState.MATCHING
    assert classify_headers("6.18.44-fc-v782", "6.1.0-26-amd64") is HeadersState.MISMATCHED
    assert classify_headers("6.18.44-fc-v782", None) is HeadersState.MISSING


def _header_tree(root: Path, made_for: str) -> Path:
    tree = root / f"linux-headers-{made_for}"
    (tree / "include" / "generated").mkdir(parents=True)
    (tree / "include" / "generated" / "utsrelease.h").write_text(
        f'#define UTS_RELEASE "{made_for}"\n'
    )
    return tree


def test_a_build_link_to_another_kernels_headers_is_mismatched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "MODULES", tmp_path / "modules")
    monkeypatch.setattr(backends, "KHEADERS", tmp_path / "no-kheaders")
    (tmp_path / "modules" / "6.18.44").mkdir(parents=True)
    (tmp_path / "modules" / "6.18.44" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26"))
    (tmp_path / "modules" / "6.1.0-26").mkdir(parents=True)
    (tmp_path / "modules" / "6.1.0-26" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26x"))

    other = backends.probe_headers("6.18.44")
    assert (other.state, other.release) == (HeadersState.MISMATCHED, "6.1.0-26")
    assert other.path == str(tmp_path / "linux-headers-6.1.0-26")
    assert backends.probe_headers("6.1.0-26").state is HeadersState.MISMATCHED
    assert backends.probe_headers("5.10.0").state is HeadersState.MISSING


def test_matching_headers_and_kheaders_count_as_matching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "MODULES", tmp_path / "modules")
    monkeypatch.setattr(backends, "KHEADERS", tmp_path / "kheaders.tar.xz")
    (tmp_path / "modules" / "6.1.0-26").mkdir(parents=True)
    (tmp_path / "modules" / "6.1.0-26" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26"))
    assert backends.probe_headers("6.1.0-26").state is HeadersState.MATCHING

    (tmp_path / "kheaders.tar.xz").write_bytes(b"")
    assert backends.probe_headers("6.2.0").state is HeadersState.MATCHING


def fake_proc(root: Path, flags: int, self_pid: int) -> Path:
    (root / "2").mkdir(parents=True)
    (root / "2" / "stat").write_text(f"2 (kthreadd) S 0 0 0 0 -1 {flags} 0 0 0 0\n")
    (root / "self").symlink_to(str(self_pid))
    return root


def test_the_node_pid_namespace_shows_kthreadd_and_this_process(tmp_path: Path) -> None:
    backends.require_node_pid_namespace(fake_proc(tmp_path, 0x208040, os.getpid()))


@pytest.mark.parametrize(
    ("flags", "self_offset"), [(0x400100, 0), (0x208040, 1)], ids=["no-kthreadd", "other-procfs"]
)
def test_a_pid_namespace_of_its_own_is_refused_with_the_fix(
    tmp_path: Path, flags: int, self_offset: int
) -> None:
    proc = fake_proc(tmp_path, flags, os.getpid() + self_offset)
    with pytest.raises(KernelSupportError, match=r"of its own.*hostPID: true"):
        backends.require_node_pid_namespace(proc)
