"""The results of the VM matrix: one cell per kernel and backend, and what `doctor` said.

Each boot leaves junit.xml, measure.json, doctor.json and exit-code in its
share. A cell is green when pytest ran tests and none failed. `doctor` must
agree with the cells: on each kernel, the backend it chooses is the most
preferred one that passed, and no backend it calls unusable passed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enforcer.kernel.backends import PREFERENCE

# The order `enforcer doctor` prefers them in.
BACKENDS = tuple(str(backend) for backend in PREFERENCE)


@dataclass
class CellResult:
    kernel: str  # the series, "6.1"
    release: str
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

    def doctor_choice(self) -> str | None:
        chosen = self.doctor.get("backend")
        return str(chosen.get("name")) if isinstance(chosen, dict) else None

    def doctor_usable(self) -> dict[str, bool]:
        verdicts = self.doctor.get("backends")
        if not isinstance(verdicts, list):
            return {}
        return {str(v.get("name")): bool(v.get("usable")) for v in verdicts if isinstance(v, dict)}


def read_results(kernel: str, release: str, backend: str, share: Path) -> CellResult:
    result = CellResult(kernel, release, backend)
    exit_file = share / "exit-code"
    if exit_file.exists():
        result.exit_code = int(exit_file.read_text().strip())
    for name, target in (("measure.json", result.measure), ("doctor.json", result.doctor)):
        try:
            target.update(json.loads((share / name).read_text()))
        except (OSError, ValueError):
            continue
    junit = share / "junit.xml"
    if junit.exists():
        result.tests, result.failures = parse_junit(junit.read_text())
    return result


def parse_junit(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(test id, outcome) per test case, and the message of each failure, error or skip."""
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


def doctor_disagreements(results: Sequence[CellResult]) -> list[str]:
    """Where `doctor`'s verdict on a kernel contradicts what passed there; empty if none."""
    problems: list[str] = []
    for kernel in dict.fromkeys(r.kernel for r in results):
        cells = {r.backend: r for r in results if r.kernel == kernel}
        said = [r for r in cells.values() if r.doctor]
        if not said:
            problems.append(f"{kernel}: enforcer doctor gave no verdict (see the console)")
            continue
        choice, usable = said[0].doctor_choice(), said[0].doctor_usable()
        passed = [b for b in BACKENDS if b in cells and cells[b].ok]
        for backend in passed:
            if not usable.get(backend, False):
                problems.append(f"{kernel}: {backend} passed, but doctor calls it unusable")
        if choice is None:
            problems.append(f"{kernel}: doctor chose no backend, although {passed} passed")
        elif choice in cells and not cells[choice].ok:
            problems.append(f"{kernel}: doctor chose {choice}, whose tests did not pass")
        elif passed and choice in cells and passed[0] != choice:
            problems.append(
                f"{kernel}: doctor chose {choice}, but {passed[0]} passed and ranks first"
            )
    return problems


def report(results: Sequence[CellResult]) -> str:
    lines = ["", "VM test matrix (Debian kernels under qemu/TCG; kernel x backend):"]
    header = f"{'KERNEL':6}  {'RELEASE':22}  {'BACKEND':10}  {'PASSED':>9}  {'FAILED':>6}  "
    header += f"{'SKIPPED':>7}  {'COMPILE_S':>9}  {'NS/EXEC':>8}  {'WALL_S':>6}"
    lines.append(header)
    for r in results:
        passed = f"{r.count('passed')}/{len(r.tests)}"
        lines.append(
            f"{r.kernel:6}  {r.release:22}  {r.backend:10}  {passed:>9}  "
            f"{r.count('failed') + r.count('error'):>6}  {r.count('skipped'):>7}  "
            f"{_number(r.measure.get('compile_seconds')):>9}  "
            f"{_number(r.measure.get('ns_per_exec'), 0):>8}  {r.seconds:>6.0f}"
        )
    for kernel in dict.fromkeys(r.kernel for r in results):
        said = next((r for r in results if r.kernel == kernel and r.doctor), None)
        if said is not None:
            usable = ", ".join(b for b, ok in said.doctor_usable().items() if ok) or "none"
            lines.append(
                f"{kernel}: enforcer doctor chose {said.doctor_choice()} (usable: {usable})"
            )
    for r in results:
        if r.failures or not r.ok:
            lines.append(f"{r.kernel} {r.backend}: guest exit code {r.exit_code}")
        lines.extend(f"  {message}" for message in r.failures)
        if not r.tests:
            lines.append("  no test results: see the console output above")
    disagreements = doctor_disagreements(results)
    lines.extend(f"doctor disagrees: {d}" for d in disagreements)
    if not disagreements:
        lines.append("doctor agrees with the matrix on every kernel")
    return "\n".join(lines)


def _number(value: object, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"
