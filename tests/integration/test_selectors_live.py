"""Every selector kind against real podman and runc containers.

Each policy kills its own test-made program (a copy of tests/helpers/marker.c,
which creates the file it is given as the first thing it does), so the
policies cannot disturb each other or anything else on the machine.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, start_daemon
from podman_helpers import (
    PodmanContainer,
    podman_container,
    podman_image,
    run_foreground,
)
from runc_helpers import RuncContainer, runc_container

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.runc]

KILLED = 137
TAG = secrets.token_hex(3)
PROGRAMS = ("by-id", "by-short-id", "by-name", "by-image", "by-label", "by-netns", "all", "host")
PROGRAMS += ("dup",)


def program(kind: str) -> str:
    return f"t-{kind}-{TAG}"


def policy(name: str, selector: str, kind: str) -> str:
    return f"""\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: {name}
spec:
  selector:
{selector}
  rules:
    - name: kill-{kind}
      match:
        names: [{program(kind)}]
---
"""


@dataclass
class Scene:
    daemon: RunningDaemon
    image: str
    chosen: PodmanContainer  # name, image, label and netns all select it
    other: PodmanContainer  # another image, name, no label, own netns
    runc: RuncContainer
    netns: str
    host_bin: Path


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"enforcer-test-{TAG}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture(scope="module")
def scene(
    tmp_path_factory: pytest.TempPathFactory, marker_binary: Path, netns: str
) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("selectors")
    files = {f"/usr/local/bin/{program(kind)}": marker_binary for kind in PROGRAMS}
    host_bin = work / "bin"
    host_bin.mkdir()
    shutil.copy2(marker_binary, host_bin / program("host"))
    with (
        podman_image(work, files=files) as image,
        podman_image(work, files=files) as other_image,
        podman_container(
            image,
            name=f"enforcer-sel-{TAG}",
            labels={"enforcer-test": TAG},
            options=["--network", f"ns:/run/netns/{netns}"],
        ) as chosen,
        podman_container(other_image, name=f"enforcer-other-{TAG}") as other,
        runc_container(work) as runc,
    ):
        bin_dir = runc.bundle / "rootfs" / "usr" / "local" / "bin"
        bin_dir.mkdir(parents=True)
        for kind in PROGRAMS:
            shutil.copy2(marker_binary, bin_dir / program(kind))
        policies = work / "policies"
        policies.mkdir()
        by_label = f"    containers:\n      labels: {{enforcer-test: '{TAG}'}}"
        chosen_name = f"    containers:\n      names: ['enforcer-sel-{TAG}']"
        policies_yaml = [
            ("by-id", f"    containers:\n      ids: [{runc.id}]", "by-id"),
            ("by-short-id", f"    containers:\n      ids: ['{runc.id[:12]}']", "by-short-id"),
            ("by-name", "    containers:\n      names: ['enforcer-sel-*']", "by-name"),
            ("by-image", f"    containers:\n      images: ['{image}']", "by-image"),
            ("by-label", by_label, "by-label"),
            ("by-netns", f"    namespaces:\n      net: [{netns}]", "by-netns"),
            ("all", "    allContainers: true", "all"),
            ("host", "    host: true", "host"),
            ("dup-a", by_label, "dup"),
            ("dup-b", chosen_name, "dup"),
        ]
        (policies / "selectors.yaml").write_text("".join(policy(*p) for p in policies_yaml))
        daemon = start_daemon(policies, work)
        try:
            yield Scene(daemon, image, chosen, other, runc, netns, host_bin)
        finally:
            daemon.stop()


def runs_in(container: PodmanContainer | RuncContainer, kind: str) -> int:
    return container.exec([f"/usr/local/bin/{program(kind)}", "/dev/shm/ran"]).returncode


def blocked(daemon: RunningDaemon, policy_name: str) -> int:
    stats: dict[str, Any] = daemon.ask("stats")
    return next(p["blocked"] for p in stats["policies"] if p["name"] == policy_name)


@pytest.mark.parametrize("kind", ["by-name", "by-image", "by-label", "by-netns", "all"])
def test_selector_kills_in_the_chosen_podman_container(scene: Scene, kind: str) -> None:
    assert runs_in(scene.chosen, kind) == KILLED
    expected_elsewhere = KILLED if kind == "all" else 0
    assert runs_in(scene.other, kind) == expected_elsewhere
    assert blocked(scene.daemon, kind) >= 1


@pytest.mark.parametrize("kind", ["by-id", "by-short-id"])
def test_id_and_short_id_select_the_runc_container(scene: Scene, kind: str) -> None:
    assert runs_in(scene.runc, kind) == KILLED
    assert runs_in(scene.chosen, kind) == 0


def test_host_policy_reaches_host_processes_only(scene: Scene, tmp_path: Path) -> None:
    host_program = scene.host_bin / program("host")
    on_host = subprocess.run([str(host_program), str(tmp_path / "ran")], check=False)
    assert on_host.returncode == -9
    assert not (tmp_path / "ran").exists()
    assert runs_in(scene.chosen, "host") == 0
    assert runs_in(scene.runc, "host") == 0


def test_two_policies_on_one_container_are_counted_separately(scene: Scene) -> None:
    before = (blocked(scene.daemon, "dup-a"), blocked(scene.daemon, "dup-b"))
    assert runs_in(scene.chosen, "dup") == KILLED
    assert (blocked(scene.daemon, "dup-a"), blocked(scene.daemon, "dup-b")) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_containers_lists_what_the_daemon_sees(scene: Scene) -> None:
    listed = {c["id"]: c for c in scene.daemon.ask("containers")["containers"]}
    chosen = listed[scene.chosen.id]
    assert (chosen["name"], chosen["image"], chosen["runtime"]) == (
        scene.chosen.name,
        scene.image,
        "podman",
    )
    assert chosen["labels"]["enforcer-test"] == TAG
    assert set(chosen["policies"]) == {"by-name", "by-image", "by-label", "by-netns", "all"} | {
        "dup-a",
        "dup-b",
    }
    assert set(listed[scene.runc.id]["policies"]) == {"by-id", "by-short-id", "all"}
    assert listed[scene.other.id]["policies"] == ["all"]


@pytest.mark.parametrize("kind", ["by-name", "by-image", "by-label", "by-netns", "all"])
def test_entrypoint_of_a_new_container_is_killed_for_every_selector(
    scene: Scene, kind: str, netns: str
) -> None:
    result = run_foreground(
        scene.image,
        [f"/usr/local/bin/{program(kind)}", "/dev/shm/ran"],
        name=f"enforcer-sel-{TAG}-{secrets.token_hex(2)}",
        labels={"enforcer-test": TAG},
        options=["--network", f"ns:/run/netns/{netns}"],
    )
    assert result.returncode == KILLED, result.stderr
