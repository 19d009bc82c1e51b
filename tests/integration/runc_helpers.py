"""Run a real busybox container with runc for integration tests.

`runc_container()` builds an OCI bundle (a busybox-static rootfs plus
`runc spec`), starts it detached and always deletes it on the way out, even
when the test fails. Mark tests that use it `runc` (tests/conftest.py skips
them where runc cannot run).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.prerequisites import BUSYBOX, RUNC

DEFAULT_ARGS = ("/bin/sleep", "3600")
# The applets linked into the rootfs's /bin; pass more to runc_container().
DEFAULT_APPLETS = ("sh", "sleep", "whoami", "id", "true", "cat", "echo", "ls", "env")
RUNC_TIMEOUT_S = 30.0


class RuncHelperError(RuntimeError):
    """Raised when a test container cannot be built, started or reached."""


@dataclass(frozen=True)
class RuncContainer:
    """A running test container: its id, bundle directory and init pid on the host."""

    id: str
    bundle: Path
    pid: int

    def exec(
        self, argv: Sequence[str], timeout: float = RUNC_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the container with `runc exec`; output is captured as text.

        The return code is not checked: a killed process (-9 / 137) is what
        kill tests look for.
        """
        return subprocess.run(
            [RUNC, "exec", self.id, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def delete(self) -> None:
        """Kill and remove the container; doing it twice is harmless."""
        _delete(self.id)


@contextmanager
def runc_container(
    tmp_path: Path,
    id: str | None = None,
    args: Sequence[str] = DEFAULT_ARGS,
    applets: Sequence[str] = DEFAULT_APPLETS,
) -> Iterator[RuncContainer]:
    """Start a detached busybox container running `args`.

    On exit, whatever happened inside, the container is deleted with
    `runc delete -f` and its bundle directory removed.
    """
    container_id = id if id is not None else secrets.token_hex(32)
    bundle = tmp_path / f"bundle-{container_id[:12]}"
    _build_bundle(bundle, args, applets)
    try:
        pid = _start(container_id, bundle)
        yield RuncContainer(id=container_id, bundle=bundle, pid=pid)
    finally:
        _delete(container_id)
        shutil.rmtree(bundle, ignore_errors=True)


def _build_bundle(bundle: Path, args: Sequence[str], applets: Sequence[str]) -> None:
    busybox = shutil.which(BUSYBOX)
    if busybox is None:
        raise RuncHelperError("busybox is not installed (apt-get install busybox-static)")
    bin_dir = bundle / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(busybox, bin_dir / BUSYBOX)
    for applet in applets:
        (bin_dir / applet).symlink_to(BUSYBOX)
    etc = bundle / "rootfs" / "etc"
    etc.mkdir()
    # whoami and id need these to print names instead of numbers.
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    _run([RUNC, "spec"], cwd=bundle)
    config_file = bundle / "config.json"
    config = json.loads(config_file.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    config_file.write_text(json.dumps(config, indent=2))


def _start(container_id: str, bundle: Path) -> int:
    pid_file = bundle / "pid"
    log_file = bundle / "run.log"
    # Detached, the container inherits these descriptors; pipes would keep
    # subprocess waiting on the container, so errors go to a file instead.
    with log_file.open("w") as log:
        result = subprocess.run(
            [RUNC, "run", "-d", "--pid-file", str(pid_file), container_id],
            cwd=bundle,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            timeout=RUNC_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        raise RuncHelperError(
            f"runc run {container_id} failed ({result.returncode}): {log_file.read_text()}"
        )
    return int(pid_file.read_text())


def _delete(container_id: str) -> None:
    # check=False: the container may already be gone, which is what we want.
    subprocess.run(
        [RUNC, "delete", "-f", container_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=RUNC_TIMEOUT_S,
        check=False,
    )


def _run(argv: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=RUNC_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuncHelperError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")


def run_foreground(
    tmp_path: Path,
    args: Sequence[str],
    id: str | None = None,
    applets: Sequence[str] = DEFAULT_APPLETS,
    timeout: float = RUNC_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot container in the foreground (`runc run`) and return how it ended.

    The container is deleted and its bundle removed afterwards, whatever happened.
    """
    container_id = id if id is not None else secrets.token_hex(32)
    bundle = tmp_path / f"bundle-{container_id[:12]}-{secrets.token_hex(2)}"
    _build_bundle(bundle, args, applets)
    try:
        return subprocess.run(
            [RUNC, "run", container_id],
            cwd=bundle,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        _delete(container_id)
        shutil.rmtree(bundle, ignore_errors=True)
