"""Ask podman for its containers' names, images and labels.

podman keeps them in its own database, not in the runc state (whose
annotations are podman's internal ones), so enforcer asks podman's API:
`podman container inspect ID...`, many ids in one call. The answer is a JSON
array of the containers podman knows; ids it does not know are reported on
stderr, and make the exit status 125, but the others are still printed.

Any failure (podman missing, slow or printing nonsense) leaves the metadata
unknown and is logged: the containers are still enforced on by cgroup id.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from enforcer.containers.model import RuntimeMetadata

log = logging.getLogger(__name__)

PODMAN_COMMAND: tuple[str, ...] = ("podman",)
# podman takes each container's lock to inspect it, and `podman run` holds
# that lock while it starts the container: allow for that, not for a hang.
PODMAN_TIMEOUT_S = 10.0


def parse_inspect(text: str) -> dict[str, RuntimeMetadata]:
    """Parse the JSON `podman container inspect` prints, to metadata by full container id.

    Fields used: `Id`, `Name`, `ImageName` (what the container was created
    from, e.g. `localhost/enforcer-busybox:test`), `Config.Labels` and
    `State.Pid` (0 when the container is not running). Raises ValueError
    (json.JSONDecodeError included) when the text is not such an array.
    """
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError("podman container inspect prints a JSON array")
    found: dict[str, RuntimeMetadata] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("Id"), str):
            raise ValueError(f"not a container in podman inspect output: {str(entry)[:80]!r}")
        found[entry["Id"]] = _metadata(entry)
    return found


def _metadata(entry: Mapping[str, Any]) -> RuntimeMetadata:
    config = entry.get("Config") or {}
    state = entry.get("State") or {}
    pid = state.get("Pid") if isinstance(state, dict) else None
    return RuntimeMetadata(
        name=_text(entry.get("Name")),
        image=_text(entry.get("ImageName")),
        labels=_labels(config.get("Labels") if isinstance(config, dict) else None),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _labels(value: object) -> dict[str, str]:
    # podman prints `null` for a container without labels.
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def inspect(
    container_ids: Sequence[str],
    command: Sequence[str] = PODMAN_COMMAND,
    timeout: float = PODMAN_TIMEOUT_S,
) -> dict[str, RuntimeMetadata]:
    """Return podman's metadata for those of `container_ids` it knows, by full id.

    One `podman container inspect` call for all of them. Never raises: on any
    failure the answer is what could be read, possibly nothing, and the
    failure is logged.
    """
    ids = list(dict.fromkeys(container_ids))
    if not ids:
        return {}
    result = _run_inspect(ids, command, timeout)
    return _read_inspect(ids, result) if result is not None else {}


def _run_inspect(
    ids: list[str], command: Sequence[str], timeout: float
) -> subprocess.CompletedProcess[str] | None:
    """podman's answer about `ids`, or None (logged) when podman could not be asked."""
    try:
        return subprocess.run(
            [*command, "container", "inspect", *ids],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        log.warning(
            "cannot ask podman about containers %s: %r is not installed; "
            "their names, images and labels stay unknown",
            _short(ids),
            command[0],
        )
    except subprocess.TimeoutExpired:
        log.warning(
            "podman container inspect did not answer within %.0f s for %s; "
            "their names, images and labels stay unknown",
            timeout,
            _short(ids),
        )
    except OSError as e:
        log.warning("cannot run %r: %s; podman metadata stays unknown", command[0], e)
    return None


def _read_inspect(
    ids: list[str], result: subprocess.CompletedProcess[str]
) -> dict[str, RuntimeMetadata]:
    """The metadata podman printed; what it could not say about is logged."""
    try:
        found = parse_inspect(result.stdout) if result.stdout.strip() else {}
    except ValueError as e:
        log.warning(
            "podman container inspect printed what is not its JSON (%s; exit status %d: %s); "
            "podman metadata stays unknown",
            e,
            result.returncode,
            result.stderr.strip()[:200],
        )
        return {}
    missing = [i for i in ids if i not in found]
    if missing:
        # Exit status 125 with "no such container": stopped and removed since
        # we saw its cgroup, or a container of another podman (rootless, or
        # another --root).
        log.info(
            "podman does not know containers %s (exit status %d: %s); "
            "their names, images and labels stay unknown",
            _short(missing),
            result.returncode,
            result.stderr.strip()[:200],
        )
    return found


def _short(ids: Sequence[str]) -> str:
    return ", ".join(i[:12] for i in ids)
