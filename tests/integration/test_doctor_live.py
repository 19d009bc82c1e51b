"""`enforcer doctor` on the real kernel: what it finds, what it chooses, how it exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from conftest import bpf_unavailable_reason, requested_backend

pytestmark = pytest.mark.root

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


def doctor(*args: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*(user or []), sys.executable, "-m", "enforcer", "doctor", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    reason = bpf_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    result = doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_reports_every_feature_and_explains_each_missing_one(report: dict[str, Any]) -> None:
    assert [c["name"] for c in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert check["seen"]
        if not check["ok"]:
            assert check["consequence"] and check["fix"], check


def test_chooses_the_best_usable_backend_and_says_why(report: dict[str, Any]) -> None:
    backends = {b["name"]: b for b in report["backends"]}
    assert list(backends) == ["lsm", "kprobe", "tracepoint"]
    best = next(name for name, b in backends.items() if b["usable"])
    assert report["enforcement_possible"] is True
    assert report["backend"]["name"] == best
    for name, backend in backends.items():
        assert backend["usable"] == (not backend["problems"])
        if not backend["usable"] and list(backends).index(name) < list(backends).index(best):
            assert f"not {name}: " in report["backend"]["reason"]


def test_the_lsm_verdict_comes_from_loading_a_program(report: dict[str, Any]) -> None:
    lsm = next(c for c in report["checks"] if c["name"] == "bpf_lsm")
    usable = next(b["usable"] for b in report["backends"] if b["name"] == "lsm")
    assert lsm["ok"] == usable
    if "bpf" in lsm["seen"].split(";")[0] and not lsm["ok"]:
        assert "bprm_check_security program" in lsm["seen"]


def test_the_backend_the_tests_run_with_is_usable(report: dict[str, Any]) -> None:
    requested = requested_backend()
    if requested == "auto":
        pytest.skip("no ENFORCER_BACKEND: the tests use the backend doctor chose")
    assert next(b["usable"] for b in report["backends"] if b["name"] == requested)


def test_prints_a_table_for_people(report: dict[str, Any]) -> None:
    result = doctor()
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "kernel"
    assert lines[1].split() == ["CHECK", "STATE", "SEEN"]
    assert f"backend: {report['backend']['name']} (" in result.stdout
    for check in report["checks"]:
        if not check["ok"]:
            assert f"  {check['name']}: {check['consequence']}" in result.stdout


def test_as_a_user_it_asks_for_root_and_exits_1(report: dict[str, Any]) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if not os.access(sys.executable, os.X_OK):
        pytest.skip(f"{sys.executable} is not executable")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

    result = doctor("--json", user=nobody)

    assert result.returncode == 1, result.stderr
    parsed = json.loads(result.stdout)
    root = next(c for c in parsed["checks"] if c["name"] == "root")
    assert (root["ok"], root["fix"]) == (False, "run `sudo enforcer doctor`")
    assert parsed["enforcement_possible"] is False
