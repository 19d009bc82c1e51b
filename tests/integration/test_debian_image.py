"""The Debian 12 test image (tests/images/debian_rootfs.sh) runs as a podman container."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from podman_helpers import PodmanContainer, podman_container

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def container(debian_image: str) -> Iterator[PodmanContainer]:
    # Debian's /bin is a link to usr/bin: a bare name goes through PATH either way.
    with podman_container(debian_image, args=("sleep", "3600")) as running:
        yield running


def run(container: PodmanContainer, *argv: str) -> str:
    """Run `argv` in the container; return its stdout, failing the test if it fails."""
    result = container.exec(argv)
    assert result.returncode == 0, f"{argv} exited {result.returncode}: {result.stderr}"
    return result.stdout


def test_the_container_runs(container: PodmanContainer) -> None:
    assert container.pid is not None


def test_bin_is_a_link_to_usr_bin(container: PodmanContainer) -> None:
    assert run(container, "readlink", "/bin").strip() == "usr/bin"


@pytest.mark.parametrize(
    ("program", "argv", "expected"),
    [
        ("bash", ("bash", "-c", "echo $BASH_VERSION"), "5."),
        ("python3", ("python3", "-c", "import sys; print(sys.version)"), "3.11."),
        ("busybox", ("busybox", "echo", "busybox"), "busybox"),
    ],
)
def test_the_program_is_installed_and_runs(
    container: PodmanContainer, program: str, argv: tuple[str, ...], expected: str
) -> None:
    assert run(container, "sh", "-c", f"command -v {program}").strip() == f"/usr/bin/{program}"
    assert run(container, *argv).startswith(expected)


def test_it_is_debian_12(container: PodmanContainer) -> None:
    assert run(container, "cat", "/etc/debian_version").startswith("12")
