"""`enforcer learn` on a real Debian container: learn, enforce, and the workload still runs."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningDaemon, requested_backend, start_daemon
from podman_helpers import PodmanContainer, podman_container

pytestmark = [pytest.mark.root, pytest.mark.podman]

KILLED = 137
LEARN_SECONDS = 8
WORKLOAD = "id -u >/dev/null && ls / >/dev/null && cat /etc/hostname >/dev/null && date -u"


@pytest.fixture
def container(debian_image: str) -> Iterator[PodmanContainer]:
    name = f"enforcer-learn-{secrets.token_hex(4)}"
    with podman_container(debian_image, name=name, args=("sleep", "3600")) as running:
        yield running


def workload(container: PodmanContainer) -> subprocess.CompletedProcess[str]:
    return container.exec(["sh", "-c", WORKLOAD])


def test_learn_then_enforce_runs_the_workload_and_kills_what_it_never_ran(
    container: PodmanContainer, tmp_path: Path
) -> None:
    learned = tmp_path / "policies" / "learned.yaml"
    learned.parent.mkdir()
    argv = [sys.executable, "-m", "enforcer", "learn", "--container", container.name,
            "--for", f"{LEARN_SECONDS}s", "--output", str(learned),
            "--backend", requested_backend()]  # fmt: skip
    learning = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    runs: list[int] = []

    def keep_working() -> None:
        while not stop.is_set():
            runs.append(workload(container).returncode)
            time.sleep(0.2)

    worker = threading.Thread(target=keep_working)
    worker.start()
    try:
        _, errors = learning.communicate(timeout=LEARN_SECONDS + 120)
    finally:
        stop.set()
        worker.join()
    assert learning.returncode == 0, errors
    assert set(runs) == {0}

    text = learned.read_text()
    assert "mode: audit" in text and "default: kill" in text
    assert "/usr/bin/id" in text and "/usr/bin/ls" in text
    assert f"programs in container {container.id[:12]}" in text
    checked = subprocess.run([sys.executable, "-m", "enforcer", "check", str(learned)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr

    learned.write_text(text.replace("mode: audit", "mode: enforce"))
    daemon = start_daemon(learned.parent, tmp_path)
    try:
        for _ in range(3):
            assert workload(container).returncode == 0
        assert blocked(daemon) == 0
        never_ran = container.exec(["/usr/bin/whoami"])
        assert never_ran.returncode == KILLED
        assert blocked(daemon) == 1
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def blocked(daemon: RunningDaemon) -> int:
    return sum(int(p["blocked"]) for p in daemon.ask("stats")["policies"])
