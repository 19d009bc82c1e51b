"""What a test needs of this host, by marker, and why it is missing when it is.

tests/conftest.py skips a test marked `root`, `podman` or `runc` with the
reason one of these returns (pytest -ra prints it); None means it is there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

PODMAN = "podman"
RUNC = "runc"
BUSYBOX = "busybox"


def bpf_unavailable_reason() -> str | None:
    """Why BPF programs cannot be loaded here (marker `root`), or None."""
    if os.geteuid() != 0:
        return "needs root to load BPF programs (run pytest as root)"
    if not Path("/sys/kernel/btf/vmlinux").exists() and not Path("/proc/kallsyms").exists():
        return "this kernel exposes no symbols for BPF"
    return None


def podman_missing_reason() -> str | None:
    """Why podman cannot run containers the daemon sees, or None."""
    if os.geteuid() != 0:
        return "needs root to run podman containers that enforcer sees (run pytest as root)"
    if shutil.which(PODMAN) is None:
        return "podman is not installed (apt-get install podman)"
    return None


def podman_unavailable_reason() -> str | None:
    """Why podman containers of a busybox image cannot run here (marker `podman`), or None."""
    if (reason := podman_missing_reason()) is not None:
        return reason
    if shutil.which(BUSYBOX) is None:
        return "busybox is not installed (apt-get install busybox-static)"
    return None


def runc_unavailable_reason() -> str | None:
    """Why real runc containers cannot run here (marker `runc`), or None."""
    if os.geteuid() != 0:
        return "needs root to run runc containers (run pytest as root)"
    if shutil.which(RUNC) is None:
        return "runc is not installed (apt-get install runc)"
    if shutil.which(BUSYBOX) is None:
        return "busybox is not installed (apt-get install busybox-static)"
    return None


# Marker name -> its check; pyproject.toml registers the same names.
BY_MARKER: dict[str, Callable[[], str | None]] = {
    "root": bpf_unavailable_reason,
    "podman": podman_unavailable_reason,
    "runc": runc_unavailable_reason,
}
