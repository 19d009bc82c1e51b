"""The Kubernetes manifests: valid, rendered by kustomize, and run for real with podman kube play.

`podman kube play` runs the DaemonSet's pod template as a Pod, with the
ConfigMap of a test policy, on this machine's kernel: the agent in the pod
kills a test-made program in a sibling container, and a replacement of the
pod (kube down, then play again), after a graceful stop or a kill -9 of the
agent, lets no attempt through.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from podman_helpers import PODMAN, podman_container
from ruamel.yaml import YAML

from enforcer.kernel.mounts import ensure_mounts

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
READY_TIMEOUT_S = 180.0
PLAY_TIMEOUT_S = 120
KILLED = 137


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_passes_the_official_schemas(path: Path) -> None:
    if path.name == "kustomization.yaml":
        pytest.skip("kustomize's own file, not a Kubernetes object")
    for document in documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomize_renders_every_object() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubernetes-client)")
    rendered = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True,
                              text=True, check=True, timeout=60)  # fmt: skip
    kinds = sorted(d["kind"] for d in YAML(typ="safe").load_all(rendered.stdout) if d)
    assert kinds == ["ConfigMap", "DaemonSet", "Namespace", "Service"]


POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: pod-test
spec:
  selector:
    allContainers: true
  rules:
    - name: forbidden
      match:
        names: [{program}]
"""


@dataclass(frozen=True)
class Agent:
    pod: Path  # the Pod YAML played
    configmap: Path
    container: str  # podman's name of the agent container
    pin_dir: Path
    env: dict[str, str]

    def enforcer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PODMAN, "exec", self.container, "enforcer", *args],
                              capture_output=True, text=True, timeout=60, check=False,
                              env=self.env)  # fmt: skip

    def play(self) -> float:
        """Plays the pod; returns the seconds until its readiness command passed."""
        started = time.monotonic()
        try:
            subprocess.run([PODMAN, "kube", "play", "--configmap", str(self.configmap),
                            str(self.pod)], capture_output=True, text=True, check=True,
                           timeout=PLAY_TIMEOUT_S, env=self.env)  # fmt: skip
        except subprocess.TimeoutExpired:
            # Seen twice in CI: a podman killed while it held one of libpod's
            # shared-memory locks leaves it held, and every later podman that
            # needs it waits forever (a goroutine dump shows LockSemaphore).
            raise AssertionError(
                f"podman kube play hung for {PLAY_TIMEOUT_S} s. If no other podman is running, "
                "a killed podman may have left a libpod lock held: run `podman system renumber` "
                "(with no podman running) and run the test again"
            ) from None
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.enforcer("status").returncode == 0:
                return time.monotonic() - started
            time.sleep(0.5)
        logs = subprocess.run([PODMAN, "logs", self.container], capture_output=True, text=True,
                              check=False, env=self.env)  # fmt: skip
        raise AssertionError(f"agent not ready in {READY_TIMEOUT_S} s:\n{logs.stderr}")

    def down(self) -> None:
        subprocess.run([PODMAN, "kube", "down", str(self.pod)], capture_output=True,
                       timeout=120, check=False, env=self.env)  # fmt: skip

    def kill(self) -> None:
        subprocess.run([PODMAN, "kill", "--signal", "KILL", self.container], capture_output=True,
                       timeout=60, check=True, env=self.env)  # fmt: skip

    def blocked(self) -> int:
        stats = json.loads(self.enforcer("stats", "--json").stdout)
        return sum(int(p["blocked"]) for p in stats["policies"])


