"""Run real podman containers, of busybox or of Debian 12, for integration tests.

There is no registry here, so `podman_image()` builds the image: a
busybox-static rootfs tarball passed to `podman import`, under a tag of its
own, removed (`podman rmi`) on the way out. `podman_container()` runs a
container from it, detached or attached, and always removes it
(`podman rm -f -t 0`: busybox as PID 1 ignores SIGTERM, so waiting for it to
stop would only cost the stop timeout). `run_foreground()` runs a one-shot
`--rm` container and returns how it ended.

`import_debian_image()` imports a real Debian 12 root filesystem instead
(tests ask for the session fixture `debian_image` in conftest.py, which imports
it once): built by tests/images/debian_rootfs.sh (`make test-image`) and
cached outside the checkout. It is merged-/usr (`/bin` is a link to
`usr/bin`) and has bash, coreutils, python3, procps, busybox and curl. As in every
podman container, its `/dev/shm` is mounted noexec: copy programs to run
elsewhere, e.g. `/tmp`.

Root cannot raise rlimits on this machine, and podman's default ulimits are
higher than the current ones, so every `podman run` here lowers them (see
FIELD-NOTES). Mark tests that run containers `podman` (tests/conftest.py
skips them where podman cannot run); for the Debian image, call
`debian_image_unavailable_reason()` first and skip with it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.prerequisites import BUSYBOX, PODMAN, podman_missing_reason
from tests.support.wait import eventually

ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
DEFAULT_ARGS = ("/bin/sleep", "3600")
# The applets linked into the image's /bin; pass more to podman_image().
DEFAULT_APPLETS = ("sh", "sleep", "whoami", "id", "true", "cat", "echo", "ls", "env")
IMAGE_REPOSITORY = "localhost/enforcer-test-busybox"
DEBIAN_IMAGE_REPOSITORY = "localhost/enforcer-test-debian"
# Where tests/images/debian_rootfs.sh leaves the Debian tarball; keep the two in step.
IMAGE_CACHE_ENV = "ENFORCER_IMAGE_CACHE"
DEFAULT_IMAGE_CACHE = Path("/var/cache/enforcer-tests")
DEBIAN_TARBALL_NAME = "debian-bookworm-minbase-curl.tar"
PODMAN_TIMEOUT_S = 60.0
# How long an attached container may take to be running.
START_TIMEOUT_S = 30.0


class PodmanHelperError(RuntimeError):
    """Raised when a test image or container cannot be built, started or inspected."""


def debian_tarball() -> Path:
    """The cached Debian rootfs: in $ENFORCER_IMAGE_CACHE, else in /var/cache/enforcer-tests."""
    cache = os.environ.get(IMAGE_CACHE_ENV)
    return (Path(cache) if cache else DEFAULT_IMAGE_CACHE) / DEBIAN_TARBALL_NAME


def debian_image_unavailable_reason() -> str | None:
    """Return why containers of `import_debian_image()` cannot run here, or None if they can."""
    if (reason := podman_missing_reason()) is not None:
        return reason
    tarball = debian_tarball()
    if not tarball.is_file():
        return f"no Debian image at {tarball}: build it with `make test-image` (as root)"
    return None


@contextmanager
def podman_image(
    tmp_path: Path,
    applets: Sequence[str] = DEFAULT_APPLETS,
    files: Mapping[str, Path] | None = None,
) -> Iterator[str]:
    """Import a busybox image under a unique tag; yield its name, e.g. `localhost/...:<tag>`.

    `files` maps paths inside the image (e.g. "/bin/marker") to host files
    copied there. The image is removed on the way out, whatever happened.
    """
    name = f"{IMAGE_REPOSITORY}:{secrets.token_hex(6)}"
    tarball = tmp_path / f"rootfs-{secrets.token_hex(4)}.tar"
    _build_rootfs_tarball(tarball, applets, files or {})
    try:
        _run([PODMAN, "import", "--quiet", str(tarball), name])
        yield name
    finally:
        _remove_image(name)
        tarball.unlink(missing_ok=True)


@contextmanager
def import_debian_image() -> Iterator[str]:
    """Import the cached Debian 12 rootfs under a unique tag; yield its name, `localhost/...:<tag>`.

    Call `debian_image_unavailable_reason()` first. The image is removed on
    the way out, whatever happened; the tarball stays in the cache.
    """
    name = f"{DEBIAN_IMAGE_REPOSITORY}:{secrets.token_hex(6)}"
    try:
        _run([PODMAN, "import", "--quiet", str(debian_tarball()), name])
        yield name
    finally:
        _remove_image(name)


def _build_rootfs_tarball(tarball: Path, applets: Sequence[str], files: Mapping[str, Path]) -> None:
    busybox = shutil.which(BUSYBOX)
    if busybox is None:
        raise PodmanHelperError("busybox is not installed (apt-get install busybox-static)")
    rootfs = tarball.with_suffix(".rootfs")
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(busybox, bin_dir / BUSYBOX)
    for applet in applets:
        (bin_dir / applet).symlink_to(BUSYBOX)
    etc = rootfs / "etc"
    etc.mkdir()
    # whoami and id need these to print names instead of numbers.
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    for inside, source in files.items():
        target = rootfs / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    try:
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


@dataclass
class PodmanContainer:
    """A test container: its id, name and image, and its init pid on the host while it runs.

    `process` is the attached `podman run` when the container was started with
    `detach=False` (its stdout and stderr are pipes): its return code is the
    container's exit status, 137 when the init process was killed.
    """

    id: str
    name: str
    image: str
    pid: int | None
    process: subprocess.Popen[str] | None = None

    def exec(
        self, argv: Sequence[str], timeout: float = PODMAN_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the container with `podman exec`; output is captured as text.

        The return code is not checked: a killed process (137) is what kill
        tests look for.
        """
        return subprocess.run(
            [PODMAN, "exec", self.id, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def inspect(self) -> dict[str, object]:
        """Return `podman container inspect` of the container, as parsed JSON."""
        return inspect_container(self.id)

    def remove(self) -> None:
        """Kill and remove the container; doing it twice is harmless."""
        _remove(self.name)
        if self.process is not None:
            try:
                self.process.communicate(timeout=PODMAN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


@contextmanager
def podman_container(
    image: str,
    *,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    args: Sequence[str] = DEFAULT_ARGS,
    detach: bool = True,
    entrypoint: Sequence[str] | None = None,
    options: Sequence[str] = (),
) -> Iterator[PodmanContainer]:
    """Run a container of `image` running `args`; yield it once podman has started it.

    `name` defaults to `enforcer-test-<random>`; `entrypoint`, when given,
    replaces the image's (the imported images have none, so `args` is the
    whole command); `options` go to `podman run` before the image. With
    `detach=False`, `podman run` stays attached in `PodmanContainer.process`.
    On exit the container is removed with `podman rm -f -t 0`, whatever happened.
    """
    container_name = name if name is not None else f"enforcer-test-{secrets.token_hex(4)}"
    argv = [PODMAN, "run", *ULIMITS, "--name", container_name]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    if entrypoint is not None:
        argv += ["--entrypoint", json.dumps(list(entrypoint))]
    argv += [*options]
    process: subprocess.Popen[str] | None = None
    try:
        if detach:
            container_id = _run([*argv[:2], "--detach", *argv[2:], image, *args]).strip()
        else:
            process = subprocess.Popen(
                [*argv, image, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            container_id = _wait_started(container_name, process)
        container = PodmanContainer(
            id=container_id,
            name=container_name,
            image=image,
            pid=_running_pid(inspect_container(container_id)),
            process=process,
        )
        yield container
    finally:
        _remove(container_name)
        if process is not None and process.poll() is None:
            try:
                process.communicate(timeout=PODMAN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def run_foreground(
    image: str,
    args: Sequence[str],
    *,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    options: Sequence[str] = (),
    timeout: float = PODMAN_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `--rm` container to its end; return how it ended, output as text.

    The return code is the container's exit status (137 when its process was
    killed) and is not checked. The container is removed even on a timeout.
    """
    container_name = name if name is not None else f"enforcer-test-{secrets.token_hex(4)}"
    argv = [PODMAN, "run", "--rm", *ULIMITS, "--name", container_name]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    if entrypoint is not None:
        argv += ["--entrypoint", json.dumps(list(entrypoint))]
    try:
        return subprocess.run(
            [*argv, *options, image, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        _remove(container_name)


def inspect_container(ref: str) -> dict[str, object]:
    """Return `podman container inspect REF` as parsed JSON (one container)."""
    entries = json.loads(_run([PODMAN, "container", "inspect", ref]))
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise PodmanHelperError(f"podman container inspect {ref}: not one container: {entries!r}")
    return entries[0]


def _running_pid(inspected: Mapping[str, object]) -> int | None:
    state = inspected.get("State")
    pid = state.get("Pid") if isinstance(state, dict) else None
    return pid if isinstance(pid, int) and pid > 0 else None


def _wait_started(name: str, process: subprocess.Popen[str]) -> str:
    # An attached `podman run` prints nothing of its own: ask podman until the
    # container exists and has started (or ended already).
    def started() -> str | None:
        result = subprocess.run(
            [PODMAN, "container", "inspect", "--format", "{{.Id}} {{.State.Status}}", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PODMAN_TIMEOUT_S,
            check=False,
        )
        if result.returncode == 0:
            container_id, _, status = result.stdout.strip().partition(" ")
            if status in ("running", "exited", "stopped"):
                return container_id
        if process.poll() is not None and result.returncode != 0:
            _, stderr = process.communicate()
            raise PodmanHelperError(
                f"podman run --name {name} failed ({process.returncode}): {stderr}"
            )
        return None

    container_id: str = eventually(started, START_TIMEOUT_S, what=f"container {name} started")
    return container_id


def _remove(name: str) -> None:
    # check=False: the container may be gone already (--rm), which is what we want.
    subprocess.run(
        [PODMAN, "rm", "--force", "--time", "0", name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=PODMAN_TIMEOUT_S,
        check=False,
    )


def _remove_image(name: str) -> None:
    # check=False: an import that failed left no image, which is what we want.
    subprocess.run(
        [PODMAN, "rmi", "--force", name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=PODMAN_TIMEOUT_S,
        check=False,
    )


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PODMAN_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise PodmanHelperError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout
