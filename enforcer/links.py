"""BPF links that outlive the process: attach, pin and read back, by system call.

bcc attaches a tracepoint or kprobe program by handing it to a perf event
with an ioctl; that attachment lives as long as the perf event's file
descriptor, so it ends with the daemon. A BPF link (BPF_LINK_CREATE on the
perf event, Linux 5.15 and later; LSM programs are attached as links by bcc
already) can be pinned in bpffs, and then the program stays attached until
the pin is removed: the kernel goes on enforcing while no daemon runs.

bcc exports none of this, so it is done here with ctypes and the raw system
calls. No bcc import: the CLI uses this module too (`enforcer unload`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterator
from pathlib import Path

from enforcer.errors import EnforcerError

# (bpf, perf_event_open) system call numbers.
_SYSCALLS = {"x86_64": (321, 298), "aarch64": (280, 241)}

# Commands of bpf(2) (uapi/linux/bpf.h).
_BPF_MAP_DELETE_ELEM = 3
_BPF_MAP_GET_NEXT_KEY = 4
_BPF_OBJ_PIN = 6
_BPF_OBJ_GET = 7
_BPF_LINK_CREATE = 28
_BPF_PERF_EVENT = 41  # enum bpf_attach_type
# Big enough for every union bpf_attr member used here; the kernel wants the
# bytes it does not know to be zero, and they are.
_BPF_ATTR_SIZE = 128

_PERF_TYPE_TRACEPOINT = 2
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5
KPROBE_PMU_TYPE = Path("/sys/bus/event_source/devices/kprobe/type")


class LinkError(EnforcerError):
    """A program could not be attached through a link, or a pin could not be made."""


class LinksUnsupportedError(LinkError):
    """The kernel cannot attach this program through a BPF link (Linux < 5.15)."""


def _numbers() -> tuple[int, int]:
    machine = platform.machine()
    if machine not in _SYSCALLS:
        raise LinksUnsupportedError(f"no system call numbers known for {machine}")
    return _SYSCALLS[machine]


_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _bpf(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    return _syscall(_numbers()[0], ctypes.c_int(command), attr, ctypes.c_uint(len(attr)))


def _attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    attr = ctypes.create_string_buffer(_BPF_ATTR_SIZE)
    struct.pack_into(fmt, attr, 0, *values)
    return attr


def _perf_event_open(type_: int, config: int, config1: int = 0) -> int:
    # struct perf_event_attr: type, size, config, sample_period, sample_type,
    # read_format, flags, wakeup_events, bp_type, config1 (kprobe_func), config2.
    attr = ctypes.create_string_buffer(_PERF_ATTR_SIZE)
    struct.pack_into("=IIQQQQQIIQQ", attr, 0, type_, _PERF_ATTR_SIZE, config, 1, 0, 0, 0, 1, 0,
                     config1, 0)  # fmt: skip
    # pid -1, cpu 0: a BPF program on the event runs for every task on every CPU.
    return _syscall(
        _numbers()[1], attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
        ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
    )  # fmt: skip


def _link_perf_event(prog_fd: int, event_fd: int, what: str) -> int:
    try:
        return _bpf(_BPF_LINK_CREATE, _attr("=IIII", prog_fd, event_fd, _BPF_PERF_EVENT, 0))
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.E2BIG):
            raise LinksUnsupportedError(
                f"this kernel cannot attach {what} through a BPF link (Linux 5.15 or later "
                f"can): {e.strerror}"
            ) from e
        raise LinkError(f"cannot attach a BPF link to {what}: {e.strerror}") from e
    finally:
        os.close(event_fd)  # the link keeps the perf event


def tracepoint_link(prog_fd: int, tracefs: Path, category: str, event: str) -> int:
    """Attaches a tracepoint program through a new link; returns the link's fd."""
    try:
        event_id = int((tracefs / "events" / category / event / "id").read_text())
        event_fd = _perf_event_open(_PERF_TYPE_TRACEPOINT, event_id)
    except OSError as e:
        raise LinkError(f"cannot open tracepoint {category}:{event}: {e}") from e
    return _link_perf_event(prog_fd, event_fd, f"tracepoint {category}:{event}")


def kprobe_link(prog_fd: int, function: str) -> int:
    """Attaches a kprobe program at `function` through a new link; returns the link's fd."""
    name = ctypes.create_string_buffer(function.encode())
    try:
        pmu = int(KPROBE_PMU_TYPE.read_text())
        event_fd = _perf_event_open(pmu, 0, ctypes.addressof(name))
    except OSError as e:
        raise LinkError(f"cannot put a kprobe on {function}: {e}") from e
    return _link_perf_event(prog_fd, event_fd, f"kprobe {function}")


def pin(fd: int, path: Path) -> None:
    """Pins a link or map in bpffs: it lives until the file is removed."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    try:
        _bpf(_BPF_OBJ_PIN, _attr("=QII", ctypes.addressof(raw), fd, 0))
    except OSError as e:
        raise LinkError(f"cannot pin at {path}: {e.strerror}") from e


def open_pinned(path: Path) -> int:
    """An fd of the object pinned at `path` (raises FileNotFoundError if none)."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    return _bpf(_BPF_OBJ_GET, _attr("=QII", ctypes.addressof(raw), 0, 0))


def u32_keys(map_fd: int) -> Iterator[int]:
    """The keys of a map whose keys are u32 (the held map: process ids)."""
    key, next_key = ctypes.c_uint32(), ctypes.c_uint32()
    first = True
    while True:
        attr = _attr("=IIQQ", map_fd, 0, 0 if first else ctypes.addressof(key),
                     ctypes.addressof(next_key))  # fmt: skip
        try:
            _bpf(_BPF_MAP_GET_NEXT_KEY, attr)
        except FileNotFoundError:
            return
        first = False
        key.value = next_key.value
        yield key.value


def delete_u32_key(map_fd: int, key: int) -> None:
    value = ctypes.c_uint32(key)
    try:
        _bpf(_BPF_MAP_DELETE_ELEM, _attr("=IIQ", map_fd, 0, ctypes.addressof(value)))
    except FileNotFoundError:
        return
