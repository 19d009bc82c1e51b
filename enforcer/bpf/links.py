"""Programs attached to their hooks by BPF links, which can outlive the process.

A program handed to a perf event by ioctl stays attached as long as the perf
event's file descriptor, so it would end with the daemon. A BPF link
(BPF_LINK_CREATE on the perf event, Linux 5.15 and later; raw tracepoints
and LSM hooks since 5.7) can be pinned in bpffs, and then the program stays
attached until the pin is removed: the kernel goes on enforcing while no
daemon runs. No bcc: the CLI uses this module too (`enforcer unload`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from enforcer.bpf import syscall as bpf_syscall
from enforcer.errors import EnforcerError

_BPF_PERF_EVENT = 41  # enum bpf_attach_type

_PERF_TYPE_TRACEPOINT = 2
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_SET_BPF = 0x40042408
KPROBE_PMU_TYPE = Path("/sys/bus/event_source/devices/kprobe/type")


class LinkError(EnforcerError):
    """A program could not be attached through a link, or a pin could not be made."""


@dataclass(frozen=True)
class Attachment:
    """A program attached to its hook, for as long as `fd` is open or pinned."""

    fd: int
    # A BPF link, which can be pinned; else a perf event the program was
    # attached to by ioctl (Linux < 5.15), which ends with this process.
    pinnable: bool


def _perf_event_open(type_: int, config: int, config1: int = 0) -> int:
    # struct perf_event_attr: type, size, config, sample_period, sample_type,
    # read_format, flags, wakeup_events, bp_type, config1 (kprobe_func), config2.
    attr = ctypes.create_string_buffer(_PERF_ATTR_SIZE)
    struct.pack_into("=IIQQQQQIIQQ", attr, 0, type_, _PERF_ATTR_SIZE, config, 1, 0, 0, 0, 1, 0,
                     config1, 0)  # fmt: skip
    # pid -1, cpu 0: a BPF program on the event runs for every task on every CPU.
    return bpf_syscall.syscall(
        bpf_syscall.numbers()[1], attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
        ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
    )  # fmt: skip


def _link_perf_event(prog_fd: int, event_fd: int, what: str) -> Attachment:
    """A link from the program to the perf event; closes the event (the link keeps it).

    Where the kernel has no such links (Linux < 5.15), the program is attached
    to the event by ioctl instead and the event's fd is returned: that
    attachment ends when it is closed, with the daemon.
    """
    try:
        link = bpf_syscall.bpf(
            bpf_syscall.LINK_CREATE,
            bpf_syscall.attr("=IIII", prog_fd, event_fd, _BPF_PERF_EVENT, 0),
        )
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.E2BIG):
            os.close(event_fd)
            raise LinkError(f"cannot attach a BPF link to {what}: {e.strerror}") from e
    else:
        os.close(event_fd)
        return Attachment(link, pinnable=True)
    try:
        fcntl.ioctl(event_fd, _PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(event_fd, _PERF_EVENT_IOC_ENABLE, 0)
    except OSError as e:
        os.close(event_fd)
        raise LinkError(f"cannot attach a program to {what}: {e.strerror}") from e
    return Attachment(event_fd, pinnable=False)


def attach_tracepoint(prog_fd: int, tracefs: Path, category: str, event: str) -> Attachment:
    """Attaches a tracepoint program (see _link_perf_event)."""
    try:
        event_id = int((tracefs / "events" / category / event / "id").read_text())
        event_fd = _perf_event_open(_PERF_TYPE_TRACEPOINT, event_id)
    except OSError as e:
        raise LinkError(f"cannot open tracepoint {category}:{event}: {e}") from e
    return _link_perf_event(prog_fd, event_fd, f"tracepoint {category}:{event}")


def attach_kprobe(prog_fd: int, function: str) -> Attachment:
    """Attaches a kprobe program at `function` (see _link_perf_event)."""
    name = ctypes.create_string_buffer(function.encode())
    try:
        pmu = int(KPROBE_PMU_TYPE.read_text())
        event_fd = _perf_event_open(pmu, 0, ctypes.addressof(name))
    except OSError as e:
        raise LinkError(f"cannot put a kprobe on {function}: {e}") from e
    return _link_perf_event(prog_fd, event_fd, f"kprobe {function}")


def attach_raw_tracepoint(prog_fd: int, tracepoint: str | None) -> Attachment:
    """Attaches a raw tracepoint program (None: an LSM program to its hook) by a link."""
    what = f"raw tracepoint {tracepoint}" if tracepoint else "its LSM hook"
    try:
        return Attachment(bpf_syscall.raw_tracepoint_open(tracepoint, prog_fd), pinnable=True)
    except OSError as e:
        raise LinkError(f"cannot attach a program to {what}: {e.strerror}") from e


def pin(fd: int, path: Path) -> None:
    """Pins a link or map in bpffs: it lives until the file is removed."""
    try:
        bpf_syscall.obj_pin(fd, path)
    except OSError as e:
        raise LinkError(f"cannot pin at {path}: {e.strerror}") from e
