"""Read the containers runc is running from runc's own state files.

runc keeps `<root>/<id>/state.json` for each container it created. Reading
those files, rather than running `runc list`, costs no fork and works with
every runc root at once: plain runc and podman use /run/runc, containerd
keeps one root per namespace under /run/containerd/runc/<namespace>/, and
Docker's is /run/docker/runtime-runc/moby/.

A state file outlives its container when runc is not asked to delete it, so a
container counts as running only while its init process is alive and has the
start time recorded in the file (a new process may have reused the pid).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"

# A root here is either a runc root (its subdirectories are containers) or a
# directory of runc roots (containerd's and Docker's, one per namespace).
DEFAULT_RUNC_ROOTS: tuple[Path, ...] = (
    Path("/run/runc"),
    Path("/run/containerd/runc"),
    Path("/run/docker/runtime-runc"),
)

# runc adds the bundle directory to the OCI annotations it keeps as labels.
_BUNDLE_LABEL = "bundle"

# In /proc/<pid>/stat, the start time is field 22; counted from the field
# after the command name's closing parenthesis (field 3), it is index 19.
_STAT_STARTTIME_INDEX = 22 - 3


@dataclass(frozen=True)
class RuncState:
    """What enforcer takes from one runc state.json."""

    id: str
    pid: int
    bundle: str
    labels: Mapping[str, str] = field(hash=False)  # the OCI annotations, bundle removed
    created: datetime
    # Clock ticks since boot, as in /proc/<pid>/stat; tells the init process
    # from a later process that got the same pid.
    start_time: int


def parse_state(text: str) -> RuncState:
    """Parse the text of a runc state.json.

    Raises ValueError (json.JSONDecodeError included) when the text is not a
    state file of the format runc 1.x writes.
    """
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("a runc state file holds a JSON object")
    config = _require(raw, "config", dict)
    bundle, labels = parse_labels(_require(config, "labels", list))
    return RuncState(
        id=_require(raw, "id", str),
        pid=_require(raw, "init_process_pid", int),
        bundle=bundle,
        labels=MappingProxyType(labels),
        created=parse_created(_require(raw, "created", str)),
        start_time=_require(raw, "init_process_start", int),
    )


def _require(obj: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {key!r} is missing or not a {kind.__name__}")
    return value


def parse_labels(entries: Sequence[object]) -> tuple[str, dict[str, str]]:
    """Split runc's `"key=value"` labels into (bundle directory, the other labels).

    Values may contain "=" themselves; only the first one separates.
    """
    labels: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"label {entry!r} is not a string")
        key, sep, value = entry.partition("=")
        if not sep:
            raise ValueError(f"label {entry!r} is not of the form key=value")
        labels[key] = value
    bundle = labels.pop(_BUNDLE_LABEL, "")
    return bundle, labels


def parse_created(text: str) -> datetime:
    """Parse runc's RFC 3339 creation time, which has nanoseconds, to an aware datetime."""
    # datetime keeps microseconds; older Pythons also reject more than six
    # fractional digits, so cut them off first.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(trimmed.replace("Z", "+00:00"))


def parse_proc_stat_start_time(text: str) -> int:
    """Return the start time (field 22, clock ticks since boot) from /proc/<pid>/stat text."""
    # The command name (field 2) is in parentheses and may itself contain
    # spaces and parentheses, so split only after the last ")".
    rest = text[text.rindex(")") + 1 :].split()
    return int(rest[_STAT_STARTTIME_INDEX])


def is_running(state: RuncState, proc: Path = Path("/proc")) -> bool:
    """Tell whether the container's init process is still the one runc started."""
    try:
        stat = (proc / str(state.pid) / "stat").read_text()
        return parse_proc_stat_start_time(stat) == state.start_time
    except (OSError, ValueError, IndexError):
        return False


def state_files(roots: Sequence[Path]) -> list[Path]:
    """Return every `state.json` in the given runc roots or directories of roots."""
    found: list[Path] = []
    for root in roots:
        for pattern in (f"*/{STATE_FILE}", f"*/*/{STATE_FILE}"):
            found.extend(sorted(root.glob(pattern)))
    return found


def read_runc_states(
    roots: Sequence[Path] = DEFAULT_RUNC_ROOTS, proc: Path = Path("/proc")
) -> list[RuncState]:
    """Return the running runc containers recorded under `roots`, by id, each once.

    Missing roots, unreadable or malformed state files and stopped containers
    are skipped (logged at debug level): a container may be created or removed
    while we read.
    """
    states: dict[str, RuncState] = {}
    for path in state_files(roots):
        try:
            state = parse_state(path.read_text())
        except (OSError, ValueError) as e:
            log.debug("skipping runc state file %s: %s", path, e)
            continue
        if not is_running(state, proc):
            log.debug("skipping stopped runc container %s (init pid %d gone)", state.id, state.pid)
            continue
        states.setdefault(state.id, state)
    return [states[key] for key in sorted(states)]
