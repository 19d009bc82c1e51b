"""Which runtime a container belongs to, from its cgroup and its runc state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from runtime_records import CONTAINERD_STATE, CRIO_STATE, PODMAN_STATE, RUNC_STATE, annotations_of

from enforcer.containers.metadata import runtime_of
from enforcer.containers.runc import RuncState, parse_state


def state_with(labels: Mapping[str, str], root: Path | None = None) -> RuncState:
    return RuncState(
        id="x",
        pid=1,
        bundle="/b",
        labels=labels,
        created=parse_state(RUNC_STATE.read_text()).created,
        start_time=1,
        root=root,
    )


@pytest.mark.parametrize(
    ("cgroup_runtime", "state", "expected"),
    [
        # podman's annotations include io.kubernetes.cri-o.* keys: still podman.
        (None, state_with(annotations_of(PODMAN_STATE)), "podman"),
        ("podman", state_with(annotations_of(PODMAN_STATE)), "podman"),
        # Kubernetes' cgroupfs driver names no runtime; the annotations do.
        ("kubernetes", state_with(annotations_of(CONTAINERD_STATE)), "containerd"),
        ("kubernetes", state_with(annotations_of(CRIO_STATE)), "crio"),
        (None, state_with({}, root=Path("/run/docker/runtime-runc/moby")), "docker"),
        ("docker", state_with({}), "docker"),
        (None, state_with({"org.example.team": "payments"}), "runc"),
        ("kubernetes", None, "kubernetes"),
    ],
)
def test_runtime_of(cgroup_runtime: str | None, state: RuncState | None, expected: str) -> None:
    assert runtime_of(cgroup_runtime, state) == expected
