"""Policy paths resolved inside a root, as a container would resolve them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enforcer.enforce.resolve import (
    ResolvedPath,
    ResolveError,
    kernel_dev,
    resolve_in_root,
    root_view,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A merged-/usr tree: /bin -> usr/bin, /usr/bin/sh -> dash, and a file outside."""
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "dash").write_text("")
    (tmp_path / "usr" / "bin" / "sh").symlink_to("dash")
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "escape").symlink_to("/etc/hostname")  # absolute: inside the root
    (tmp_path / "up").symlink_to("../../../../etc")
    (tmp_path / "loop").symlink_to("loop")
    return tmp_path


def resolve(root: Path, path: str, cwd: str = "/") -> ResolvedPath:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        return resolve_in_root(fd, path, cwd)
    finally:
        os.close(fd)


def inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return kernel_dev(st.st_dev), st.st_ino


def test_symlinks_in_the_path_and_at_its_end_are_followed(root: Path) -> None:
    dash = root / "usr" / "bin" / "dash"
    assert resolve(root, "/bin/sh") == ResolvedPath("/usr/bin/dash", inode(dash))
    assert resolve(root, "/usr/bin/dash").inode == inode(dash)


def test_absolute_links_and_dot_dot_never_leave_the_root(root: Path) -> None:
    assert resolve(root, "/escape") == ResolvedPath("/etc/hostname")  # absent in this root
    assert resolve(root, "/up/passwd") == ResolvedPath("/etc/passwd")
    assert resolve(root, "/../../bin/sh").canonical == "/usr/bin/dash"


def test_relative_paths_are_below_the_working_directory(root: Path) -> None:
    assert resolve(root, "./sh", cwd="/usr/bin").canonical == "/usr/bin/dash"
    assert resolve(root, "../bin/dash", cwd="/usr/lib").canonical == "/usr/bin/dash"


def test_a_path_that_does_not_exist_keeps_its_tail_as_written(root: Path) -> None:
    assert resolve(root, "/bin/nc") == ResolvedPath("/usr/bin/nc")
    assert resolve(root, "/opt/tool/./x") == ResolvedPath("/opt/tool/x")
    assert resolve(root, "/usr/bin/dash/x") == ResolvedPath("/usr/bin/dash/x")


def test_a_directory_resolves_to_its_canonical_path(root: Path) -> None:
    assert resolve(root, "/bin").canonical == "/usr/bin"
    assert resolve(root, "/").canonical == "/"


def test_a_symlink_loop_is_an_error_naming_it(root: Path) -> None:
    with pytest.raises(ResolveError, match="symlinks"):
        resolve(root, "/loop")


def test_root_view_resolves_each_path_once_and_says_when_the_root_is_gone(
    root: Path, tmp_path: Path
) -> None:
    view = root_view(root, ["/bin/sh", "/bin", "/bin/sh"])
    assert set(view) == {"/bin/sh", "/bin"} and view["/bin"].canonical == "/usr/bin"
    with pytest.raises(ResolveError, match="cannot open the root"):
        root_view(tmp_path / "gone", ["/bin"])


def test_kernel_dev_is_the_kernels_encoding() -> None:
    assert kernel_dev(os.makedev(254, 1)) == (254 << 20) | 1
    assert kernel_dev(os.makedev(0, 1234)) == 1234
