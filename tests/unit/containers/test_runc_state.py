"""Reading runc state files, building the inventory from them, and resolving a container."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enforcer.containers import (
    AmbiguousContainerError,
    Container,
    NoSuchContainerError,
    discover,
    parse_state,
    read_runc_states,
    resolve_container,
)
from enforcer.containers.runc import parse_labels, parse_proc_stat_start_time
from enforcer.errors import ContainerLookupError

# A state.json written by runc 1.1.5 on Debian 12, trimmed to the fields that
# matter (config.labels also has an OCI annotation added for the test).
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "runc" / "state.json"
FIXTURE_ID = "397a255943b5e82a9aea1106aa36ef1c99867e676973ca0423a6326ac9a37e2b"
FIXTURE_PID = 3142
FIXTURE_START = 27293


def proc_stat(pid: int, start_time: int, comm: str = "sleep") -> str:
    """A /proc/<pid>/stat line as the kernel writes it, start time in field 22."""
    return (
        f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 597 0 0 0 0 1 0 0 20 0 1 0 "
        f"{start_time} 2322432 332 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n"
    )


def fake_process(proc: Path, pid: int, start_time: int, cgroup: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(proc_stat(pid, start_time))
    (proc / str(pid) / "cgroup").write_text(f"4:memory:/elsewhere{cgroup}\n0::{cgroup}\n")


def write_state(root: Path, container_id: str, pid: int, start_time: int) -> None:
    state = json.loads(FIXTURE.read_text())
    state["id"] = container_id
    state["init_process_pid"] = pid
    state["init_process_start"] = start_time
    (root / container_id).mkdir(parents=True)
    (root / container_id / "state.json").write_text(json.dumps(state))


# -- parsing ----------------------------------------------------------------


def test_real_state_file_parses() -> None:
    state = parse_state(FIXTURE.read_text())

    assert state.id == FIXTURE_ID
    assert state.pid == FIXTURE_PID
    assert state.start_time == FIXTURE_START
    assert state.bundle == "/tmp/bundles/busybox"
    assert dict(state.labels) == {"org.example.team": "payments"}
    assert state.created == datetime(2026, 11, 25, 1, 36, 23, 97238, tzinfo=UTC)


def test_labels_split_at_the_first_equals_sign() -> None:
    assert parse_labels(["a=b=c", "empty=", "bundle=/b"]) == ("/b", {"a": "b=c", "empty": ""})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "[]",
        json.dumps({"id": "x", "init_process_pid": 1, "init_process_start": 2}),  # no config
        json.dumps(
            {
                "id": "x",
                "init_process_pid": "1",  # a string, not a number
                "init_process_start": 2,
                "created": "2026-11-25T01:36:23Z",
                "config": {"labels": []},
            }
        ),
        json.dumps(
            {
                "id": "x",
                "init_process_pid": 1,
                "init_process_start": 2,
                "created": "yesterday",
                "config": {"labels": []},
            }
        ),
    ],
)
def test_malformed_state_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_state(text)


def test_start_time_survives_a_command_name_with_spaces_and_parentheses() -> None:
    assert parse_proc_stat_start_time(proc_stat(7, 123, comm="a) b (c")) == 123


# -- reading state directories ----------------------------------------------


def test_only_containers_whose_init_process_lives_are_read(tmp_path: Path) -> None:
    proc, runc_root = tmp_path / "proc", tmp_path / "run" / "runc"
    write_state(runc_root, "alive", pid=100, start_time=5000)
    write_state(runc_root, "stopped", pid=101, start_time=5001)  # no /proc/101
    write_state(runc_root, "pid-reused", pid=102, start_time=5002)
    (runc_root / "broken").mkdir()
    (runc_root / "broken" / "state.json").write_text("{truncated")
    fake_process(proc, 100, 5000, "/alive")
    fake_process(proc, 102, 9999, "/someone-else")

    states = read_runc_states([runc_root, tmp_path / "missing-root"], proc=proc)

    assert [s.id for s in states] == ["alive"]


def test_directories_of_runc_roots_are_read_too(tmp_path: Path) -> None:
    # containerd keeps one runc root per namespace: /run/containerd/runc/<namespace>/<id>.
    proc, containerd_runc = tmp_path / "proc", tmp_path / "containerd" / "runc"
    write_state(containerd_runc / "k8s.io", "in-k8s", pid=200, start_time=1)
    write_state(containerd_runc / "default", "in-default", pid=201, start_time=2)
    fake_process(proc, 200, 1, "/a")
    fake_process(proc, 201, 2, "/b")

    states = read_runc_states([containerd_runc], proc=proc)

    assert [s.id for s in states] == ["in-default", "in-k8s"]


# -- the inventory ----------------------------------------------------------


def test_discover_combines_runc_state_and_the_cgroup_tree(tmp_path: Path) -> None:
    proc, runc_root, cgroups = tmp_path / "proc", tmp_path / "runc", tmp_path / "cgroup"
    runc_id, docker_id, podman_id = "1" * 64, "2" * 64, "3" * 64
    docker_scope = f"/system.slice/docker-{docker_id}.scope"
    podman_scope = f"/machine.slice/libpod-{podman_id}.scope"
    for rel in (
        f"/{runc_id}/sub",
        docker_scope,
        f"{podman_scope}/container",
        f"/machine.slice/libpod-conmon-{podman_id}.scope",
        "/system.slice/ssh.service",
    ):
        (cgroups / rel.lstrip("/")).mkdir(parents=True)
    write_state(runc_root, runc_id, pid=300, start_time=42)
    fake_process(proc, 300, 42, f"/{runc_id}")
    # Docker's runc state is there too: the container is listed once, as Docker's.
    write_state(runc_root, docker_id, pid=301, start_time=43)
    fake_process(proc, 301, 43, docker_scope)

    found = {c.id: c for c in discover(cgroups, [runc_root], proc=proc)}

    def ino(rel: str) -> int:
        return os.stat(cgroups / rel.lstrip("/")).st_ino

    assert set(found) == {runc_id, docker_id, podman_id}
    assert found[runc_id] == Container(
        id=runc_id,
        runtime="runc",
        name=runc_id,
        labels={"org.example.team": "payments"},
        cgroup_path=f"/{runc_id}",
        cgroup_ids=(ino(f"/{runc_id}"), ino(f"/{runc_id}/sub")),
        pid=300,
    )
    assert found[docker_id].runtime == "docker"
    assert found[docker_id].pid == 301
    assert found[podman_id] == Container(
        id=podman_id,
        runtime="podman",
        cgroup_path=podman_scope,
        cgroup_ids=(ino(podman_scope), ino(f"{podman_scope}/container")),
        metadata_known=False,  # podman does not know this made-up container
    )


def test_runc_container_in_the_root_cgroup_is_left_out(tmp_path: Path) -> None:
    # Its cgroup id would be the host's: selecting it would select everything.
    proc, runc_root, cgroups = tmp_path / "proc", tmp_path / "runc", tmp_path / "cgroup"
    cgroups.mkdir()
    write_state(runc_root, "at-root", pid=400, start_time=1)
    fake_process(proc, 400, 1, "/")

    assert discover(cgroups, [runc_root], proc=proc) == []


# -- resolving what a person typed ------------------------------------------

WEB = Container(id="ab12" + "0" * 60, runtime="podman", name="web")
DB = Container(id="ab34" + "0" * 60, runtime="podman", name="db")
# Named like the start of the others' ids, to show a name beats a prefix.
ODD = Container(id="cd56" + "0" * 60, runtime="docker", name="ab")
CONTAINERS = [WEB, DB, ODD]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (WEB.id, WEB),
        ("ab12", WEB),
        (DB.short_id, DB),
        ("db", DB),
        ("ab", ODD),
    ],
)
def test_resolve_by_id_prefix_or_name(ref: str, expected: Container) -> None:
    assert resolve_container(ref, CONTAINERS) == expected


def test_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(AmbiguousContainerError) as caught:
        resolve_container("a", CONTAINERS)
    assert caught.value.candidates == (WEB, DB)
    assert WEB.short_id in str(caught.value)
    assert DB.short_id in str(caught.value)
    assert "more characters" in str(caught.value)


def test_no_match_lists_known_containers() -> None:
    with pytest.raises(ContainerLookupError) as caught:
        resolve_container("ffff", CONTAINERS)
    assert isinstance(caught.value, NoSuchContainerError)
    assert "ffff" in str(caught.value)
    assert all(c.short_id in str(caught.value) for c in CONTAINERS)


def test_no_match_says_so_when_nothing_runs() -> None:
    with pytest.raises(NoSuchContainerError, match="no containers are running"):
        resolve_container("web", [])


def test_no_match_message_is_short_with_many_containers() -> None:
    many = [Container(id=f"{i:064x}", runtime="runc", name=f"{i:064x}") for i in range(20)]
    with pytest.raises(NoSuchContainerError, match="and 15 more"):
        resolve_container("zz", many)
