"""What /proc tells of a held process: whether it is stopped, where, and what it runs.

A held process is stopped after its exec and before its first instruction:
/proc shows the new program's argv, and its root, the caller's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from enforcer.bpf import abi
from enforcer.containers.cgroup import cgroup_v2_path_of_pid, find_cgroup2_mount
from enforcer.enforce.resolve import ResolveError, resolve_in_root
from enforcer.errors import EnforcerError

# How long a held process may take to stop before it is continued all the same.
STOP_WAIT_S = 0.5


def stopped(pid: int) -> bool:
    """Whether the process is stopped (state T), as a held one is."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["T"]


def wait_stopped(pid: int) -> bool:
    """Waits (briefly) until a held process has stopped; whether it has.

    The kernel's SIGSTOP may be delivered a moment after the event that
    reported the hold (bpf_send_signal defers it in some contexts): a SIGCONT
    sent before it would be undone by it, and the process stay stopped.
    """
    deadline = time.monotonic() + STOP_WAIT_S
    while not stopped(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def in_cgroup(pid: int, cgroup_id: int) -> bool:
    """Whether the process is in the cgroup v2 directory whose inode is `cgroup_id`."""
    try:
        rel = cgroup_v2_path_of_pid(pid)
        return os.stat(find_cgroup2_mount() / rel.lstrip("/")).st_ino == cgroup_id
    except (OSError, EnforcerError):
        return False


def match_argv(pid: int) -> tuple[bytes, ...] | None:
    """argv[0] and the arguments the kernel compares (abi.MATCH_ARGS after it), or None."""
    limit = (abi.MATCH_ARGS + 1) * (abi.ARG_SKIP_MAX + 1)
    try:
        with Path(f"/proc/{pid}/cmdline").open("rb") as cmdline:
            raw = cmdline.read(limit)
    except OSError:
        return None
    args = raw.split(b"\0")
    if raw.endswith(b"\0"):
        args = args[:-1]  # what follows the last NUL is no argument
    return tuple(args[: abi.MATCH_ARGS + 1])


def argv(pid: int) -> tuple[str, ...]:
    """The first arguments, each cut, as the kernel reports them for its own hits.

    A command line can be megabytes long; a denial keeps at most
    abi.MAX_ARGS arguments of abi.ARG_LEN - 1 bytes each.
    """
    try:
        with Path(f"/proc/{pid}/cmdline").open("rb") as cmdline:
            raw = cmdline.read(abi.MAX_ARGS * abi.ARG_LEN * 64)
    except OSError:
        return ()
    args = raw.split(b"\0")[: abi.MAX_ARGS]
    if len(args) < abi.MAX_ARGS and raw.endswith(b"\0"):
        args = args[:-1]  # what follows the last NUL is no argument
    return tuple(arg[: abi.ARG_LEN - 1].decode(errors="replace") for arg in args)


def comm_and_uid(pid: int) -> tuple[str, int]:
    """The process's name and real uid; ("", 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "", 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return fields.get("Name", "").strip(), int(fields.get("Uid", "0").split()[0])


def interpreter_named(pid: int, invoked: str, cwd: str) -> str:
    """The interpreter path a script's #! line names, read from the script in its root."""
    try:
        root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        resolved = resolve_in_root(root_fd, invoked, cwd or "/")
        script_fd = os.open(resolved.canonical.lstrip("/") or ".", os.O_RDONLY | os.O_CLOEXEC,
                            dir_fd=root_fd)  # fmt: skip
    except (ResolveError, OSError):
        return ""
    finally:
        os.close(root_fd)
    try:
        first_line = os.read(script_fd, abi.LONG_PATH_LEN).split(b"\n", 1)[0]
    finally:
        os.close(script_fd)
    if not first_line.startswith(b"#!"):
        return ""
    words = first_line[2:].split()
    return os.fsdecode(words[0]) if words else ""
