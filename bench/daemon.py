"""`enforcer run` in a child process, as an operator starts it, and what it reports."""

from __future__ import annotations

import functools
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import proc
from bench.errors import MeasurementError
from tests.support.daemon import DaemonProcess, spawn

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
STATUS_POLL_S = 0.01
# Idle: the daemon's CPU time grows by less than a clock tick over IDLE_SAMPLE_S.
IDLE_SAMPLE_S = 0.5
IDLE_TIMEOUT_S = 15.0
BPFFS = Path("/sys/fs/bpf")
COMPILE_LOG = re.compile(
    r"BPF program (?:compiled and loaded|loaded from the cache) in ([0-9.]+) s"
)


@dataclass
class Daemon(DaemonProcess):
    start_seconds: float  # from spawning `enforcer run` to its status saying enforcing

    def cli_json(self, command: str) -> Any:
        """`enforcer COMMAND --json --socket S`, as a script would call it."""
        argv = [sys.executable, "-m", "enforcer", command, "--json", "--socket", str(self.socket)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        try:
            return json.loads(result.stdout)
        except ValueError as e:
            raise MeasurementError(f"enforcer {command} --json failed: {result.stderr}") from e

    def blocked(self, policy: str) -> int:
        """The daemon's count of execs `policy` blocked, from `enforcer stats --json`."""
        policies = self.cli_json("stats")["policies"]
        return sum(int(p["blocked"]) for p in policies if p["name"] == policy)

    def cpu_seconds(self) -> float:
        return proc.cpu_seconds(self.pid)

    def wait_idle(self) -> None:
        """Returns once the daemon's start-up work is done (its CPU time stops growing).

        Gives up after IDLE_TIMEOUT_S: a daemon that stays busy is measured as it is.
        """
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(IDLE_SAMPLE_S)
            now = self.cpu_seconds()
            if now - last < 1 / proc.CLOCK_TICKS:
                return
            last = now

    def memory(self) -> proc.Memory:
        return proc.memory(self.pid)

    def compile_seconds(self) -> float | None:
        """What the daemon logged for compiling and loading its program."""
        found = COMPILE_LOG.search(self.log.read_text(errors="replace"))
        return float(found.group(1)) if found else None

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)


@contextmanager
def running(
    policies: Path, workdir: Path, bpf_cache: Path | None = None, kept_pins: Path | None = None
) -> Iterator[Daemon]:
    """Starts `enforcer run`, waits until it is enforcing, and stops it when the block ends.

    Whatever the daemon keeps across restarts (pinned counters, saved state)
    goes to places of its own, removed after: never those of a real enforcer
    on this host. With `kept_pins`, the daemon pins there and leaves its
    program enforcing when it stops (--keep-on-exit), for the next start to
    take over; the caller ends that with `unload`.
    """
    pin_dir = kept_pins or BPFFS / f"enforcer-bench-{secrets.token_hex(4)}"
    options = _private_state(pin_dir, workdir / "state", bpf_cache)
    if kept_pins is not None and "--keep-on-exit" in _run_options():
        options.append("--keep-on-exit")
    try:
        started = time.monotonic()
        spawned = spawn(policies, workdir / "enforcer.sock", workdir / "daemon.log", options)
        try:
            _wait_enforcing(spawned)
            yield Daemon(spawned.process, spawned.socket, spawned.log, time.monotonic() - started)
        finally:
            spawned.stop(STOP_TIMEOUT_S)
    finally:
        if kept_pins is None:
            shutil.rmtree(pin_dir, ignore_errors=True)


def unload(pin_dir: Path) -> None:
    """Ends what daemons started with `kept_pins` left enforcing, and removes the pins."""
    subprocess.run([sys.executable, "-m", "enforcer", "unload", "--pin-dir", str(pin_dir)],
                   capture_output=True, check=False)  # fmt: skip
    shutil.rmtree(pin_dir, ignore_errors=True)


@functools.cache
def _run_options() -> str:
    help_text = subprocess.run(
        [sys.executable, "-m", "enforcer", "run", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return help_text.stdout


def _private_state(pin_dir: Path, state_dir: Path, bpf_cache: Path | None) -> list[str]:
    """--pin-dir, --state-dir and --bpf-cache of the bench's own, where the daemon has them."""
    options = _run_options()
    cache = bpf_cache is not None and "--bpf-cache" in options
    return [
        *(["--pin-dir", str(pin_dir)] if "--pin-dir" in options else []),
        *(["--state-dir", str(state_dir)] if "--state-dir" in options else []),
        *(["--bpf-cache", str(bpf_cache)] if cache else []),
    ]


def _wait_enforcing(spawned: DaemonProcess) -> None:
    try:
        spawned.wait_enforcing(START_TIMEOUT_S, STATUS_POLL_S)
    except AssertionError as e:
        raise MeasurementError(str(e)) from None
