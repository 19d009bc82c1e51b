"""Read Docker's own record of a container: name, image and labels.

dockerd writes each container's configuration to
`<data root>/containers/<id>/config.v2.json` (data root /var/lib/docker by
default) and keeps it current; reading it needs no Docker API call. The
fields used:

- `Name`: the container's name with a leading "/" (`/web`);
- `Config.Image`: the image as the user gave it (`nginx:1.25`);
- `Config.Labels`: the container's labels, image labels included;
- `State.Pid`: the init process on the host while `State.Running`.

Docker's runc state lives under /run/docker/runtime-runc/moby/<id>/, which
`enforcer.containers.runc` already reads for the pid; its annotations carry
none of the above.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from enforcer.containers.model import RuntimeMetadata

log = logging.getLogger(__name__)

DOCKER_ROOT = Path("/var/lib/docker")
CONFIG_FILE = "config.v2.json"


def parse_config(text: str) -> RuntimeMetadata:
    """Parse the text of a Docker `config.v2.json`.

    Raises ValueError (json.JSONDecodeError included) when it is not a JSON
    object with a `Config` object.
    """
    raw = json.loads(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("Config"), dict):
        raise ValueError("a Docker config.v2.json holds an object with a 'Config' object")
    config: dict[str, Any] = raw["Config"]
    name = raw.get("Name")
    image = config.get("Image")
    labels = config.get("Labels")
    return RuntimeMetadata(
        name=name.removeprefix("/") if isinstance(name, str) else "",
        image=image if isinstance(image, str) else "",
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        pid=_running_pid(raw.get("State")),
    )


def _running_pid(state: object) -> int | None:
    if not isinstance(state, dict) or state.get("Running") is not True:
        return None
    pid = state.get("Pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def read_metadata(container_id: str, docker_root: Path = DOCKER_ROOT) -> RuntimeMetadata | None:
    """Return Docker's metadata for a container, or None when it cannot be read (logged)."""
    path = docker_root / "containers" / container_id / CONFIG_FILE
    try:
        return parse_config(path.read_text())
    except FileNotFoundError:
        log.info(
            "no Docker record %s for container %s; its name, image and labels stay unknown",
            path,
            container_id[:12],
        )
    except (OSError, ValueError) as e:
        log.warning(
            "cannot read Docker record %s: %s; the container's name, image and labels stay unknown",
            path,
            e,
        )
    return None
