"""The new-container race: is a container's entrypoint killed when it is forbidden?

Starts the daemon with one policy that selects containers by image and kills
`whoami`, then runs N podman containers whose entrypoint is `whoami`, one
after another, each started after the policy was loaded. A container that
exits 137 was killed; one that prints its user name escaped. Also measures,
for detached containers, the time from `podman run -d` returning to the
container being listed by `enforcer containers`.

Run as root: `.venv/bin/python bench/race.py [--containers 200]` (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from enforcer.control import request
from enforcer.errors import DaemonUnavailableError

ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
KILLED = 137
APPEAR_TIMEOUT_S = 10.0

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


def make_image(workdir: Path) -> str:
    """A busybox-static image, imported with podman (no registry needed)."""
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
    image = f"localhost/enforcer-race-{secrets.token_hex(4)}:bench"
    subprocess.run(["podman", "import", "-q", str(tarball), image], check=True, capture_output=True)
    return image


def start_daemon(workdir: Path, image: str) -> tuple[subprocess.Popen[bytes], Path]:
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "race.yaml").write_text(POLICY.format(image=image))
    socket = workdir / "enforcer.sock"
    log = (workdir / "daemon.log").open("wb")
    argv = [sys.executable, "-m", "enforcer", "run", "--policies", str(policies)]
    process = subprocess.Popen([*argv, "--socket", str(socket)], stdout=log, stderr=log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if request(socket, "status")["enforcing"]:
                return process, socket
        except DaemonUnavailableError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"daemon not ready; see {workdir / 'daemon.log'}")


def race(image: str, containers: int) -> tuple[int, int, int]:
    """(kills, escapes, other outcomes) over `containers` one-shot containers."""
    kills = escapes = other = 0
    for _ in range(containers):
        result = subprocess.run(
            ["podman", "run", "--rm", *ULIMITS, image, "/bin/whoami"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode == KILLED and not result.stdout:
            kills += 1
        elif result.stdout.strip() == "root":
            escapes += 1
        else:
            other += 1
            print(f"unexpected: exit {result.returncode}: {result.stderr.strip()}", file=sys.stderr)
    return kills, escapes, other


def appearance_times(image: str, socket: Path, containers: int) -> list[float]:
    """Seconds from `podman run -d` returning to `enforcer containers` listing it."""
    times = []
    for _ in range(containers):
        started = subprocess.run(
            ["podman", "run", "-d", *ULIMITS, image, "/bin/sleep", "60"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--appearances", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enforcer-race-") as tmp:
        workdir = Path(tmp)
        image = make_image(workdir)
        process, socket = start_daemon(workdir, image)
        try:
            kills, escapes, other = race(image, args.containers)
            times = appearance_times(image, socket, args.appearances)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)
    result = {
        "containers": args.containers,
        "kills": kills,
        "escapes": escapes,
        "other": other,
        "appear_ms_median": round(1000 * statistics.median(times), 1) if times else None,
        "appear_ms_max": round(1000 * max(times), 1) if times else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
