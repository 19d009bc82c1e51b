"""Discovering and identifying real podman containers: name, image, labels, cgroups, namespaces."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from podman_helpers import (
    podman_container,
    podman_image,
    run_foreground,
)

from enforcer.containers import (
    Container,
    cgroup_v2_path_of_pid,
    discover,
    find_cgroup2_mount,
    identify,
    resolve_container,
)

pytestmark = [pytest.mark.root, pytest.mark.podman]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with podman_image(tmp_path_factory.mktemp("podman-image")) as name:
        yield name


def cgroup_dirs(root: Path, rel: str) -> set[int]:
    top = root / rel.lstrip("/")
    return {os.stat(dirpath).st_ino for dirpath, _, _ in os.walk(top)}


def assert_is_the_container(found: Container, *, pid: int, name: str, image: str) -> None:
    root = find_cgroup2_mount()
    rel = cgroup_v2_path_of_pid(pid)
    assert found.runtime == "podman"
    assert found.name == name
    assert found.image == image
    assert dict(found.labels) == {"team": "blue"}
    assert found.cgroup_path == rel
    assert rel.endswith(f"/libpod-{found.id}")
    assert found.cgroup_ids[0] == os.stat(root / rel.lstrip("/")).st_ino
    assert set(found.cgroup_ids) == cgroup_dirs(root, rel)
    assert found.pid == pid
    assert found.pid_ns == os.stat(f"/proc/{pid}/ns/pid").st_ino
    assert found.net_ns == os.stat(f"/proc/{pid}/ns/net").st_ino
    # Its own namespaces, not the host's.
    assert found.pid_ns != os.stat("/proc/self/ns/pid").st_ino
    assert found.net_ns != os.stat("/proc/self/ns/net").st_ino


def test_discover_gives_a_podman_containers_metadata(image: str) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    with podman_container(image, name=name, labels={"team": "blue"}) as container:
        assert container.pid is not None

        found = resolve_container(container.id, discover())

        assert_is_the_container(found, pid=container.pid, name=name, image=image)
        assert resolve_container(name, discover()) == found

        container.remove()
        assert container.id not in {c.id for c in discover()}


def test_identify_a_podman_container_by_its_cgroup(image: str) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    with podman_container(image, name=name, labels={"team": "blue"}) as container:
        assert container.pid is not None
        rel = cgroup_v2_path_of_pid(container.pid)

        by_cgroup = identify(rel, None)
        by_process = identify(rel, container.pid)

        assert by_cgroup is not None
        assert by_cgroup.id == container.id
        assert_is_the_container(by_cgroup, pid=container.pid, name=name, image=image)
        assert by_process == by_cgroup
        assert by_cgroup == resolve_container(container.id, discover())


def test_identify_a_podman_container_as_its_cgroup_appears(image: str) -> None:
    # What the daemon does on a new cgroup: podman is still starting the
    # container (and holds its lock), runc has not written its state yet.
    parent = find_cgroup2_mount() / "libpod_parent"
    before = set(os.listdir(parent)) if parent.exists() else set()
    seen: dict[str, Container | None] = {}

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            new = set(os.listdir(parent)) - before if parent.exists() else set()
            for entry in new:
                if "conmon" not in entry:
                    seen[entry] = identify(f"/libpod_parent/{entry}", None)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        name = f"enforcer-test-{secrets.token_hex(4)}"
        with podman_container(image, name=name, labels={"team": "blue"}) as container:
            watcher.join()
            assert list(seen) == [f"libpod-{container.id}"]
            found = seen[f"libpod-{container.id}"]
            assert found is not None
            assert container.pid is not None
            assert_is_the_container(found, pid=container.pid, name=name, image=image)
    finally:
        seen.setdefault("stop", None)
        watcher.join()


def test_identify_tells_host_cgroups_without_a_subprocess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = cgroup_v2_path_of_pid(os.getpid())

    def no_subprocess(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"identify() ran {args} for a host cgroup")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    started = time.monotonic()

    answers = [identify(own, os.getpid()), identify("/", None), identify("/init.scope", None)]

    assert answers == [None, None, None]
    assert time.monotonic() - started < 0.5


def test_a_one_shot_container_runs_to_its_end(image: str) -> None:
    result = run_foreground(image, ["/bin/sh", "-c", "echo hello; exit 3"])

    assert (result.returncode, result.stdout) == (3, "hello\n")


def test_an_attached_container_reports_its_exit(image: str) -> None:
    with podman_container(image, args=["/bin/sleep", "3600"], detach=False) as container:
        assert container.process is not None
        assert container.pid is not None
        os.kill(container.pid, 9)
        assert container.process.wait(timeout=30) == 137
