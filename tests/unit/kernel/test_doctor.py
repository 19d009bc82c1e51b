"""`enforcer doctor`'s verdicts from kernel facts, and how the command shows them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from test_kernel_backends import DEBIAN, EPERM, LAYOUT, THIS_MACHINE

from enforcer.cli.main import main
from enforcer.kernel import doctor
from enforcer.kernel.backends import Backend
from enforcer.kernel.doctor import Diagnosis, diagnose
from enforcer.kernel.facts import KernelFacts
from enforcer.kernel.headers import Headers, HeadersState
from enforcer.kernel.layout import FIELDS

CHECKS = [
    "root",
    "btf",
    "kprobes",
    "tracepoints",
    "bpf_lsm",
    "bpf_send_signal",
    "ring_buffer",
    "cgroup_v2",
    "kernel_headers",
    "lockdown",
]


def checks(facts: KernelFacts) -> dict[str, doctor.Check]:
    return {c.name: c for c in diagnose(facts).checks}


def test_a_kernel_with_everything_passes_every_check_and_gets_lsm() -> None:
    diagnosis = diagnose(DEBIAN)
    assert [c.name for c in diagnosis.checks] == CHECKS
    assert all(c.ok for c in diagnosis.checks)
    assert diagnosis.choice is not None and diagnosis.choice.backend is Backend.LSM
    assert diagnosis.enforcement_possible
    offset = LAYOUT.offset("linux_binprm", "file")
    assert f"offsets of the {len(FIELDS)} struct fields" in checks(DEBIAN)["btf"].seen
    assert f"linux_binprm.file at {offset}" in checks(DEBIAN)["btf"].seen


def test_this_machine_lacks_kprobes_and_lsm_and_has_other_headers_but_can_enforce() -> None:
    diagnosis = diagnose(THIS_MACHINE)
    found = checks(THIS_MACHINE)
    assert sorted(name for name, c in found.items() if not c.ok) == [
        "bpf_lsm",
        "kernel_headers",
        "kprobes",
    ]
    assert found["bpf_lsm"].label == "refused" and EPERM in found["bpf_lsm"].seen
    assert "deny rules kill" in found["bpf_lsm"].consequence
    assert found["kernel_headers"].label == "mismatched"
    assert "enforcement is unaffected" in found["kernel_headers"].consequence
    assert (
        found["kernel_headers"].fix
        == "install linux-headers-6.18.44-fc-v782 where the distribution has it"
    )
    assert diagnosis.choice is not None and diagnosis.choice.backend is Backend.TRACEPOINT
    assert diagnosis.enforcement_possible
    assert [v.usable for v in diagnosis.backends] == [False, False, True]


def test_every_missing_piece_has_a_consequence_and_a_fix() -> None:
    broken = replace(
        THIS_MACHINE,
        btf=False,
        layout=None,
        lsm_active=("lockdown",),
        exec_tracepoint=False,
        cgroup_tracepoints=False,
        send_signal=False,
        ring_buffer=False,
        cgroup2=None,
        headers=Headers(HeadersState.MISSING, "", ""),
        lockdown="confidentiality",
    )
    diagnosis = diagnose(broken)
    assert [c.name for c in diagnosis.checks if c.ok] == ["root"]
    for check in diagnosis.checks[1:]:
        assert check.consequence and check.fix, check
    assert diagnosis.choice is None and not diagnosis.enforcement_possible


def test_bpf_missing_from_the_lsm_list_says_what_to_boot_with() -> None:
    found = checks(replace(DEBIAN, lsm_active=("lockdown", "capability")))["bpf_lsm"]
    assert not found.ok
    assert found.fix.startswith("boot with lsm=lockdown,capability,bpf")


@pytest.mark.parametrize(
    ("change", "check", "words"),
    [
        ({"headers": Headers(HeadersState.MISSING, "", "")}, "kernel_headers", "impossible"),
        ({"lockdown": "confidentiality"}, "lockdown", "impossible"),
        ({"send_signal": False}, "bpf_send_signal", "impossible"),
    ],
)
def test_what_no_backend_can_do_without_makes_enforcement_impossible(
    change: dict[str, object], check: str, words: str
) -> None:
    facts = replace(DEBIAN, **change)  # type: ignore[arg-type]
    assert words in checks(facts)[check].consequence
    assert not diagnose(facts).enforcement_possible


def test_no_cgroup_v2_or_ring_buffer_costs_something_but_still_enforces() -> None:
    facts = replace(DEBIAN, cgroup2=None, ring_buffer=False)
    found = checks(facts)
    assert "container selectors select nothing" in found["cgroup_v2"].consequence
    assert "perf buffer" in found["ring_buffer"].consequence
    assert diagnose(facts).enforcement_possible


def test_without_root_what_needs_root_is_unknown_and_enforcement_is_not_possible() -> None:
    facts = replace(THIS_MACHINE, root=False, exec_tracepoint=False, lsm_load_error="not tried")
    found = checks(facts)
    assert not found["root"].ok and found["root"].fix == "run `sudo enforcer doctor`"
    assert found["tracepoints"].label == "unknown"
    assert found["bpf_lsm"].label == "unknown"
    assert not diagnose(facts).enforcement_possible


def run_doctor(
    monkeypatch: pytest.MonkeyPatch, diagnosis: Diagnosis, *args: str
) -> tuple[int, str]:
    monkeypatch.setattr(doctor, "examine", lambda: diagnosis)
    result = CliRunner().invoke(main, ["doctor", *args])
    return result.exit_code, result.output


def test_json_names_the_backend_its_reason_and_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run_doctor(monkeypatch, diagnose(THIS_MACHINE), "--json")
    parsed = json.loads(output)
    assert code == 0
    assert parsed["backend"]["name"] == "tracepoint"
    assert "not kprobe: the kernel has no kprobes" in parsed["backend"]["reason"]
    assert [c["name"] for c in parsed["checks"]] == CHECKS
    assert [b["name"] for b in parsed["backends"]] == ["lsm", "kprobe", "tracepoint"]
    assert parsed["enforcement_possible"] is True


def test_the_table_lists_the_fixes_and_exits_1_when_nothing_can_enforce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facts = replace(THIS_MACHINE, headers=Headers(HeadersState.MISSING, "", ""))
    code, output = run_doctor(monkeypatch, diagnose(facts))
    assert code == 1
    assert "kernel_headers   MISSING" in output
    assert "    fix: install linux-headers-6.18.44-fc-v782" in output
    assert "backend: none; enforcer cannot enforce on this kernel" in output
