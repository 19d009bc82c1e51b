"""`enforcer check` on every malformed policy of tests/fixtures/bad-policies.

Each file there (or each directory, for mistakes that take two files) says in its first lines
what it tries and what `check` must report:

    # Tries: host: "yes", a string where a boolean belongs.
    # Expect: line 10, spec.selector.host: write true or false, without quotes

`check` must exit 1 and print, for each `Expect`, a line `FILE:LINE: FIELD: MESSAGE` (or
`FILE:LINE: MESSAGE` for `no field`) whose message contains the text given; `{dir}` in it
stands for the directory of the file. Every run is timed: the alias bombs must be refused
within a second of CPU time, like any small file.

The real command runs, as a subprocess, a few at a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bad-policies"
# Generous: the largest files (capacity-*) take about 2 s on an idle machine, since the
# round-trip YAML parser keeps every line. Small files must take less than SMALL_FILE_S.
TIMEOUT_S = 60.0
SMALL_FILE_S = 1.0
SMALL_FILE_BYTES = 16 * 1024
PARALLEL = 4

_EXPECT = re.compile(r"^# Expect: line (\d+), (no field|\S.*?): (.+)$")


@dataclass(frozen=True)
class Expected:
    file: Path
    line: int
    field: str  # "" for none
    fragment: str

    def prefix(self) -> str:
        where = f"{self.file}:{self.line}: "
        return where + f"{self.field}: " if self.field else where


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str  # stdout and stderr, interleaved
    elapsed: float  # wall clock, which other work on the machine stretches
    cpu: float  # user and system time of the command


def cases() -> list[Path]:
    """Each file directly in the corpus, and each directory (checked as a whole)."""
    return sorted(p for p in CORPUS.iterdir() if p.suffix == ".yaml" or p.is_dir())


def expectations(case: Path) -> list[Expected]:
    found = []
    for file in sorted(case.glob("*.yaml")) if case.is_dir() else [case]:
        header = file.read_bytes().decode("utf-8", "replace").splitlines()
        assert header and header[0].startswith("# Tries: "), f"{file} does not say what it tries"
        for text in header[1:]:
            if not text.startswith("#"):
                break
            if (match := _EXPECT.match(text)) is not None:
                line, field, fragment = match.groups()
                field = "" if field == "no field" else field
                fragment = fragment.replace("{dir}", str(file.parent))
                found.append(Expected(file, int(line), field, fragment))
    return found


def check(case: Path) -> Run:
    """`enforcer check CASE`, with the time it took and the CPU time it used (from wait4)."""
    started = time.monotonic()
    command = [sys.executable, "-m", "enforcer", "check", str(case)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        timer = threading.Timer(TIMEOUT_S, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            output = process.stdout.read().decode("utf-8", "backslashreplace")
            # Waited for here, not by Popen, to get the child's resource usage.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
    elapsed = time.monotonic() - started
    return Run(process.returncode, output, elapsed, usage.ru_utime + usage.ru_stime)


@cache
def runs() -> dict[Path, Run]:
    """Every case checked once, a few at a time (each is mostly interpreter start-up)."""
    all_cases = cases()
    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(zip(all_cases, pool.map(check, all_cases), strict=True))


def test_the_corpus_covers_enough_mistakes() -> None:
    assert len(cases()) >= 60
    assert all(expectations(case) for case in cases())


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.name)
def test_check_refuses_and_says_where_and_what_to_do(case: Path) -> None:
    run = runs()[case]

    assert run.returncode == 1, run.output
    assert "Traceback" not in run.output
    for expected in expectations(case):
        lines = [line for line in run.output.splitlines() if line.startswith(expected.prefix())]
        assert lines, f"no line starting {expected.prefix()!r} in:\n{run.output}"
        assert any(expected.fragment in line for line in lines), (
            f"{expected.fragment!r} not in:\n" + "\n".join(lines)
        )


@pytest.mark.parametrize("case", [c for c in cases() if c.is_file()], ids=lambda c: c.name)
def test_a_small_file_is_checked_within_a_second(case: Path) -> None:
    # CPU time, not the wall clock: other work on the machine must not make this fail. The
    # interpreter's start-up is most of it (about 0.2 s).
    if case.stat().st_size > SMALL_FILE_BYTES:
        pytest.skip(f"{case.stat().st_size} bytes: only the generous timeout applies")
    run = runs()[case]
    assert run.cpu < SMALL_FILE_S, f"{run.cpu:.2f} s of CPU ({run.elapsed:.2f} s wall clock)"
