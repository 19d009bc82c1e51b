"""The checks every command that loads the program makes first: the node's pid namespace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enforcer.errors import KernelSupportError
from enforcer.kernel.preflight import require_node_pid_namespace


def fake_proc(root: Path, flags: int, self_pid: int) -> Path:
    (root / "2").mkdir(parents=True)
    (root / "2" / "stat").write_text(f"2 (kthreadd) S 0 0 0 0 -1 {flags} 0 0 0 0\n")
    (root / "self").symlink_to(str(self_pid))
    return root


def test_the_node_pid_namespace_shows_kthreadd_and_this_process(tmp_path: Path) -> None:
    require_node_pid_namespace(fake_proc(tmp_path, 0x208040, os.getpid()))


@pytest.mark.parametrize(
    ("flags", "self_offset"), [(0x400100, 0), (0x208040, 1)], ids=["no-kthreadd", "other-procfs"]
)
def test_a_pid_namespace_of_its_own_is_refused_with_the_fix(
    tmp_path: Path, flags: int, self_offset: int
) -> None:
    proc = fake_proc(tmp_path, flags, os.getpid() + self_offset)
    with pytest.raises(KernelSupportError, match=r"of its own.*hostPID: true"):
        require_node_pid_namespace(proc)
