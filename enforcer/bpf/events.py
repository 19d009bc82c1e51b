"""The program's event buffer read through libbpf (Debian's libbpf1, which bcc depends on).

A BPF ring buffer (Linux 5.8+), or on older kernels a perf event array with
one buffer per CPU. libbpf's consumers are small and well kept; calling them
through ctypes spares the daemon bcc and its LLVM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

from enforcer.errors import EnforcerError


class EventBufferError(EnforcerError):
    """The event buffer could not be opened or read."""


_VOID_P, _INT = ctypes.c_void_p, ctypes.c_int
# libbpf's callbacks: ring_buffer_sample_fn, perf_buffer_sample_fn, perf_buffer_lost_fn.
_RING_SAMPLE = ctypes.CFUNCTYPE(_INT, _VOID_P, _VOID_P, ctypes.c_size_t)
_PERF_SAMPLE = ctypes.CFUNCTYPE(None, _VOID_P, _INT, _VOID_P, ctypes.c_uint32)
_PERF_LOST = ctypes.CFUNCTYPE(None, _VOID_P, _INT, ctypes.c_ulonglong)


def _libbpf() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    lib.ring_buffer__new.restype = ctypes.c_void_p
    lib.ring_buffer__new.argtypes = [ctypes.c_int, _RING_SAMPLE, ctypes.c_void_p, ctypes.c_void_p]
    lib.ring_buffer__poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.ring_buffer__free.argtypes = [ctypes.c_void_p]
    lib.perf_buffer__new.restype = ctypes.c_void_p
    lib.perf_buffer__new.argtypes = [ctypes.c_int, ctypes.c_size_t, _PERF_SAMPLE, _PERF_LOST,
                                     ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
    lib.perf_buffer__poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.perf_buffer__free.argtypes = [ctypes.c_void_p]
    return lib


# Returns 0 to go on; negative: libbpf stops this poll there (the record is consumed).
Handler = Callable[[bytes], int]


class EventBuffer:
    def __init__(
        self, map_fd: int, *, ring_buffer: bool, page_count: int, handler: Handler
    ) -> None:
        self._lib = _libbpf()
        self._ring = ring_buffer
        self._handler = handler
        if ring_buffer:
            self._callback: object = _RING_SAMPLE(self._on_ring)
            self._buffer = self._lib.ring_buffer__new(map_fd, self._callback, None, None)
        else:
            self._callback = _PERF_SAMPLE(self._on_perf)
            self._lost = _PERF_LOST(lambda _ctx, _cpu, _count: None)  # counted in event_drops
            self._buffer = self._lib.perf_buffer__new(map_fd, page_count, self._callback,
                                                      self._lost, None, None)  # fmt: skip
        if not self._buffer:
            raise EventBufferError(
                f"libbpf cannot open the event buffer: {os.strerror(ctypes.get_errno())}"
            )

    def _on_ring(self, _ctx: int, data: int, size: int) -> int:
        return self._handler(ctypes.string_at(data, size))

    def _on_perf(self, _ctx: int, _cpu: int, data: int, size: int) -> None:
        self._handler(ctypes.string_at(data, size))

    def poll(self, timeout_ms: int) -> None:
        if self._ring:
            self._lib.ring_buffer__poll(self._buffer, timeout_ms)
        else:
            self._lib.perf_buffer__poll(self._buffer, timeout_ms)

    def close(self) -> None:
        if self._buffer:
            free = self._lib.ring_buffer__free if self._ring else self._lib.perf_buffer__free
            free(self._buffer)
            self._buffer = None
