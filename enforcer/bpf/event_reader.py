"""The program's events (struct event in bpf/enforcer.h), read in batches and decoded.

The buffer itself (a ring buffer, or a perf buffer on older kernels) is read
through libbpf (events.py); here each record becomes a records.KernelEvent.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable

from enforcer.bpf import abi
from enforcer.bpf.abi import Action, EventKind
from enforcer.bpf.events import EventBuffer
from enforcer.bpf.maps import Map
from enforcer.bpf.records import KernelEvent
from enforcer.enforce.map_contents import Hit

log = logging.getLogger(__name__)

# Most events handled per poll_events call.
EVENT_BATCH = 256


class EventReader:
    """`event_type` is the compile's ctypes type of one event record."""

    def __init__(
        self, events: Map, event_type: type[ctypes.Structure], *, ring_buffer: bool
    ) -> None:
        self._events = events
        self._event_type = event_type
        self._ring_buffer = ring_buffer
        self._buffer: EventBuffer | None = None
        self._batch_left = EVENT_BATCH

    def open_events(self, handler: Callable[[KernelEvent], None]) -> None:
        size = ctypes.sizeof(self._event_type)

        def on_raw(data: bytes) -> int:
            try:
                raw = self._event_type.from_buffer_copy(data[:size].ljust(size, b"\0"))
                event = decode_event(raw)
            except (ValueError, TypeError):
                log.exception("undecodable event from the kernel")
            else:
                handler(event)
            self._batch_left -= 1
            # Negative: libbpf stops this poll here (the event is consumed).
            return -1 if self._batch_left <= 0 else 0

        self._buffer = EventBuffer(
            self._events.fd,
            ring_buffer=self._ring_buffer,
            page_count=abi.RINGBUF_PAGES,
            handler=on_raw,
        )

    def poll_events(self, timeout_ms: int) -> None:
        """Waits up to timeout_ms for events and hands at most EVENT_BATCH to the handler.

        libbpf's ring buffer poll reads on while the kernel writes, so under an
        exec storm it would never return; the caller's loop (the watchdog, the
        hold-grace renewal) turns between batches. A perf buffer poll reads
        only what was there when it began.
        """
        self._batch_left = EVENT_BATCH
        if self._buffer is None:
            time.sleep(timeout_ms / 1000)
            return
        self._buffer.poll(timeout_ms)

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


def decode_event(raw: ctypes.Structure) -> KernelEvent:
    kind = EventKind(raw.kind)
    hit = (
        Hit(raw.policy_id, raw.rule_id, raw.target_id, Action(raw.action))
        if kind is EventKind.MATCH
        else None
    )
    return KernelEvent(
        kind=kind,
        timestamp_ns=raw.timestamp_ns,
        cgroup_id=raw.cgroup_id,
        pid=raw.pid,
        tid=raw.tid,
        uid=raw.uid,
        hit=hit,
        comm=raw.comm.decode(errors="replace"),
        filename=raw.filename.decode(errors="replace"),
        argv=_decode_args(raw),
        invoked=raw.invoked.decode(errors="replace"),
        flags=raw.flags,
        caller=raw.caller.decode(errors="replace"),
    )


def _decode_args(raw: ctypes.Structure) -> tuple[str, ...]:
    # ctypes cuts a char array at its first NUL: read the slots' raw bytes.
    field = type(raw).args
    slots = ctypes.string_at(ctypes.addressof(raw) + field.offset, field.size)
    return tuple(
        slots[i * abi.ARG_LEN : (i + 1) * abi.ARG_LEN].split(b"\0", 1)[0].decode(errors="replace")
        for i in range(min(raw.argc, abi.MAX_ARGS))
    )
