"""What a held exec is, to decide it as the kernel would: the files it runs, its caller, argv."""

from __future__ import annotations

import os

from enforcer.bpf import abi
from enforcer.bpf.abi import CallerFlag, ExecFlag
from enforcer.bpf.records import Caller, HeldExec, KernelEvent
from enforcer.enforce import proc
from enforcer.enforce.decision import ExecContext, FileIdentity
from enforcer.enforce.resolve import ResolveError, kernel_dev, resolve_in_root


def unstored_held(event: KernelEvent) -> HeldExec:
    """The held exec an EVENT_HELD event with EXEC_UNSTORED reports (the held map was full).

    The process is stopped after its exec: /proc/PID/exe is the file that
    runs and /proc/PID/cwd the caller's directory; a script's #! line is read
    again from the script. What cannot be read leaves the path cut: any path
    rule of its set matches it (fail closed).
    """
    try:
        exe = os.stat(f"/proc/{event.pid}/exe")
        inode = (kernel_dev(exe.st_dev), exe.st_ino)
    except OSError:
        inode = (0, 0)
    try:
        cwd = os.readlink(f"/proc/{event.pid}/cwd")
    except OSError:
        cwd = ""
    flags = event.flags
    if not cwd.startswith("/") or not inode[1]:
        flags |= ExecFlag.PATH_CUT
        cwd = ""
    script = bool(flags & ExecFlag.SCRIPT)
    return HeldExec(
        pid=event.pid,
        cgroup_id=event.cgroup_id,
        # Whether its cgroup was placed is the engine's to say: settled as pending.
        set_id=abi.SET_PENDING,
        path=event.filename,
        name=_basename(event.filename) if len(_basename(event.filename)) < abi.NAME_LEN else "",
        inode=inode,
        flags=flags,
        invoked=event.invoked,
        interp_name=proc.interpreter_named(event.pid, event.invoked, cwd) if script else "",
        cwd=cwd,
        # The event names its path only: no inode (held_context then matches by path and name).
        caller=Caller(
            path=event.caller,
            name=_basename(event.caller),
            inode=(0, 0),
            flags=CallerFlag.KNOWN if event.caller.startswith("/") else 0,
        ),
    )


def held_files(held: HeldExec) -> list[FileIdentity]:
    """The files a held exec runs: the program, and for a script the script itself.

    The script's path (as passed to exec) is resolved in the process's own
    root, below its working directory; where that fails the script matches
    as a cut path does in the kernel, fail closed.
    """
    script = bool(held.flags & ExecFlag.SCRIPT)
    invoked_by = held.interp_name if script else held.invoked
    program = FileIdentity(
        path=held.path,
        names=(held.name, _basename(invoked_by)),
        inode=held.inode,
        path_cut=bool(held.flags & ExecFlag.PATH_CUT),
    )
    if not script:
        return [program]
    return [program, _script_file(held)]


def _script_file(held: HeldExec) -> FileIdentity:
    names = (_basename(held.invoked),)
    try:
        root_fd = os.open(f"/proc/{held.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return FileIdentity(path=held.invoked, names=names, path_cut=True)
    try:
        resolved = resolve_in_root(root_fd, held.invoked, held.cwd or "/")
    except (ResolveError, OSError):
        return FileIdentity(path=held.invoked, names=names, path_cut=True)
    finally:
        os.close(root_fd)
    return FileIdentity(
        path=resolved.canonical,
        names=(*names, _basename(resolved.canonical)),
        inode=resolved.inode,
        path_cut=not held.cwd and not held.invoked.startswith("/"),
    )


def held_context(held: HeldExec) -> ExecContext:
    """What conditional rules test of a held exec: its caller, and its arguments from /proc.

    The process is stopped before its first instruction: /proc/PID/cmdline is the argv
    the new program got, as the kernel reads it for its own hits.
    """
    caller = held.caller
    known = caller.flags & CallerFlag.KNOWN
    identity = FileIdentity(
        path=caller.path,
        names=(caller.name,) if caller.name else (),
        inode=caller.inode if caller.inode != (0, 0) else None,
        path_cut=bool(caller.flags & CallerFlag.PATH_CUT),
    )
    return ExecContext(caller=identity if known else None, argv=proc.match_argv(held.pid))


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
