"""Discovering containers, and identifying one by its cgroup, on a fake host.

The host (a cgroup tree, runc roots, /proc and runtime records) is built
under one tmp directory from the fixtures in runtime_records.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from runtime_records import (
    CONTAINERD_ID,
    CONTAINERD_POD_SLICE,
    CONTAINERD_POD_UID,
    CONTAINERD_SANDBOX_ID,
    CONTAINERD_SANDBOX_STATE,
    CONTAINERD_STATE,
    CRIO_ID,
    CRIO_POD,
    CRIO_STATE,
    DOCKER_ID,
    DOCKER_STATE,
    FIXTURES,
    PODMAN_ID,
    PODMAN_STATE,
    PODMAN_STOPPED_ID,
    RUNC_ID,
    RUNC_STATE,
    fake_podman,
)

from enforcer.containers import Container, MetadataSources, discover, identify
from enforcer.containers.runc import RuncState, parse_state


class FakeHost:
    """A cgroup v2 tree, runc roots, /proc and runtime records under one tmp directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cgroups = base / "cgroup"
        self.proc = base / "proc"
        self.runc = base / "run" / "runc"
        self.containerd = base / "run" / "containerd" / "runc"
        self.docker_runc = base / "run" / "docker" / "runtime-runc"
        self.docker_root = base / "var" / "lib" / "docker"
        self.cgroups.mkdir(parents=True)
        self.podman_command, self.podman_calls = fake_podman(
            base / "podman", stdout=(FIXTURES / "podman" / "inspect.json").read_text()
        )

    @property
    def roots(self) -> list[Path]:
        return [self.runc, self.containerd, self.docker_runc]

    @property
    def sources(self) -> MetadataSources:
        return MetadataSources(docker_root=self.docker_root, podman_command=self.podman_command)

    def cgroup(self, rel: str) -> int:
        path = self.cgroups / rel.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        return os.stat(path).st_ino

    def ino(self, rel: str) -> int:
        return os.stat(self.cgroups / rel.lstrip("/")).st_ino

    def add_state(self, fixture: Path, root: Path, cgroup: str) -> RuncState:
        """Copy a runc state fixture into a root, and make its init process and cgroup."""
        state = parse_state(fixture.read_text())
        (root / state.id).mkdir(parents=True)
        shutil.copy(fixture, root / state.id / "state.json")
        self.process(state.pid, state.start_time, cgroup)
        self.cgroup(cgroup)
        return state

    def process(self, pid: int, start_time: int, cgroup: str) -> None:
        directory = self.proc / str(pid)
        (directory / "ns").mkdir(parents=True)
        (directory / "stat").write_text(
            f"{pid} (init) S 1 {pid} {pid} 0 -1 4194560 597 0 0 0 0 1 0 0 20 0 1 0 "
            f"{start_time} 2322432 332 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n"
        )
        (directory / "cgroup").write_text(f"0::{cgroup}\n")
        # Stand-ins for the namespace links: their inode numbers are what is read.
        (directory / "ns" / "pid").write_text("")
        (directory / "ns" / "net").write_text("")

    def namespaces(self, pid: int) -> tuple[int, int]:
        ns = self.proc / str(pid) / "ns"
        return os.stat(ns / "pid").st_ino, os.stat(ns / "net").st_ino

    def add_docker_record(self) -> None:
        source = FIXTURES / "docker" / "containers" / DOCKER_ID
        shutil.copytree(source, self.docker_root / "containers" / DOCKER_ID)

    def identify(self, path: str, pid: int | None = None, **kwargs: float) -> Container | None:
        return identify(
            path,
            pid,
            self.cgroups,
            runc_roots=self.roots,
            proc=self.proc,
            sources=self.sources,
            **kwargs,
        )


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


PODMAN_CGROUP = f"/libpod_parent/libpod-{PODMAN_ID}"
DOCKER_CGROUP = f"/system.slice/docker-{DOCKER_ID}.scope"
CONTAINERD_CGROUP = f"{CONTAINERD_POD_SLICE}/cri-containerd-{CONTAINERD_ID}.scope"
CONTAINERD_SANDBOX_CGROUP = f"{CONTAINERD_POD_SLICE}/cri-containerd-{CONTAINERD_SANDBOX_ID}.scope"
CRIO_CGROUP = f"{CRIO_POD}/crio-{CRIO_ID}"


