"""Fixtures for tests against the real kernel: the daemon, test binaries, containers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enforcer.control import request
from enforcer.errors import DaemonUnavailableError

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
DAEMON_START_TIMEOUT_S = 90.0
DAEMON_STOP_TIMEOUT_S = 15.0


def bpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs (run pytest as root)"
    if not Path("/sys/kernel/btf/vmlinux").exists() and not Path("/proc/kallsyms").exists():
        return "this kernel exposes no symbols for BPF"
    return None


def build_helper(name: str, out_dir: Path) -> Path:
    """Compiles tests/helpers/NAME.c static, so it also runs in busybox containers."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc libc6-dev)")
    out = out_dir / name
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(out), str(HELPERS / f"{name}.c")],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def execveat_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_helper("execveat", tmp_path_factory.mktemp("helpers"))


@pytest.fixture(scope="session")
def marker_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_helper("marker", tmp_path_factory.mktemp("helpers"))


@dataclass
class RunningDaemon:
    """`enforcer run` in a child process, with its socket and log."""

    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def ask(self, command: str) -> Any:
        return request(self.socket, command)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "enforcer", *args, "--socket", str(self.socket)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DAEMON_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_daemon(policies: Path, workdir: Path, *extra: str) -> RunningDaemon:
    """Starts the daemon and returns once it answers `status` as enforcing."""
    socket = workdir / "enforcer.sock"
    log = workdir / "daemon.log"
    argv = [sys.executable, "-m", "enforcer", "run", "--policies", str(policies)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--socket", str(socket), *extra], stdout=out, stderr=subprocess.STDOUT
        )
    daemon = RunningDaemon(process, socket, log)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode}:\n{log.read_text()}")
        try:
            if daemon.ask("status")["enforcing"]:
                return daemon
        except DaemonUnavailableError:
            time.sleep(0.1)
    daemon.stop()
    raise AssertionError(f"daemon not ready after {DAEMON_START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    """Starts daemons on demand; every one is stopped when the test ends."""
    started: list[RunningDaemon] = []

    def start(policies: Path, *extra: str) -> RunningDaemon:
        daemon = start_daemon(policies, tmp_path, *extra)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
