"""The bpf(2) system call, by ctypes: maps, programs, pins and object info.

The one owner of the raw system call. No bcc: the daemon loads its compiled
program (bpf_object.py) and reads its maps through this module, and the CLI
reads pinned maps (`enforcer unload`) through it too.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from enforcer.errors import EnforcerError

# (bpf, perf_event_open) system call numbers.
_SYSCALLS = {"x86_64": (321, 298), "aarch64": (280, 241)}

# Commands of bpf(2) (uapi/linux/bpf.h).
MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
PROG_LOAD = 5
OBJ_PIN = 6
OBJ_GET = 7
OBJ_GET_INFO_BY_FD = 15
RAW_TRACEPOINT_OPEN = 17
LINK_CREATE = 28

# bpf_prog_type and bpf_attach_type values (uapi/linux/bpf.h) the loaders use.
PROG_TYPE_KPROBE = 2
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_RAW_TRACEPOINT = 17
PROG_TYPE_LSM = 29
ATTACH_LSM_MAC = 27
# Big enough for every union bpf_attr member used here; the kernel wants the
# bytes it does not know to be zero, and they are.
_ATTR_SIZE = 128
_OBJ_NAME_LEN = 16
# The verifier's log on a refused program: its last lines say why.
_LOG_SIZE = 1 << 20

# What map keys and values are passed as: any ctypes object, by address.
CData: TypeAlias = "ctypes.Structure | ctypes.Union | ctypes.Array[Any] | ctypes._SimpleCData[Any]"


class UnsupportedArchitectureError(EnforcerError):
    """No system call numbers are known for this machine."""


class ProgramRejectedError(EnforcerError):
    """The kernel's verifier refused a program; `errno` says how."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


def numbers() -> tuple[int, int]:
    """(bpf, perf_event_open) for this machine."""
    machine = platform.machine()
    if machine not in _SYSCALLS:
        raise UnsupportedArchitectureError(
            f"enforcer knows no bpf(2) system call number for {machine}; "
            f"it runs on {', '.join(sorted(_SYSCALLS))}"
        )
    return _SYSCALLS[machine]


_libc = ctypes.CDLL(None, use_errno=True)


def syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    buffer = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buffer, 0, *values)
    return buffer


def bpf(command: int, attr_buffer: ctypes.Array[ctypes.c_char]) -> int:
    return syscall(numbers()[0], ctypes.c_int(command), attr_buffer,
                   ctypes.c_uint(len(attr_buffer)))  # fmt: skip


def _name(name: str) -> bytes:
    return name.encode()[: _OBJ_NAME_LEN - 1]


def map_create(
    map_type: int, *, key_size: int, value_size: int, max_entries: int, flags: int, name: str
) -> int:
    return bpf(MAP_CREATE, attr("=IIIIIII16s", map_type, key_size, value_size, max_entries,
                                flags, 0, 0, _name(name)))  # fmt: skip


def _elem(command: int, fd: int, key: CData | None, value: CData | None) -> bool:
    """One element command; False where the key is absent (ENOENT)."""
    key_at = ctypes.addressof(key) if key is not None else 0
    value_at = ctypes.addressof(value) if value is not None else 0
    try:
        bpf(command, attr("=IIQQQ", fd, 0, key_at, value_at, 0))
    except FileNotFoundError:
        return False
    return True


def map_lookup(fd: int, key: CData, value: CData) -> bool:
    return _elem(MAP_LOOKUP_ELEM, fd, key, value)


def map_update(fd: int, key: CData, value: CData) -> None:
    _elem(MAP_UPDATE_ELEM, fd, key, value)


def map_delete(fd: int, key: CData) -> bool:
    return _elem(MAP_DELETE_ELEM, fd, key, None)


def map_next_key(fd: int, key: CData | None, next_key: CData) -> bool:
    """The key after `key` (None: the first) into next_key; False at the end."""
    return _elem(MAP_GET_NEXT_KEY, fd, key, next_key)


def obj_pin(fd: int, path: Path) -> None:
    raw = ctypes.create_string_buffer(os.fsencode(path))
    bpf(OBJ_PIN, attr("=QII", ctypes.addressof(raw), fd, 0))


def obj_get(path: Path) -> int:
    """An fd of the object pinned at `path` (raises FileNotFoundError if none)."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    return bpf(OBJ_GET, attr("=QII", ctypes.addressof(raw), 0, 0))


@dataclass(frozen=True)
class MapInfo:
    map_type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def _info(fd: int, size: int) -> bytes:
    info = ctypes.create_string_buffer(size)
    bpf(OBJ_GET_INFO_BY_FD, attr("=IIQ", fd, size, ctypes.addressof(info)))
    return info.raw


def map_info(fd: int) -> MapInfo:
    # struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags
    return MapInfo(*struct.unpack_from("=IIIIII", _info(fd, 80)))


def prog_id(fd: int) -> int:
    # struct bpf_prog_info: type, id
    return int(struct.unpack_from("=II", _info(fd, 208))[1])


def prog_load(
    prog_type: int,
    insns: bytes,
    name: str,
    *,
    license_: str = "GPL",
    expected_attach_type: int = 0,
    attach_btf_id: int = 0,
    explain: bool = True,
) -> int:
    """Loads a program through the verifier; its log says why if it refuses.

    The log costs a second load (and a megabyte): explain=False skips it
    where only the errno matters (a probe).
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    licence = ctypes.create_string_buffer(license_.encode())
    fields = (prog_type, len(insns) // 8, ctypes.addressof(code), ctypes.addressof(licence))

    def load(log_level: int, log: ctypes.Array[ctypes.c_char] | None) -> int:
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
        # kern_version, prog_flags, prog_name, prog_ifindex, expected_attach_type,
        # prog_btf_fd, func_info_rec_size, func_info, func_info_cnt,
        # line_info_rec_size, line_info, line_info_cnt, attach_btf_id
        log_size, log_at = (len(log), ctypes.addressof(log)) if log is not None else (0, 0)
        buffer = attr("=IIQQIIQII16sIIIIQIIQII", *fields, log_level, log_size, log_at, 0, 0,
                      _name(name), 0, expected_attach_type, 0, 0, 0, 0, 0, 0, 0,
                      attach_btf_id)  # fmt: skip
        return bpf(PROG_LOAD, buffer)

    try:
        return load(0, None)
    except OSError as e:
        if not explain:
            refused = f"the kernel refused program {name}: {e.strerror}"
            raise ProgramRejectedError(refused, e.errno or 0) from e
    # Again, with the verifier's log: it costs a megabyte and time.
    log = ctypes.create_string_buffer(_LOG_SIZE)
    try:
        return load(1, log)
    except OSError as e:
        why = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise ProgramRejectedError(
            f"the kernel refused program {name}: {e.strerror}; verifier: {' / '.join(why)}",
            e.errno or 0,
        ) from e


def link_prog_id(fd: int) -> int:
    # struct bpf_link_info: type, id, prog_id
    return int(struct.unpack_from("=III", _info(fd, 64))[2])


def raw_tracepoint_open(name: str | None, prog_fd: int) -> int:
    """Attaches a raw tracepoint program (or, name None, an LSM one): a link fd."""
    raw = ctypes.create_string_buffer(name.encode()) if name is not None else None
    at = ctypes.addressof(raw) if raw is not None else 0
    return bpf(RAW_TRACEPOINT_OPEN, attr("=QI", at, prog_fd))
