"""Docker's metadata, from the container's config.v2.json."""

from __future__ import annotations

import json
from pathlib import Path

from runtime_records import DOCKER_ID, FIXTURES

from enforcer.containers import docker
from enforcer.containers.model import RuntimeMetadata


def test_docker_config_parses() -> None:
    docker_root = FIXTURES / "docker"

    metadata = docker.read_metadata(DOCKER_ID, docker_root)

    assert metadata == RuntimeMetadata(
        name="shop-frontend-1",  # Docker stores it as "/shop-frontend-1"
        image="nginx:1.25",
        labels={
            "maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>",
            "com.docker.compose.project": "shop",
            "com.docker.compose.service": "frontend",
            "team": "payments",
        },
        pid=24712,
    )


def test_stopped_docker_container_has_no_pid() -> None:
    config = json.loads(
        (FIXTURES / "docker" / "containers" / DOCKER_ID / "config.v2.json").read_text()
    )
    config["State"].update(Running=False, Pid=0)
    config["Config"]["Labels"] = None

    metadata = docker.parse_config(json.dumps(config))

    assert metadata.pid is None
    assert dict(metadata.labels) == {}


def test_missing_or_broken_docker_record_is_unknown(tmp_path: Path) -> None:
    assert docker.read_metadata(DOCKER_ID, tmp_path) is None
    broken = tmp_path / "containers" / DOCKER_ID / "config.v2.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"Name": "/half-written"')
    assert docker.read_metadata(DOCKER_ID, tmp_path) is None
