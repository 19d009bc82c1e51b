"""The LSM load test: one empty program, loaded once, attached, and closed again."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import cast

import pytest

from enforcer.bpf import syscall
from enforcer.kernel.btf import Btf, Kind
from enforcer.kernel.lsm_probe import lsm_load_error, try_lsm_program


class _Btf:
    """A kernel BTF that knows the LSM hook's function, as a BPF LSM kernel's does."""

    def find(self, kind: Kind, name: str) -> int | None:
        return 7 if (kind, name) == (Kind.FUNC, "bpf_lsm_bprm_check_security") else None


BTF = cast(Btf, _Btf())


def test_a_refused_program_is_loaded_once_and_its_errno_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands: list[int] = []

    def refuse(command: int, _attr: ctypes.Array[ctypes.c_char]) -> int:
        commands.append(command)
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(syscall, "bpf", refuse)
    assert try_lsm_program(BTF) == "BPF_PROG_LOAD: EPERM (Operation not permitted)"
    assert commands == [syscall.PROG_LOAD]  # not again for the verifier's log


def test_a_program_that_loads_is_attached_and_both_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands: list[int] = []
    opened: list[int] = []

    def accept(command: int, _attr: ctypes.Array[ctypes.c_char]) -> int:
        commands.append(command)
        opened.append(os.open(os.devnull, os.O_RDONLY))
        return opened[-1]

    monkeypatch.setattr(syscall, "bpf", accept)
    assert try_lsm_program(BTF) is None
    assert commands == [syscall.PROG_LOAD, syscall.RAW_TRACEPOINT_OPEN]
    for fd in opened:
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)


def test_nothing_is_loaded_without_root_the_bpf_lsm_or_btf(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(command: int, _attr: ctypes.Array[ctypes.c_char]) -> int:
        raise AssertionError(f"bpf({command}) called")

    monkeypatch.setattr(syscall, "bpf", never)
    assert lsm_load_error(root=False, lsm_active=("bpf",), btf=BTF) == "not tried: needs root"
    assert lsm_load_error(root=True, lsm_active=("capability",), btf=BTF) == (
        "not tried: bpf is not an active LSM"
    )
    assert lsm_load_error(root=True, lsm_active=("bpf",), btf=None) == (
        "not tried: the kernel has no BTF"
    )
