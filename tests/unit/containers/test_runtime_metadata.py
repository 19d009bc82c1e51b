"""Each runtime's metadata (name, image, labels), and identifying one container by its cgroup.

Fixtures under tests/fixtures/<runtime>/ are modelled on what each runtime
writes: podman 4.3's `podman container inspect` output (as printed here),
Docker's config.v2.json, and runc state files holding the OCI annotations of
podman, containerd's CRI plugin and CRI-O, all trimmed to what matters.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from enforcer.containers import (
    Container,
    MetadataSources,
    containerd,
    crio,
    discover,
    docker,
    identify,
    podman,
)
from enforcer.containers.metadata import runtime_of
from enforcer.containers.model import RuntimeMetadata
from enforcer.containers.runc import RuncState, parse_state

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

PODMAN_ID = "89b8ce40ec1bfebf8f64cf584fa52efa64a60cf561bee5ff9fdd69a70dcbb6d4"
PODMAN_STOPPED_ID = "cde6bab22a6783359bfc870cf2895108a1ae3bd7cda14722b53b7d0831eea3af"
DOCKER_ID = "9b57fb1bbd3c2cf6ee97625a84eabcdcdd5b4cb5746adfa54e1cc64b173a3c5f"
CONTAINERD_ID = "f87a679dcbfa5ccf363b3d989cd3df1e32ec6f7144f5f775abd57b2803d1d5b0"
CONTAINERD_SANDBOX_ID = "99b091c06e386ce7862c92efbc48d3ad77fb46f808280dd7dad215575bd1037b"
CRIO_ID = "8d505e641b55fc5552f5f0ad1a57f472656278f4800d24723347ca4c3b2048c4"
CRIO_SANDBOX_ID = "06a0c53b5dd39ab0a536e135f628a68fa00a6d9c4e80e759476cb752a830be17"
RUNC_ID = "397a255943b5e82a9aea1106aa36ef1c99867e676973ca0423a6326ac9a37e2b"

CONTAINERD_POD_UID = "e2464e8a-850b-4fa3-9f68-ee0b7e5e8dd8"
CONTAINERD_POD_SLICE = (
    "/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod{CONTAINERD_POD_UID.replace('-', '_')}.slice"
)
CRIO_POD_UID = "a8e56242-a93a-4b13-a631-d43682704e20"
CRIO_POD = f"/kubepods/besteffort/pod{CRIO_POD_UID}"

PODMAN_STATE = FIXTURES / "podman" / "runc" / PODMAN_ID / "state.json"
DOCKER_STATE = FIXTURES / "docker" / "runtime-runc" / "moby" / DOCKER_ID / "state.json"
CONTAINERD_STATE = FIXTURES / "containerd" / "runc" / "k8s.io" / CONTAINERD_ID / "state.json"
CONTAINERD_SANDBOX_STATE = (
    FIXTURES / "containerd" / "runc" / "k8s.io" / CONTAINERD_SANDBOX_ID / "state.json"
)
CRIO_STATE = FIXTURES / "crio" / "runc" / CRIO_ID / "state.json"
CRIO_SANDBOX_STATE = FIXTURES / "crio" / "runc" / CRIO_SANDBOX_ID / "state.json"
RUNC_STATE = FIXTURES / "runc" / "state.json"


def annotations_of(state_file: Path) -> Mapping[str, str]:
    return parse_state(state_file.read_text()).labels


# -- podman -----------------------------------------------------------------


def test_podman_inspect_output_parses() -> None:
    found = podman.parse_inspect((FIXTURES / "podman" / "inspect.json").read_text())

    assert found[PODMAN_ID] == RuntimeMetadata(
        name="web",
        image="localhost/enforcer-busybox:test",
        labels={"team": "blue", "app.kubernetes.io/name": "web"},
        pid=15479,
    )
    # Labels printed as null, and an exited container's pid 0, mean none.
    assert found[PODMAN_STOPPED_ID] == RuntimeMetadata(
        name="old-job", image="localhost/enforcer-busybox:test"
    )


@pytest.mark.parametrize("text", ["", "{oops", "{}", '[{"Name": "no id"}]', "[42]"])
def test_malformed_podman_output_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        podman.parse_inspect(text)


def fake_podman(
    directory: Path, stdout: str = "", exit_status: int = 0, stderr: str = "", sleep: int = 0
) -> tuple[tuple[str, ...], Path]:
    """A `podman` stand-in that records its arguments and prints what it is given.

    Returns the command to run it and the file its calls are logged in, one line each.
    """
    directory.mkdir(parents=True, exist_ok=True)
    calls, out, err = directory / "calls", directory / "stdout", directory / "stderr"
    out.write_text(stdout)
    err.write_text(stderr)
    script = directory / "podman"
    # A slow podman is only slow: exec so that the timeout's kill reaches the sleep.
    answer = f"exec sleep {sleep}\n" if sleep else f"cat {out}\ncat {err} >&2\nexit {exit_status}\n"
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n{answer}')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return (str(script),), calls


def test_podman_is_asked_once_for_many_containers(tmp_path: Path) -> None:
    unknown = "f" * 64
    command, calls = fake_podman(
        tmp_path,
        stdout=(FIXTURES / "podman" / "inspect.json").read_text(),
        # What podman 4.3 does when one of the ids is not its container.
        exit_status=125,
        stderr=f"Error: inspecting object: no such container {unknown}\n",
    )

    found = podman.inspect([PODMAN_ID, PODMAN_STOPPED_ID, unknown, PODMAN_ID], command)

    assert set(found) == {PODMAN_ID, PODMAN_STOPPED_ID}
    assert calls.read_text().splitlines() == [
        f"container inspect {PODMAN_ID} {PODMAN_STOPPED_ID} {unknown}"
    ]


def test_no_ids_asks_podman_nothing(tmp_path: Path) -> None:
    command, calls = fake_podman(tmp_path)
    assert podman.inspect([], command) == {}
    assert not calls.exists()


@pytest.mark.parametrize(
    ("behaviour", "logged"),
    [
        # Every id unknown: podman prints "[]" (or nothing) and exits 125.
        ({"stdout": "", "exit_status": 125}, "does not know"),
        ({"stdout": "[]\n", "exit_status": 125}, "does not know"),
        ({"stdout": "Error: database is locked\n", "exit_status": 125}, "not its JSON"),
        ({"stdout": "[]", "sleep": 5}, "did not answer"),
    ],
)
def test_podman_failures_leave_metadata_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, behaviour: dict[str, Any], logged: str
) -> None:
    command, _ = fake_podman(tmp_path, **behaviour)
    caplog.set_level(logging.INFO, logger="enforcer.containers.podman")

    assert podman.inspect([PODMAN_ID], command, timeout=0.5) == {}
    assert logged in caplog.text


def test_missing_podman_leaves_metadata_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert podman.inspect([PODMAN_ID], (str(tmp_path / "no-podman"),)) == {}
    assert "not installed" in caplog.text


# -- docker -----------------------------------------------------------------


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


# -- containerd (CRI) -------------------------------------------------------


def test_containerd_container_metadata_from_annotations() -> None:
    annotations = annotations_of(CONTAINERD_STATE)

    assert containerd.is_cri_container(annotations)
    assert containerd.metadata_from_annotations(annotations) == RuntimeMetadata(
        name="checkout",
        image="registry.example.com/shop/checkout:2.4.1",
        labels={
            "io.kubernetes.pod.name": "checkout-7d9f8b6c5-x2k4p",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": CONTAINERD_POD_UID,
            "io.kubernetes.container.name": "checkout",
        },
    )


def test_containerd_sandbox_is_the_pods_pause_container() -> None:
    metadata = containerd.metadata_from_annotations(annotations_of(CONTAINERD_SANDBOX_STATE))

    assert metadata.name == "POD"
    assert metadata.image == "registry.k8s.io/pause:3.9"
    assert metadata.labels["io.kubernetes.pod.name"] == "checkout-7d9f8b6c5-x2k4p"
    assert metadata.labels["io.kubernetes.pod.namespace"] == "shop"


# -- CRI-O ------------------------------------------------------------------


def test_crio_container_metadata_from_annotations() -> None:
    annotations = annotations_of(CRIO_STATE)

    assert crio.is_crio_container(annotations)
    assert crio.metadata_from_annotations(annotations) == RuntimeMetadata(
        name="ledger",
        image="quay.io/example/ledger:1.8",
        labels={
            "app": "ledger",
            "controller-revision-hash": "ledger-6b8f7d9c4",
            "io.kubernetes.container.name": "ledger",
            "io.kubernetes.pod.name": "ledger-0",
            "io.kubernetes.pod.namespace": "finance",
            "io.kubernetes.pod.uid": CRIO_POD_UID,
            "statefulset.kubernetes.io/pod-name": "ledger-0",
        },
    )


def test_crio_sandbox_is_the_pods_pause_container() -> None:
    metadata = crio.metadata_from_annotations(annotations_of(CRIO_SANDBOX_STATE))

    assert metadata.name == "POD"
    assert metadata.image == "registry.k8s.io/pause:3.9"
    assert metadata.labels["io.kubernetes.pod.name"] == "ledger-0"
    assert metadata.labels["io.kubernetes.pod.namespace"] == "finance"


def test_crio_metadata_without_kubelet_labels() -> None:
    # What crictl makes: no kubelet labels, so the pod comes from CRI-O's own
    # annotations and the container name from its CRI metadata.
    sandbox = {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.KubeName": "podsandbox1",
        "io.kubernetes.cri-o.Namespace": "redhat.test.crio",
        "io.kubernetes.cri-o.Labels": '{"group":"test"}',
        "io.kubernetes.cri-o.ImageName": "registry.k8s.io/pause:3.6",
    }
    container = {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.Labels": "not json",
        "io.kubernetes.cri-o.Metadata": '{"name":"podsandbox1-redis"}',
        "io.kubernetes.cri-o.Image": "quay.io/crio/redis:alpine",
    }

    assert crio.metadata_from_annotations(sandbox) == RuntimeMetadata(
        name="POD",
        image="registry.k8s.io/pause:3.6",
        labels={
            "group": "test",
            "io.kubernetes.pod.name": "podsandbox1",
            "io.kubernetes.pod.namespace": "redhat.test.crio",
        },
    )
    assert crio.metadata_from_annotations(container) == RuntimeMetadata(
        name="podsandbox1-redis", image="quay.io/crio/redis:alpine"
    )


# -- which runtime ----------------------------------------------------------


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


# -- a fake host: cgroup tree, runc roots, /proc, runtimes' records ---------


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
