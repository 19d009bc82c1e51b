"""enforcer as a systemd service: the unit, `make install`, and the notify protocol.

systemd is not PID 1 on the test machines, so the unit is checked with
`systemd-analyze verify`, the install goes to a temporary prefix, and the
daemon's side of Type=notify is checked against a notify socket owned by the
test, exactly as systemd would see it.
"""

from __future__ import annotations

import grp
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import host_policy

from tests.support.daemon import spawn
from tests.support.wait import eventually

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent.parent
UNIT = REPO / "systemd" / "enforcer.service"
CONFIG = REPO / "systemd" / "enforcer.env"
INSTALLED_ENFORCER = "/opt/enforcer/venv/bin/enforcer"
MAKE_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 90.0
MESSAGE_TIMEOUT_S = 10.0
# The keep-alive interval asked of the daemon is half of this.
WATCHDOG_USEC = 2_000_000
# How long one receive() waits for a datagram before the deadline is looked at.
RECEIVE_SLICE_S = 0.5


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def service_section(unit_text: str) -> dict[str, list[str]]:
    """Every Key=value of [Service], a key set on several lines kept in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- The unit file -----------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit names the installed binary; this checkout's stands in for it.
    enforcer = Path(sys.executable).parent / "enforcer"
    assert enforcer.exists(), f"{enforcer} is missing: install the package (make venv)"
    copy = tmp_path / "enforcer.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED_ENFORCER, str(enforcer)))

    result = verify(copy)

    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings: there must be none.
    assert (result.stdout + result.stderr).strip() == ""


def test_unit_is_a_notify_service_with_watchdog_and_reload() -> None:
    service = service_section(UNIT.read_text())
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]
    assert service["WatchdogSec"] and service["WatchdogSec"][0] != "0"
    assert service["ExecStart"][0].startswith(f"{INSTALLED_ENFORCER} ")
    assert (
        " run --policies ${ENFORCER_POLICIES} --socket ${ENFORCER_SOCKET}"
        in (service["ExecStart"][0])
    )
    assert service["RuntimeDirectory"] == ["enforcer"]
    assert service["StateDirectory"] == ["enforcer"]


def test_unit_is_hardened() -> None:
    service = service_section(UNIT.read_text())
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "PrivateNetwork": "yes",
        "IPAddressDeny": "any",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "RestrictNamespaces": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }.items():
        assert service.get(key) == [value], f"{key}={value} is missing"

    capabilities = set(service["CapabilityBoundingSet"][0].split())
    assert capabilities == {
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_OVERRIDE",
        "CAP_KILL",
        "CAP_CHOWN",
        "CAP_SYSLOG",
    }
    assert "AmbientCapabilities" not in service
    # Writable: only the pins, besides the runtime and state directories.
    assert "-/sys/fs/bpf/enforcer" in " ".join(service["ReadWritePaths"]).split()
    assert {"/sys", "/proc/sys"} <= set(" ".join(service["ReadOnlyPaths"]).split())
    assert service["SystemCallFilter"][0].startswith("@system-service ")
    assert service["RestrictAddressFamilies"] == ["AF_UNIX"]


def test_every_config_file_option_reaches_the_command_line() -> None:
    unit = UNIT.read_text()
    options = re.findall(r"^([A-Z_]+)=", CONFIG.read_text(), re.M)
    assert options
    exec_start = service_section(unit)["ExecStart"][0]
    for name in options:
        assert f"${name}" in exec_start or f"${{{name}}}" in exec_start, name
    assert "EnvironmentFile=-/etc/enforcer/enforcer.env" in unit


# --- make install / make uninstall ---------------------------------------------


def make(target: str, layout: dict[str, Path | str], *extra: str) -> str:
    variables = [f"{key}={value}" for key, value in layout.items()]
    # SYSTEMD_BOOTED empty: never touch a real systemd's enforcer.service from a test.
    argv = ["make", "-C", str(REPO), target, "SYSTEMD_BOOTED=", *variables, *extra]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=MAKE_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def install_layout(tmp_path: Path) -> Iterator[dict[str, Path | str]]:
    if os.geteuid() != 0:
        pytest.skip("make install needs root (it chowns to root and adds a group)")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    layout: dict[str, Path | str] = {
        "PREFIX": tmp_path / "opt" / "enforcer",
        "CONFDIR": tmp_path / "etc" / "enforcer",
        "UNITDIR": tmp_path / "etc" / "systemd" / "system",
        "STATEDIR": tmp_path / "var" / "lib" / "enforcer",
        "PINDIR": tmp_path / "bpf" / "enforcer",
        "SERVICE_GROUP": f"enforcer-test-{secrets.token_hex(3)}",
    }
    yield layout
    group = str(layout["SERVICE_GROUP"])
    known = subprocess.run(["getent", "group", group], capture_output=True, check=False)
    if known.returncode == 0:
        subprocess.run(["groupdel", group], check=False)


def test_make_install_then_uninstall(install_layout: dict[str, Path | str]) -> None:
    prefix = Path(install_layout["PREFIX"])
    confdir = Path(install_layout["CONFDIR"])
    unit = Path(install_layout["UNITDIR"]) / "enforcer.service"
    group = str(install_layout["SERVICE_GROUP"])

    make("install", install_layout)

    python = prefix / "venv" / "bin" / "python"
    located = subprocess.run(
        [str(python), "-c", "from enforcer.bpf import abi; print(abi.BPF_DIR)"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.strip()  # fmt: skip
    # Not editable: the installed package carries its own copy of bpf/.
    assert Path(located) == prefix / "venv" / "share" / "enforcer" / "bpf"
    assert (Path(located) / "exec_enforcer.c").read_text() == (
        REPO / "bpf" / "exec_enforcer.c"
    ).read_text()
    subprocess.run([str(python), "-c", "import bcc"], check=True)

    installed_unit = unit.read_text()
    assert f"ExecStart={prefix}/venv/bin/enforcer " in installed_unit
    assert f"EnvironmentFile=-{confdir}/enforcer.env" in installed_unit
    result = verify(unit)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr

    assert f"ENFORCER_POLICIES={confdir}/policies" in (confdir / "enforcer.env").read_text()
    policies = confdir / "policies"
    mode = policies.stat()
    assert (mode.st_uid, stat.S_IMODE(mode.st_mode)) == (0, 0o755)
    assert sorted(p.name for p in policies.iterdir()) == sorted(
        p.name for p in (REPO / "policies").iterdir() if p.suffix in (".yaml", ".example")
    )
    grp.getgrnam(group)

    # Again: what the operator changed stays.
    (confdir / "enforcer.env").write_text("ENFORCER_POLICIES=/srv/policies\n")
    (policies / "audit-recon-tools.yaml").unlink()
    make("install", install_layout)
    assert (confdir / "enforcer.env").read_text() == "ENFORCER_POLICIES=/srv/policies\n"
    assert not (policies / "audit-recon-tools.yaml").exists()

    make("uninstall", install_layout)
    assert not unit.exists()
    assert not prefix.exists()
    assert not (confdir / "enforcer.env").exists()
    assert (policies / "block-cryptominers.yaml").exists()
    grp.getgrnam(group)

    make("uninstall", install_layout, "PURGE=1")
    assert not confdir.exists()
    with pytest.raises(KeyError):
        grp.getgrnam(group)


# --- The daemon's side of Type=notify -----------------------------------------


class NotifySocket:
    """What systemd listens on: datagrams of KEY=value lines, with the sender's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float) -> tuple[int, dict[str, str]] | None:
        """(sender pid, message), or None when nothing came within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        pid = next(
            int.from_bytes(value[:4], "little")
            for level, kind, value in ancillary
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
        )
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        return pid, fields

    def wait_for(self, key: str, timeout: float) -> tuple[list[dict[str, str]], set[int]]:
        """Messages up to and including the first that sets `key`, and their senders."""
        seen: list[dict[str, str]] = []
        senders: set[int] = set()

        def messages() -> list[dict[str, str]]:
            if (received := self.receive(RECEIVE_SLICE_S)) is not None:
                senders.add(received[0])
                seen.append(received[1])
            return seen

        # receive() blocks for the next message: no pause between calls.
        eventually(
            messages,
            timeout,
            what=f"a message that sets {key}=",
            until=lambda got: bool(got) and key in got[-1],
            interval=0,
        )
        return seen, senders

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


def test_daemon_is_ready_only_when_enforcing_and_frames_reloads(
    tmp_path: Path, program: Path, notify_socket: NotifySocket
) -> None:
    blocked = program
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "host.yaml").write_text(host_policy(blocked))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_socket.path)}
    env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
    # Pins and state of its own, not those of an installed service.
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    options = ["--pin-dir", str(pin_dir), "--state-dir", str(tmp_path / "state")]
    log = tmp_path / "daemon.log"
    daemon = spawn(policies, tmp_path / "enforcer.sock", log, options, env=env).process
    try:
        messages, senders = notify_socket.wait_for("READY", READY_TIMEOUT_S)
        # Ready means enforcing, at that very moment.
        ran = subprocess.run([str(blocked), str(tmp_path / "ran")], check=False)
        assert ran.returncode == -signal.SIGKILL
        assert not (tmp_path / "ran").exists()
        ready = messages[-1]
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(daemon.pid)
        assert ready.get("STATUS")
        # NotifyAccess=main: only the process systemd started may send.
        assert senders == {daemon.pid}

        # Keep-alives every WATCHDOG_USEC / 2.
        started = time.monotonic()
        notify_socket.wait_for("WATCHDOG", MESSAGE_TIMEOUT_S)
        notify_socket.wait_for("WATCHDOG", MESSAGE_TIMEOUT_S)
        assert time.monotonic() - started < 3 * WATCHDOG_USEC / 1e6

        daemon.send_signal(signal.SIGHUP)
        reloading, _ = notify_socket.wait_for("RELOADING", MESSAGE_TIMEOUT_S)
        assert "MONOTONIC_USEC" in reloading[-1]
        notify_socket.wait_for("READY", MESSAGE_TIMEOUT_S)
        again = subprocess.run([str(blocked), str(tmp_path / "ran")], check=False)
        assert again.returncode == -signal.SIGKILL

        daemon.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING", MESSAGE_TIMEOUT_S)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(pin_dir, ignore_errors=True)
        print(log.read_text())
