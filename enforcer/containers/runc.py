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
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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

# The mode runc gives the roots it creates (container state directories get 0711).
_RUNC_ROOT_MODE = 0o700

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
    # The runc root the state was read from (e.g. /run/containerd/runc/k8s.io);
    # None when parsed from text alone.
    root: Path | None = None


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


def read_state(path: Path) -> RuncState:
    """Read and parse one `state.json`, recording the runc root it is in.

    Raises OSError when it cannot be read and ValueError when it is malformed.
    """
    return replace(parse_state(path.read_text()), root=path.parent.parent)


def state_dirs_of(container_id: str, roots: Sequence[Path]) -> list[Path]:
    """Return the state directories named `container_id` in the given roots, in root order.

    Looks at `<root>/<id>` and, for directories of roots, `<root>/*/<id>`,
    with a few stat calls and no reading: cheap enough for every new cgroup.
    A state directory exists from the moment runc starts creating the
    container, before its cgroup and before `state.json` is written.
    """
    if not container_id or container_id in (".", "..") or "/" in container_id:
        return []
    found: list[Path] = []
    for root in roots:
        candidates = [root / container_id, *(ns / container_id for ns in _subdirs(root))]
        found.extend(c for c in candidates if _is_state_dir(c))
    return found


def _is_state_dir(path: Path) -> bool:
    # runc makes a container's state directory 0711 and holding files only;
    # a runc root, such as containerd's /run/containerd/runc/k8s.io, is 0700
    # and holds directories. Both tests are needed to tell an empty root (all
    # of its containers gone) from a state directory whose state.json runc
    # has not written yet.
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and stat.S_IMODE(mode) != _RUNC_ROOT_MODE and not _subdirs(path)


def _subdirs(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


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
            state = read_state(path)
        except (OSError, ValueError) as e:
            log.debug("skipping runc state file %s: %s", path, e)
            continue
        if not is_running(state, proc):
            log.debug("skipping stopped runc container %s (init pid %d gone)", state.id, state.pid)
            continue
        states.setdefault(state.id, state)
    return [states[key] for key in sorted(states)]