def test_discover_gives_every_runtimes_metadata(host: FakeHost) -> None:
    host.add_state(PODMAN_STATE, host.runc, PODMAN_CGROUP)
    host.add_state(DOCKER_STATE, host.docker_runc / "moby", DOCKER_CGROUP)
    host.add_docker_record()
    host.add_state(CONTAINERD_STATE, host.containerd / "k8s.io", CONTAINERD_CGROUP)
    host.add_state(CONTAINERD_SANDBOX_STATE, host.containerd / "k8s.io", CONTAINERD_SANDBOX_CGROUP)
    host.add_state(CRIO_STATE, host.runc, CRIO_CGROUP)
    host.add_state(RUNC_STATE, host.runc, f"/{RUNC_ID}")
    host.cgroup(f"{CRIO_CGROUP}/app")
    # The stopped podman container's cgroup is still there, without runc state.
    host.cgroup(f"/libpod_parent/libpod-{PODMAN_STOPPED_ID}")

    found = {
        c.id: c for c in discover(host.cgroups, host.roots, proc=host.proc, sources=host.sources)
    }

    assert found[PODMAN_ID] == Container(
        id=PODMAN_ID,
        runtime="podman",
        name="web",
        image="localhost/enforcer-busybox:test",
        labels={"team": "blue", "app.kubernetes.io/name": "web"},
        cgroup_path=PODMAN_CGROUP,
        cgroup_ids=(host.ino(PODMAN_CGROUP),),
        pid=15479,
        pid_ns=host.namespaces(15479)[0],
        net_ns=host.namespaces(15479)[1],
    )
    stopped = found[PODMAN_STOPPED_ID]
    assert (stopped.runtime, stopped.name, stopped.pid, stopped.pid_ns) == (
        "podman",
        "old-job",
        None,
        None,
    )
    # One podman call, for both of its containers.
    assert host.podman_calls.read_text().splitlines() == [
        f"container inspect {PODMAN_ID} {PODMAN_STOPPED_ID}"
    ]

    assert (found[DOCKER_ID].runtime, found[DOCKER_ID].name, found[DOCKER_ID].image) == (
        "docker",
        "shop-frontend-1",
        "nginx:1.25",
    )
    assert found[DOCKER_ID].labels["team"] == "payments"

    checkout = found[CONTAINERD_ID]
    assert (checkout.runtime, checkout.name, checkout.pid) == ("containerd", "checkout", 31877)
    assert checkout.labels["io.kubernetes.pod.name"] == "checkout-7d9f8b6c5-x2k4p"
    assert checkout.labels["io.kubernetes.pod.namespace"] == "shop"
    assert found[CONTAINERD_SANDBOX_ID].name == "POD"

    ledger = found[CRIO_ID]
    assert (ledger.runtime, ledger.name, ledger.image) == (
        "crio",
        "ledger",
        "quay.io/example/ledger:1.8",
    )
    assert ledger.labels["io.kubernetes.pod.namespace"] == "finance"
    assert ledger.cgroup_ids == (host.ino(CRIO_CGROUP), host.ino(f"{CRIO_CGROUP}/app"))
    assert (ledger.pid_ns, ledger.net_ns) == host.namespaces(45120)

    plain = found[RUNC_ID]
    assert (plain.runtime, plain.name, dict(plain.labels)) == (
        "runc",
        RUNC_ID,
        {"org.example.team": "payments"},
    )
    assert len(found) == 7


# -- identify ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/system.slice/ssh.service",
        "/user.slice/user-1000.slice/session-3.scope",
        f"/libpod_parent/libpod-conmon-{PODMAN_ID}",
        f"{CONTAINERD_POD_SLICE}",
        # containerd's namespace directory is no container, nor is a missing id.
        "/k8s.io",
        "/moby",
        f"/{RUNC_ID}",
    ],
)
def test_identify_rejects_host_cgroups_without_asking_runtimes(host: FakeHost, path: str) -> None:
    host.add_state(CONTAINERD_STATE, host.containerd / "k8s.io", CONTAINERD_CGROUP)
    # A runc root whose containers are all gone: runc made it 0700.
    (host.docker_runc / "moby").mkdir(parents=True, mode=0o700)
    host.cgroup(path)

    assert host.identify(path) is None
    assert not host.podman_calls.exists()


def test_identify_a_podman_container_and_its_sub_cgroups(host: FakeHost) -> None:
    host.add_state(PODMAN_STATE, host.runc, PODMAN_CGROUP)
    sub = host.cgroup(f"{PODMAN_CGROUP}/init.scope")

    found = host.identify(PODMAN_CGROUP)
    from_sub = host.identify(f"{PODMAN_CGROUP}/init.scope", 15479)

    assert found is not None
    assert (found.id, found.runtime, found.name, found.image) == (
        PODMAN_ID,
        "podman",
        "web",
        "localhost/enforcer-busybox:test",
    )
    assert dict(found.labels) == {"team": "blue", "app.kubernetes.io/name": "web"}
    assert found.cgroup_path == PODMAN_CGROUP
    assert found.cgroup_ids == (host.ino(PODMAN_CGROUP), sub)
    assert (found.pid, found.pid_ns, found.net_ns) == (15479, *host.namespaces(15479))
    assert from_sub == found
    assert host.podman_calls.read_text().splitlines() == [f"container inspect {PODMAN_ID}"] * 2


