"""The one flock helper: a second holder is refused until the first lets go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enforcer.service.locks import try_lock


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
def test_a_lock_is_held_until_its_fd_closes(tmp_path: Path, directory: bool) -> None:
    target = tmp_path / ("pins" if directory else "follow.lock")
    if directory:
        target.mkdir()
    first = try_lock(target, directory=directory)
    assert first is not None
    assert try_lock(target, directory=directory) is None  # another open file: refused
    os.close(first)
    again = try_lock(target, directory=directory)
    assert again is not None
    os.close(again)


def test_a_missing_lock_file_is_made(tmp_path: Path) -> None:
    fd = try_lock(tmp_path / "new.lock")
    assert fd is not None and (tmp_path / "new.lock").is_file()
    os.close(fd)
