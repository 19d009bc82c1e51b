"""The daemon under floods: its memory after each, and the watchdog's largest gap.

    python -m bench.floods [--seconds 60]

One daemon, a host policy naming only a program made here. In turn:
idle; a mkdir/rmdir loop in a cgroup of the bench's own (every new cgroup is
an event the daemon classifies), twice; a storm of execs that fail (EACCES: a file
without the execute bit, so the kernel's exec hook never runs); a storm of
execs that the policy kills (each a counted hit and an event). For each:
VmRSS and RssAnon afterwards, and the largest gap between the daemon's
systemd watchdog keep-alives (WATCHDOG_USEC=2 s, so one every second).
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import daemon, proc
from bench.cgroup import bench_cgroup

WATCHDOG_USEC = 2_000_000
POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: bench-floods
spec:
  selector:
    host: true
  rules:
    - name: forbidden
      match:
        names: [{name}]
"""


class Keepalives:
    """The systemd notify socket the daemon sends WATCHDOG=1 to, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data:
                self.times.append(time.monotonic())

    def largest_gap(self, since: float, until: float) -> float:
        marks = [since, *(t for t in self.times if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(marks))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def mkdir_flood(seconds: float) -> int:
    """mkdir and rmdir of one child cgroup, without pause; returns the pairs made."""
    pairs = 0
    with bench_cgroup() as (parent, _):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            child = parent / f"c{pairs % 8}"
            child.mkdir()
            child.rmdir()
            pairs += 1
    return pairs


@contextmanager
def exec_loops(program: Path) -> Iterator[None]:
    """One shell loop per CPU running `program` without pause."""
    loops = [
        subprocess.Popen(
            ["/bin/sh", "-c", f'while :; do "{program}"; done'],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(
    name: str, running: daemon.Daemon, keepalives: Keepalives, load: Callable[[], str]
) -> None:
    started = time.monotonic()
    note = load()
    ended = time.monotonic()
    running.wait_idle()
    memory = proc.memory(running.pid)
    status = running.cli_json("status")
    print(f"{name:<22} VmRSS {memory.vm_rss_kib / 1024:6.1f} MiB  RssAnon "
          f"{memory.rss_anon_kib / 1024:5.1f} MiB  largest keep-alive gap "
          f"{keepalives.largest_gap(started, ended):.2f} s  events dropped "
          f"{status['event_drops']}  {note}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floods", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each flood")
    seconds = parser.parse_args().seconds
    with tempfile.TemporaryDirectory(prefix="enforcer-floods-") as tmp:
        workdir = Path(tmp)
        killed = workdir / f"enforcer-bench-{secrets.token_hex(4)}"
        shutil.copy2("/bin/true", killed)
        failing = workdir / "not-executable"
        failing.write_bytes(b"")
        failing.chmod(0o644)
        policies = workdir / "policies"
        policies.mkdir()
        (policies / "floods.yaml").write_text(POLICY.format(name=killed.name))
        keepalives = Keepalives(workdir / "notify")
        os.environ["NOTIFY_SOCKET"] = str(keepalives.path)
        os.environ["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        try:
            with daemon.running(policies, workdir) as running:

                def idle() -> str:
                    time.sleep(seconds / 6)
                    return ""

                measure("idle", running, keepalives, idle)
                # Twice: memory that grows again the second time would be a leak.
                for flood in ("mkdir/rmdir flood", "the same again"):
                    measure(flood, running, keepalives, lambda: f"{mkdir_flood(seconds)} pairs")

                def storm(program: Path) -> str:
                    with exec_loops(program):
                        time.sleep(seconds)
                    return ""

                measure("failing-exec storm", running, keepalives, lambda: storm(failing))
                measure("killed-exec storm", running, keepalives, lambda: storm(killed))
                blocked = running.blocked("bench-floods")
                print(f"killed execs counted: {blocked}")
        finally:
            keepalives.close()


if __name__ == "__main__":
    main()