def agent_pod(image: str, name: str, pin_dir: Path, state_dir: Path) -> dict[str, Any]:
    """The DaemonSet's pod template as a Pod, pinned and keeping state where the test says."""
    (daemonset,) = documents(MANIFESTS / "daemonset.yaml")
    spec = daemonset["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container["image"] = image
    container["args"] = [a.replace("/sys/fs/bpf/enforcer", str(pin_dir)) for a in container["args"]]
    for volume in spec["volumes"]:
        if volume["name"] == "state":
            volume["hostPath"]["path"] = str(state_dir)
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": spec}  # fmt: skip


@pytest.fixture
def agent(tmp_path: Path, program_name: str) -> Iterator[Agent]:
    version = next(line.split('"')[1] for line in (REPO / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version = "))  # fmt: skip
    image = f"localhost/enforcer:{version}"
    if subprocess.run([PODMAN, "image", "exists", image], check=False).returncode != 0:
        pytest.skip(f"{image} is not built: run `make image`")
    # A node's bpffs, mounted at boot (systemd does): the pins outlive the pod in it.
    ensure_mounts()
    name = f"enforcer-test-{secrets.token_hex(4)}"
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    writer = YAML()
    pod, configmap = tmp_path / "pod.yaml", tmp_path / "configmap.yaml"
    with pod.open("w") as out:
        writer.dump(agent_pod(image, name, pin_dir, tmp_path / "state"), out)
    (cm,) = documents(MANIFESTS / "configmap.yaml")
    cm["data"] = {"test.yaml": POLICY.format(program=program_name)}
    with configmap.open("w") as out:
        writer.dump(cm, out)
    # This host's root may not raise rlimits: podman's defaults are lowered
    # for the pod. And podman kube play before 4.5 ignores the pod's hostPID
    # (containers/podman#17157): the node's pid namespace is made podman's
    # default instead, so that the pod gets what the DaemonSet asks for.
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
                    'pidns = "host"\n')  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    played = Agent(pod, configmap, f"{name}-enforcer", pin_dir, env)
    try:
        yield played
    finally:
        played.down()
        enforcer = REPO / ".venv" / "bin" / "enforcer"
        subprocess.run([str(enforcer), "unload", "--pin-dir", str(pin_dir)], capture_output=True,
                       timeout=60, check=False)  # fmt: skip
        shutil.rmtree(pin_dir, ignore_errors=True)


@pytest.fixture
def program_name() -> str:
    return f"enforcer-test-{secrets.token_hex(4)}"


@pytest.mark.parametrize("replace", ["kube down", "kill -9, kube down"])
@pytest.mark.podman
def test_the_agent_in_a_pod_kills_in_a_sibling_and_a_replaced_pod_lets_nothing_through(
    agent: Agent, program_name: str, debian_image: str, replace: str
) -> None:
    ready_s = agent.play()
    print(f"kube play to ready: {ready_s:.1f} s")
    with podman_container(debian_image, args=("sleep", "3600")) as sibling:
        sibling.exec(["cp", "/usr/bin/true", f"/usr/local/bin/{program_name}"])
        assert sibling.exec([f"/usr/local/bin/{program_name}"]).returncode == KILLED
        assert agent.blocked() == 1
        # What the README shows through `kubectl exec`, here `podman exec`.
        assert sibling.id[:12] in agent.enforcer("containers").stdout
        assert program_name in agent.enforcer("events").stdout

        # Each try is killed, or an escape; the shell's "Killed" lines go away.
        loop = (f'n=0; t=0; while [ ! -e /stop ]; do t=$((t+1)); /usr/local/bin/{program_name} '
                '&& n=$((n+1)); done 2>/dev/null; echo "$n $t"')  # fmt: skip
        result: list[subprocess.CompletedProcess[str]] = []
        trying = threading.Thread(target=lambda: result.append(
            sibling.exec(["sh", "-c", loop], timeout=600)))  # fmt: skip
        trying.start()
        try:
            time.sleep(2)
            if replace.startswith("kill -9"):  # a crash: the next agent is not held by it
                agent.kill()
            agent.down()  # SIGTERM with --keep-on-exit: the pinned program goes on
            replaced_s = agent.play()
            time.sleep(2)
        finally:
            sibling.exec(["touch", "/stop"])
            trying.join()
        escapes, tries = (int(n) for n in result[0].stdout.split())
        counted = agent.blocked()
        print(f"pod replaced, ready again in {replaced_s:.1f} s: {escapes} escapes in {tries} "
              f"tries, {counted} kills counted")  # fmt: skip
        assert escapes == 0
        # The counts went on from where they were: none lost, none twice
        # (the new pod reuses the program in force; were it another, the
        # exec at the switch is counted by one program only: counted_already).
        assert counted == 1 + tries
