"""The event log: one JSON object per denial, to a file or to the systemd journal.

`open_event_log(target)` picks the writer from `--event-log TARGET`:

- a file path: appended to, one JSON object per line, each written through
  at once; created mode 0640 if missing (an existing file keeps its mode).
  `reopen()` after logrotate has moved it away (the daemon calls it on
  SIGHUP) starts a new file.
- "journal": each event is a journal entry whose MESSAGE is the JSON line and
  whose fields are the event's keys as ENFORCER_<KEY> (ENFORCER_POLICY,
  ENFORCER_CONTAINER_ID, ...), so `journalctl ENFORCER_POLICY=no-shells` finds
  them and `journalctl MESSAGE_ID=<DENIAL_MESSAGE_ID> -o cat` prints the same
  lines as the file. This needs the `systemd.journal` module (Debian
  python3-systemd); without it the lines go to stderr, which journald
  captures for a service, and the daemon says so once at startup.
- "stderr": the lines on stderr, as the journal fallback writes them.

Every line carries `time` as ISO-8601 UTC (an event's numeric `time`, seconds
since the epoch as in `Denial.to_json()`, is converted; an event without one
gets the current time). Writes are thread safe. A write that fails (disk
full, journald gone) never raises: the event is counted in `lost`, and the
first failure of a run of them is logged, as is the recovery.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import re
import sys
import syslog
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enforcer.errors import EnforcerError

log = logging.getLogger(__name__)

JOURNAL = "journal"
STDERR = "stderr"
FILE_MODE = 0o640
SYSLOG_IDENTIFIER = "enforcer"
# Fixed id of the journal entries this module writes (`journalctl MESSAGE_ID=...`).
DENIAL_MESSAGE_ID = "5c0b3c1e8a6f4b7e9d2f0a41e7c9b6d3"
FIELD_PREFIX = "ENFORCER_"


class EventLogError(EnforcerError):
    """Raised when the event log target is empty or its file cannot be opened.

    `target` is the target as given; `reason` says what failed.
    """

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"event log {target!r}: {reason}")


class EventLog:
    """Writes events as JSON lines somewhere; subclasses say where."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing = False
        self.lost = 0

    def write(self, event: Mapping[str, object]) -> None:
        """Writes one event as one line; never raises on I/O failure (see `lost`)."""
        record = with_time(event)
        line = json.dumps(record, default=str)
        with self._lock:
            try:
                self._emit(record, line)
            except OSError as e:
                self.lost += 1
                if not self._failing:
                    log.error(
                        "event log %s: cannot write (%s); events are lost until it can", self, e
                    )
                self._failing = True
                return
            if self._failing:
                log.warning("event log %s: writing again (%d events lost so far)", self, self.lost)
                self._failing = False

    def reopen(self) -> None:
        """Starts a new file after logrotate moved the old one; a no-op elsewhere."""

    def close(self) -> None:
        """Stops writing; nothing to release by default."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _emit(self, record: Mapping[str, object], line: str) -> None:
        raise NotImplementedError


class FileEventLog(EventLog):
    """Appends lines to a file, each with one unbuffered write(2).

    Each event is in the file as soon as `write` returns, and with O_APPEND a
    line is never interleaved with another writer's. A failed write leaves
    nothing behind to be retried: the event is lost and counted, the next one
    tried afresh.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path.absolute()  # `reopen()` must not depend on the current directory
        self._fd: int | None = _open_append(self.path)

    def reopen(self) -> None:
        """Opens the path anew. If that fails, raises EventLogError and keeps the old file."""
        new = _open_append(self.path)
        with self._lock:
            old, self._fd = self._fd, new
        if old is not None:
            os.close(old)

    def close(self) -> None:
        with self._lock:
            old, self._fd = self._fd, None
        if old is not None:
            os.close(old)

    def _emit(self, record: Mapping[str, object], line: str) -> None:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        data = (line + "\n").encode("utf-8")
        while data:  # a regular file takes it whole; a pipe or a full disk may not
            data = data[os.write(self._fd, data) :]

    def __str__(self) -> str:
        return str(self.path)


