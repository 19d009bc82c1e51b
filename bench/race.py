"""The new-container race: is a container's entrypoint killed when a policy forbids it?

The daemon runs one policy that selects containers by image and kills
`whoami`. Podman then runs one-shot containers of that image, one after
another, each started after the policy was loaded, with `whoami` as the
entrypoint: exit 137 is a kill, printing the user name is an escape. Then,
for detached containers, the time from `podman run -d` returning to the
daemon listing the container.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import daemon
from bench.errors import MeasurementError, PrerequisiteError
from bench.settings import Settings
from bench.summary import Summary, optional_summary
from enforcer.service.control import request
from enforcer.service.follow_lock import FOLLOW_LOCK
from enforcer.service.locks import try_lock

# What root may set here; podman's defaults ask for more (see FIELD-NOTES).
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
LABEL = "enforcer-bench"
KILLED = 137
APPEAR_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 60.0
FOLLOW_LOCK_TIMEOUT_S = 300.0

POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: race
spec:
  selector:
    containers:
      images: ["{image}"]
  rules:
    - name: entrypoint
      match:
        names: [whoami]
"""


@dataclass(frozen=True)
class Race:
    containers: int
    kills: int
    escapes: int
    other: int
    appear_s: Summary | None
    appear_misses: int  # detached containers not listed within APPEAR_TIMEOUT_S


def run(settings: Settings, workdir: Path) -> Race:
    if shutil.which("podman") is None:
        raise PrerequisiteError("podman is not installed: apt-get install podman")
    token = secrets.token_hex(4)
    policies = workdir / "race-policies"
    policies.mkdir()
    run_dir = workdir / "race"
    run_dir.mkdir()
    with _image(workdir, token) as image:
        (policies / "race.yaml").write_text(POLICY.format(image=image))
        _wait_follow_lock_free()
        try:
            with daemon.running(policies, run_dir) as running:
                if not _holds_follow_lock(running.pid):
                    raise MeasurementError(
                        f"another enforcer took {FOLLOW_LOCK} first: it follows new containers, "
                        "and only one enforcer can; stop it and run the race again"
                    )
                kills, escapes, other = _one_shots(image, token, settings.race_containers)
                times = _appearances(image, token, running.socket, settings.race_appearances)
        finally:
            _remove_containers(token)
    return Race(
        containers=settings.race_containers,
        kills=kills,
        escapes=escapes,
        other=other,
        appear_s=optional_summary(times),
        appear_misses=settings.race_appearances - len(times),
    )


def _wait_follow_lock_free() -> None:
    """Waits until no other enforcer follows new containers: only one at a time can.

    A daemon that cannot take the follow lock enforces only the containers it
    has seen start, and the race would measure that instead.
    """
    deadline = time.monotonic() + FOLLOW_LOCK_TIMEOUT_S
    while FOLLOW_LOCK.exists():
        if (lock := try_lock(FOLLOW_LOCK)) is not None:
            os.close(lock)
            return
        if time.monotonic() > deadline:
            raise MeasurementError(
                f"another enforcer holds {FOLLOW_LOCK} (it follows new containers, and only one "
                "enforcer can): stop it and run the race again"
            )
        time.sleep(1)


def _holds_follow_lock(pid: int) -> bool:
    """Whether /proc/locks shows `pid` holding the follow lock."""
    inode = str(FOLLOW_LOCK.stat().st_ino)
    # Lines read: 1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF
    held = (line.split() for line in Path("/proc/locks").read_text().splitlines())
    return any(
        len(f) > 5 and f[1] == "FLOCK" and f[4] == str(pid) and f[5].rsplit(":", 1)[-1] == inode
        for f in held
    )


@contextmanager
def _image(workdir: Path, token: str) -> Iterator[str]:
    """A busybox-static image, imported with podman (no registry needed), removed after."""
    rootfs = workdir / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "whoami", "sleep", "true"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    tarball = workdir / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    image = f"localhost/enforcer-bench-{token}:race"
    subprocess.run(["podman", "import", "-q", str(tarball), image], check=True, capture_output=True)
    try:
        yield image
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)


def _podman_run(
    image: str, token: str, option: str, *command: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "run", "--label", f"{LABEL}={token}", *ULIMITS, option, image, *command],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip


def _one_shots(image: str, token: str, containers: int) -> tuple[int, int, int]:
    """(kills, escapes, other outcomes) over `containers` containers running whoami."""
    kills = escapes = other = 0
    for _ in range(containers):
        result = _podman_run(image, token, "--rm", "/bin/whoami")
        if result.returncode == KILLED and not result.stdout:
            kills += 1
        elif result.stdout.strip() == "root":
            escapes += 1
        else:
            other += 1
            print(f"race: exit {result.returncode}: {result.stderr.strip()}", file=sys.stderr)
    return kills, escapes, other


def _appearances(image: str, token: str, socket: Path, containers: int) -> list[float]:
    """Seconds from `podman run -d` returning to the daemon listing the container."""
    times = []
    for _ in range(containers):
        started = _podman_run(image, token, "-d", "/bin/sleep", "60")
        if started.returncode != 0:
            raise MeasurementError(f"podman run -d failed: {started.stderr.strip()}")
        container_id = started.stdout.strip()
        returned = time.monotonic()
        try:
            while time.monotonic() - returned < APPEAR_TIMEOUT_S:
                listed = request(socket, "containers")["containers"]
                if any(c["id"] == container_id for c in listed):
                    times.append(time.monotonic() - returned)
                    break
                time.sleep(0.001)
        finally:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", container_id], capture_output=True, check=False
            )
    return times


def _remove_containers(token: str) -> None:
    """Every container this run made, even one a failure left behind."""
    listed = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"label={LABEL}={token}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True, check=False)
