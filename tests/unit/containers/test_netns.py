"""Named network namespaces (`ip netns`), and the namespaces a process is in."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from enforcer.containers import named_netns, pid_and_net_namespaces
from enforcer.containers.namespaces import namespace_inode


def ip_netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make a named network namespace with `ip netns add`"
    if shutil.which("ip") is None:
        return "`ip` is not installed (apt-get install iproute2)"
    return None


def test_a_named_netns_maps_to_its_inode() -> None:
    reason = ip_netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"enforcer-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        # The inode a process in the namespace sees as its own.
        inside = subprocess.run(
            ["ip", "netns", "exec", name, "stat", "-L", "-c", "%i", "/proc/self/ns/net"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        found = named_netns()
        assert found[name] == int(inside.stdout)
        assert found[name] != os.stat("/proc/self/ns/net").st_ino
    finally:
        subprocess.run(
            ["ip", "netns", "delete", name], check=False, capture_output=True, timeout=30
        )
    assert name not in named_netns()


def test_no_netns_directory_means_no_named_namespaces(tmp_path: Path) -> None:
    assert named_netns(tmp_path / "netns") == {}


def test_files_that_are_not_mounted_namespaces_are_left_out(tmp_path: Path) -> None:
    # What an interrupted `ip netns add` leaves: the file without the bind mount.
    (tmp_path / "half-made").write_text("")

    assert named_netns(tmp_path) == {}


def test_namespaces_of_a_process() -> None:
    pid_ns, net_ns = pid_and_net_namespaces(os.getpid())

    assert pid_ns == os.stat("/proc/self/ns/pid").st_ino
    assert net_ns == os.stat("/proc/self/ns/net").st_ino


def test_namespaces_of_an_unknown_or_gone_process_are_none(tmp_path: Path) -> None:
    assert pid_and_net_namespaces(None) == (None, None)
    assert pid_and_net_namespaces(4242, proc=tmp_path) == (None, None)
    assert namespace_inode(4242, "net", proc=tmp_path) is None