class JournalEventLog(EventLog):
    """Sends each event to the systemd journal through `systemd.journal.send`."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__()
        self._send = send

    def _emit(self, record: Mapping[str, object], line: str) -> None:
        self._send(
            MESSAGE=line,
            MESSAGE_ID=DENIAL_MESSAGE_ID,
            PRIORITY=str(priority(record)),
            SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
            **journal_fields(record),
        )

    def __str__(self) -> str:
        return JOURNAL


class StderrEventLog(EventLog):
    """Prints each line on stderr (journald captures a service's stderr)."""

    def _emit(self, record: Mapping[str, object], line: str) -> None:
        # Looked up at each write, not kept: whoever replaces sys.stderr gets the lines.
        print(line, file=sys.stderr, flush=True)

    def __str__(self) -> str:
        return STDERR


def open_event_log(target: str) -> EventLog:
    """The event log for `--event-log TARGET`: "journal", "stderr" or a file path.

    "journal" without python3-systemd (`systemd.journal`) writes to stderr,
    which journald records for a service; it is logged once, at info level.
    Write "./journal" for a file of that name. Raises EventLogError when the
    target is empty or the file cannot be opened.
    """
    if not target.strip():
        raise EventLogError(target, 'empty: give a file path, "journal" or "stderr"')
    if target == STDERR:
        return StderrEventLog()
    if target == JOURNAL:
        send = _journal_send()
        if send is not None:
            return JournalEventLog(send)
        log.info(
            "python3-systemd is not installed: events go to stderr as JSON lines, "
            "which journald records for the service"
        )
        return StderrEventLog()
    return FileEventLog(Path(target))


def with_time(event: Mapping[str, object]) -> dict[str, object]:
    """The event with `time` first, as ISO-8601 UTC to the millisecond."""
    when = event.get("time")
    if isinstance(when, int | float) and not isinstance(when, bool):
        stamp: object = iso_utc(float(when))
    elif isinstance(when, datetime):
        stamp = iso_utc(when.timestamp())
    elif when is None:
        stamp = iso_utc(time.time())
    else:
        stamp = when  # already text: kept as the caller wrote it
    return {"time": stamp} | {k: v for k, v in event.items() if k != "time"}


def iso_utc(seconds: float) -> str:
    """1700000000.5 -> "2023-11-14T22:13:20.500Z"."""
    text = datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def journal_fields(record: Mapping[str, object]) -> dict[str, str]:
    """Event keys as journal fields: "container_id" -> ENFORCER_CONTAINER_ID.

    Text and numbers as they are, lists and mappings as JSON; None is left out.
    """
    fields: dict[str, str] = {}
    for key, value in record.items():
        if value is None:
            continue
        name = FIELD_PREFIX + re.sub(r"[^A-Z0-9_]", "_", str(key).upper())
        if isinstance(value, str):
            fields[name] = value
        elif isinstance(value, bool | int | float):
            fields[name] = json.dumps(value)
        else:
            fields[name] = json.dumps(value, default=str)
    return fields


def priority(record: Mapping[str, object]) -> int:
    """Syslog priority: warning for a killed exec, notice for the rest (audits)."""
    return syslog.LOG_WARNING if record.get("action") == "kill" else syslog.LOG_NOTICE


def _journal_send() -> Callable[..., None] | None:
    try:
        journal: Any = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    send: Callable[..., None] | None = getattr(journal, "send", None)
    return send


def _open_append(path: Path) -> int:
    """Opens for appending; a file this creates gets FILE_MODE whatever the umask."""
    try:
        fd = _open_fd(path)
    except OSError as e:
        hint = _OPEN_HINTS.get(e.errno or 0, "")
        raise EventLogError(str(path), f"cannot open: {e.strerror or e}{hint}") from e
    return fd


def _open_fd(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    for _attempt in range(3):  # the file may come and go between the two opens
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                continue
        os.fchmod(fd, FILE_MODE)
        return fd
    raise OSError(errno.EAGAIN, "the file keeps being created and removed")


_OPEN_HINTS = {
    errno.ENOENT: "; create its directory first",
    errno.EACCES: "; the daemon may not write there: check the directory's owner and mode",
    errno.EISDIR: "; that is a directory: give a file path",
    errno.EROFS: "; the file system is read-only (with ProtectSystem=strict, use "
    "LogsDirectory= or ReadWritePaths=)",
}