def test_identify_a_plain_runc_container(host: FakeHost) -> None:
    state = host.add_state(RUNC_STATE, host.runc, f"/{RUNC_ID}")
    host.cgroup(f"/{RUNC_ID}/sub")
    host.process(5000, 1, f"/{RUNC_ID}/sub")  # a process run later with `runc exec`

    found = host.identify(f"/{RUNC_ID}")
    by_exec = host.identify(f"/{RUNC_ID}/sub", 5000)

    assert found == Container(
        id=RUNC_ID,
        runtime="runc",
        name=RUNC_ID,
        labels={"org.example.team": "payments"},
        cgroup_path=f"/{RUNC_ID}",
        cgroup_ids=(host.ino(f"/{RUNC_ID}"), host.ino(f"/{RUNC_ID}/sub")),
        pid=state.pid,
        pid_ns=host.namespaces(state.pid)[0],
        net_ns=host.namespaces(state.pid)[1],
    )
    assert by_exec is not None
    assert by_exec.cgroup_path == f"/{RUNC_ID}"
    assert (by_exec.pid, by_exec.pid_ns) == (5000, host.namespaces(5000)[0])
    assert not host.podman_calls.exists()


def test_identify_before_runc_wrote_the_state_gives_what_is_known(host: FakeHost) -> None:
    # runc makes the state directory, then the cgroup, then writes state.json.
    (host.runc / RUNC_ID).mkdir(parents=True)
    host.cgroup(f"/{RUNC_ID}")

    started = time.monotonic()
    found = host.identify(f"/{RUNC_ID}", state_wait_s=0.05)

    assert time.monotonic() - started < 1.0
    assert found == Container(
        id=RUNC_ID,
        runtime="runc",
        name=RUNC_ID,
        cgroup_path=f"/{RUNC_ID}",
        cgroup_ids=(host.ino(f"/{RUNC_ID}"),),
    )


def test_identify_waits_for_runc_to_write_the_state(host: FakeHost) -> None:
    state_dir = host.runc / RUNC_ID
    state_dir.mkdir(parents=True)
    host.cgroup(f"/{RUNC_ID}")
    host.process(3142, 27293, f"/{RUNC_ID}")

    def write_state_later() -> None:
        time.sleep(0.1)
        # runc writes a temporary file and renames it into place.
        shutil.copy(RUNC_STATE, state_dir / "state.json.tmp")
        os.rename(state_dir / "state.json.tmp", state_dir / "state.json")

    writer = threading.Thread(target=write_state_later)
    writer.start()
    try:
        found = host.identify(f"/{RUNC_ID}", state_wait_s=5.0)
    finally:
        writer.join()

    assert found is not None
    assert dict(found.labels) == {"org.example.team": "payments"}
    assert found.pid == 3142


def test_identify_cri_containers(host: FakeHost) -> None:
    host.add_state(CRIO_STATE, host.runc, CRIO_CGROUP)
    host.add_state(CONTAINERD_STATE, host.containerd / "k8s.io", CONTAINERD_CGROUP)
    # The cgroupfs driver: a bare id under the pod, no runtime in the name.
    bare = f"/kubepods/burstable/pod{CONTAINERD_POD_UID}/{CONTAINERD_SANDBOX_ID}"
    host.add_state(CONTAINERD_SANDBOX_STATE, host.containerd / "k8s.io", bare)

    ledger = host.identify(CRIO_CGROUP)
    checkout = host.identify(CONTAINERD_CGROUP)
    sandbox = host.identify(bare)

    assert ledger is not None
    assert (ledger.runtime, ledger.name, ledger.pid) == ("crio", "ledger", 45120)
    assert ledger.labels["io.kubernetes.pod.name"] == "ledger-0"
    assert checkout is not None
    assert (checkout.runtime, checkout.name) == ("containerd", "checkout")
    assert checkout.image == "registry.example.com/shop/checkout:2.4.1"
    assert sandbox is not None
    assert (sandbox.runtime, sandbox.name, sandbox.cgroup_path) == ("containerd", "POD", bare)


def test_identify_a_docker_container(host: FakeHost) -> None:
    host.add_state(DOCKER_STATE, host.docker_runc / "moby", DOCKER_CGROUP)
    host.add_docker_record()

    found = host.identify(DOCKER_CGROUP)

    assert found is not None
    assert (found.runtime, found.name, found.image, found.pid) == (
        "docker",
        "shop-frontend-1",
        "nginx:1.25",
        24712,
    )


def test_identify_a_container_without_runc_state_or_record(host: FakeHost) -> None:
    # crun leaves no runc state; a podman that no longer knows the container
    # leaves the metadata unknown, not an error.
    unknown = "e" * 64
    host.cgroup(f"/libpod_parent/libpod-{unknown}")

    found = host.identify(f"/libpod_parent/libpod-{unknown}")

    assert found == Container(
        id=unknown,
        runtime="podman",
        cgroup_path=f"/libpod_parent/libpod-{unknown}",
        cgroup_ids=(host.ino(f"/libpod_parent/libpod-{unknown}"),),
        metadata_known=False,
    )


def test_identify_a_cgroup_gone_already(host: FakeHost) -> None:
    (host.runc / RUNC_ID).mkdir(parents=True)

    assert host.identify(f"/{RUNC_ID}", state_wait_s=0) is None
    assert host.identify(f"/system.slice/docker-{DOCKER_ID}.scope") is None
