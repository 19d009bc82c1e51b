"""Fixtures for tests against the real kernel: the daemon, test binaries, containers."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from podman_helpers import debian_image_unavailable_reason, import_debian_image

from enforcer.kernel.mounts import ensure_mounts
from tests.support.daemon import DaemonProcess, spawn
from tests.support.policies import HOST, exec_policy, rule
from tests.support.prerequisites import bpf_unavailable_reason
from tests.support.wait import eventually

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
# Compiling the BPF program takes about 1 s here, 30-45 s under emulation
# (tests/vm/ raises the bound through the environment).
DAEMON_START_TIMEOUT_S = float(os.environ.get("ENFORCER_DAEMON_START_TIMEOUT_S", "90"))
DAEMON_STOP_TIMEOUT_S = 15.0
BACKEND_ENV = "ENFORCER_BACKEND"


def requested_backend() -> str:
    """The backend tests load: $ENFORCER_BACKEND (tests/vm/ sets it), else the best one.

    One of `enforcer run --backend`'s choices: auto, lsm, kprobe, tracepoint.
    """
    return os.environ.get(BACKEND_ENV, "auto")


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


@pytest.fixture(scope="session")
def debian_image() -> Iterator[str]:
    """The Debian 12 image (tests/images/debian_rootfs.sh), imported once a session; its name."""
    if (reason := debian_image_unavailable_reason()) is not None:
        pytest.skip(reason)
    with import_debian_image() as name:
        yield name


@dataclass
class RunningDaemon(DaemonProcess):
    """`enforcer run` in a child process, with its socket, its log and its pins."""

    pin_dir: Path | None = None

    def wait_for_status(
        self, done: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        """The first `status` for which `done` holds; fails the test after `timeout_s`."""
        status: dict[str, Any] = eventually(
            lambda: self.ask("status"), timeout_s, what="such a status", until=done
        )
        return status

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "enforcer", *args, "--socket", str(self.socket)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    def stop(self, timeout_s: float = DAEMON_STOP_TIMEOUT_S, keep_pins: bool = False) -> int:
        """Stops the daemon and, unless told to keep them, removes its pinned counters."""
        code = super().stop(timeout_s)
        if self.pin_dir is not None and not keep_pins:
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        return code


def start_daemon(
    policies: Path,
    workdir: Path,
    *extra: str,
    socket: Path | None = None,
    pin_dir: Path | None = None,
) -> RunningDaemon:
    """Starts the daemon and returns once it answers `status` as enforcing.

    Its counters are pinned in a bpffs directory of its own (removed by `stop`),
    never in the one a real enforcer on this host uses.
    """
    pin_dir = pin_dir or Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    options = ["--pin-dir", str(pin_dir), "--state-dir", str(workdir / "state")]
    if "--backend" not in extra:
        options += ["--backend", requested_backend()]
    started = spawn(
        policies, socket or workdir / "enforcer.sock", workdir / "daemon.log", [*options, *extra]
    )
    daemon = RunningDaemon(started.process, started.socket, started.log, pin_dir)
    try:
        daemon.wait_enforcing(DAEMON_START_TIMEOUT_S, interval_s=0.1)
    except AssertionError as e:
        daemon.stop()  # removes what it pinned before it failed
        raise AssertionError(f"{e}\n{daemon.log.read_text()}") from None
    return daemon


@pytest.fixture(scope="module")
def exec_program_class() -> Any:
    """bpf_program.ExecProgram, imported once the mounts it needs are made."""
    reason = bpf_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    ensure_mounts()
    from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (a compile needs the mounts)

    return ExecProgram


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


def host_policy(program: Path, name: str = "host-test", mode: str = "enforce") -> str:
    """A policy that reaches the host: it names only `program`, made for the test."""
    return exec_policy(name, HOST, [rule("forbidden", names=[program.name])], mode=mode)


@pytest.fixture
def program(tmp_path: Path, marker_binary: Path) -> Path:
    """A copy of the marker program under a name unique to this test."""
    if (reason := bpf_unavailable_reason()) is not None:
        pytest.skip(reason)
    path = tmp_path / "bin" / f"enforcer-test-{secrets.token_hex(4)}"
    path.parent.mkdir(exist_ok=True)
    shutil.copy2(marker_binary, path)
    return path
