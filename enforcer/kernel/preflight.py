"""What every command that loads the exec program does first, before bcc is imported.

As root and, where it signals held execs, in the node's pid namespace: the
filesystems it needs mounted, the kernel probed, and the backend chosen.
"""

from __future__ import annotations

import os
from pathlib import Path

from enforcer.errors import KernelSupportError
from enforcer.kernel.backends import Backend, BackendChoice, choose_backend
from enforcer.kernel.facts import KernelFacts, probe
from enforcer.kernel.mounts import ensure_mounts

# /proc/PID/stat's flags (field 9): the task is a kernel thread.
_PF_KTHREAD = 0x00200000


def prepare(
    requested: Backend = Backend.AUTO, *, signals_held_execs: bool = False
) -> tuple[KernelFacts, BackendChoice]:
    """The checks, the mounts, the probe and the backend choice, in that order."""
    require_root()
    if signals_held_execs:
        require_node_pid_namespace()
    ensure_mounts()
    facts = probe()
    return facts, choose_backend(facts, requested)


def require_root() -> None:
    if os.geteuid() != 0:
        raise KernelSupportError("loading BPF programs needs root; run this command with sudo")


def require_node_pid_namespace(proc: Path = Path("/proc")) -> None:
    """Refuses to run in a pid namespace of its own.

    The BPF programs report pids as the node's initial pid namespace numbers
    them, and held execs are let go or killed by those pids: from a nested
    pid namespace the kernel refuses every such signal (EINVAL), and what
    is held would stay stopped. Only the initial namespace shows kernel
    threads (kthreadd is pid 2), and its /proc must be this process's own.
    """
    try:
        fields = (proc / "2" / "stat").read_text().rpartition(")")[2].split()
        kernel_thread = int(fields[6]) & _PF_KTHREAD != 0
        own_proc = os.readlink(proc / "self") == str(os.getpid())
    except (OSError, ValueError, IndexError):
        kernel_thread = own_proc = False
    if not (kernel_thread and own_proc):
        raise KernelSupportError(
            "enforcer runs in a pid namespace of its own: it could not signal the execs it "
            "holds. Run it in the node's pid namespace: hostPID: true in a pod, --pid=host "
            "with podman or docker"
        )
