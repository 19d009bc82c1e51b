"""What the container runtimes write, and a stand-in podman: shared by the tests here.

Fixtures under tests/fixtures/<runtime>/ are modelled on what each runtime
writes: podman 4.3's `podman container inspect` output (as printed here),
Docker's config.v2.json, and runc state files holding the OCI annotations of
podman, containerd's CRI plugin and CRI-O, all trimmed to what matters. Their
ids and paths, and a stand-in for the podman command.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path

from enforcer.containers.runc import parse_state

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
