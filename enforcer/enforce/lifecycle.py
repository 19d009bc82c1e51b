"""Containers that start and stop while enforcer runs, from the kernel's cgroup events.

While the daemon runs, every new cgroup starts *pending* in the kernel: an
exec there is stopped (SIGSTOP) and parked in the held map. This module
settles them:

- A parked exec of a program that no rule of any policy names goes on at
  once. Container runtimes exec their own helpers in the new cgroup while
  they set it up, and must not wait for metadata they are busy producing.
- Every new cgroup is identified on a worker thread (a container of which
  runtime, with which name, image and labels; or a host cgroup) and placed
  under its policies; asking a runtime for metadata can take a while, and the
  event loop must keep answering meanwhile.
- Once its cgroup is placed, a parked exec is decided exactly as the kernel
  would have decided it, and killed or let go.

The kernel also parks a #! script's exec where it cannot match the script's
own file (the tracepoint backend, in a set with enforce-mode path rules): the
daemon resolves the script's path in the caller's root and decides it with
its interpreter, at once.

A new container's entrypoint therefore never runs unchecked.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from enforcer.bpf import abi
from enforcer.bpf.abi import CallerFlag, ExecFlag
from enforcer.bpf.records import Caller
from enforcer.containers.cgroup import cgroup_dir, cgroup_v2_path_of_pid, find_cgroup2_mount
from enforcer.containers.model import Container
from enforcer.containers.namespaces import in_host_mount_namespace
from enforcer.enforce.decision import ExecContext, FileIdentity, decide, kills
from enforcer.enforce.engine import Denial, Engine
from enforcer.enforce.map_contents import Hit
from enforcer.enforce.resolve import ResolveError, RootView, kernel_dev, resolve_in_root, root_view
from enforcer.errors import EnforcerError

log = logging.getLogger(__name__)

Identify = Callable[[str, int | None], Container | None]
# How long a held process may take to stop before it is continued all the same.
STOP_WAIT_S = 0.5


class HeldExecLike(Protocol):
    """records.HeldExec: see struct held_exec in bpf/enforcer.h."""

    @property
    def pid(self) -> int: ...
    @property
    def cgroup_id(self) -> int: ...
    @property
    def set_id(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inode(self) -> tuple[int, int]: ...
    @property
    def flags(self) -> int: ...
    @property
    def invoked(self) -> str: ...
    @property
    def interp_name(self) -> str: ...
    @property
    def cwd(self) -> str: ...
    @property
    def caller(self) -> Caller: ...


class HeldEvent(Protocol):
    """What an EVENT_HELD event says (records.KernelEvent)."""

    @property
    def pid(self) -> int: ...
    @property
    def cgroup_id(self) -> int: ...
    @property
    def filename(self) -> str: ...
    @property
    def invoked(self) -> str: ...
    @property
    def flags(self) -> int: ...
    @property
    def caller(self) -> str: ...


@dataclass(frozen=True)
class UnstoredHeld:
    """A held exec the held map had no room for: its event, and /proc, tell the rest."""

    pid: int
    cgroup_id: int
    path: str
    name: str
    inode: tuple[int, int]
    flags: int
    invoked: str
    interp_name: str
    cwd: str
    caller: Caller
    # Whether its cgroup was placed is the engine's to say: settled as pending.
    set_id: int = abi.SET_PENDING


def unstored_held(event: HeldEvent) -> UnstoredHeld:
    """The held exec an EVENT_HELD event with EXEC_UNSTORED reports.

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
    return UnstoredHeld(
        pid=event.pid,
        cgroup_id=event.cgroup_id,
        path=event.filename,
        name=_basename(event.filename) if len(_basename(event.filename)) < abi.NAME_LEN else "",
        inode=inode,
        flags=flags,
        invoked=event.invoked,
        interp_name=_interpreter_named(event.pid, event.invoked, cwd) if script else "",
        cwd=cwd,
        # The event names its path only: no inode (held_context then matches by path and name).
        caller=Caller(
            path=event.caller,
            name=_basename(event.caller),
            inode=(0, 0),
            flags=CallerFlag.KNOWN if event.caller.startswith("/") else 0,
        ),
    )


def _interpreter_named(pid: int, invoked: str, cwd: str) -> str:
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


class HeldExecs(Protocol):
    """What settling needs of the loaded program (bpf_program.ExecProgram)."""

    def held_execs(self) -> Sequence[HeldExecLike]: ...
    def release_held(self, pid: int) -> None: ...
    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None: ...


class Lifecycle:
    def __init__(
        self,
        engine: Engine,
        program: HeldExecs,
        identify: Identify,
        report: Callable[[list[Denial]], None],
    ) -> None:
        self._engine = engine
        self._program = program
        self._identify = identify
        self._report = report
        self._paths: dict[int, str] = {}
        self._settling = threading.Lock()
        # Cgroups (and held pids) to classify, oldest first, each once. A
        # cgroup removed before its turn leaves the queue, so a mkdir/rmdir
        # loop keeps it no longer than the cgroups that exist.
        self._jobs: OrderedDict[tuple[int, int | None], None] = OrderedDict()
        self._jobs_changed = threading.Condition()
        self._closing = False
        # Held execs the held map had no room for, known from their event.
        self._unstored: dict[int, HeldExecLike] = {}
        self._worker = threading.Thread(target=self._work, name="classify", daemon=True)
        self._worker.start()

    def cgroup_created(self, cgroup_id: int, path: str) -> None:
        self._paths[cgroup_id] = path
        self._queue(cgroup_id, None)

    def _queue(self, cgroup_id: int, pid: int | None) -> None:
        with self._jobs_changed:
            self._jobs[(cgroup_id, pid)] = None
            self._jobs_changed.notify()

    def queued(self) -> int:
        """How many classifications wait for the worker."""
        with self._jobs_changed:
            return len(self._jobs)

    def cgroup_removed(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)
        with self._jobs_changed:
            self._jobs.pop((cgroup_id, None), None)
        self._engine.forget_cgroup(cgroup_id)

    def exec_held(self, event: HeldEvent) -> list[Denial]:
        """An exec the kernel stopped; settles it with every other one that can be."""
        if event.flags & ExecFlag.UNSTORED:
            with self._settling:
                self._unstored[event.pid] = unstored_held(event)
        return self.settle_held()

    def close(self, release_undecided: bool = True) -> list[Denial]:
        """Stops the worker and settles what it can; the rest is let go, or left held.

        Left held when the program stays in the kernel after the daemon: the
        next daemon decides those execs.
        """
        with self._jobs_changed:
            self._closing = True
            self._jobs_changed.notify()
        self._worker.join()
        return self.settle_held(final=release_undecided)

    def settle_held(self, final: bool = False) -> list[Denial]:
        """Decides every parked exec that can be decided now; returns the hits."""
        denials: list[Denial] = []
        with self._settling:
            for held in [*self._program.held_execs(), *self._unstored.values()]:
                try:
                    denials += self._settle(held, final)
                except (OSError, EnforcerError) as e:
                    # The process is stopped: never leave it so. Fail closed.
                    log.error("cannot decide held exec %s (pid %d): %s; killing it",
                              held.path, held.pid, e)  # fmt: skip
                    self._let_go(held.pid, signal.SIGKILL)
        return denials

    def _settle(self, held: HeldExecLike, final: bool) -> list[Denial]:
        engine = self._engine
        if held.set_id == abi.SET_PENDING:
            set_number = engine.set_of(held.cgroup_id)
        else:  # a script held in a set the kernel knew
            set_number = engine.enforced_set(held.cgroup_id)
        log.debug("held %r pid %d in cgroup %d: set %s",
                  held.path, held.pid, held.cgroup_id, set_number)  # fmt: skip
        files = held_files(held)
        runtime = in_host_mount_namespace(held.pid)  # the runtime's own exec: no default
        if engine.unplaceable(held.cgroup_id):
            # Its policies could not be compiled: any rule that names it kills it.
            named = engine.any_rule.names(files, self._view(held.pid), runtime_exec=runtime)
            self._let_go(held.pid, signal.SIGKILL if named else signal.SIGCONT, held.cgroup_id)
            return []
        if set_number is None:
            named = engine.any_rule.names(files, self._view(held.pid), runtime_exec=runtime)
            if final or not named:
                self._let_go(held.pid, signal.SIGCONT, held.cgroup_id)
            else:
                self._queue(held.cgroup_id, held.pid)
            return []
        if engine.metadata_unknown(held.cgroup_id) and engine.any_rule.names(
            files, self._view(held.pid), runtime_exec=runtime
        ):
            log.error("killed %s (pid %d): a policy names it and the container's runtime did not "
                      "say whether that policy selects it", held.path, held.pid)  # fmt: skip
            self._let_go(held.pid, signal.SIGKILL, held.cgroup_id)
            return []
        compiled = engine.compiled
        context = held_context(held)
        hits = (
            decide(compiled.maps, set_number, files, runtime_exec=runtime, context=context)
            if compiled
            else ()
        )
        self._program.add_counts(held.cgroup_id, hits)
        comm, uid = _comm_and_uid(held.pid)
        argv = _argv(held.pid)  # stopped after its exec: /proc shows the new program's
        self._let_go(held.pid, signal.SIGKILL if kills(hits) else signal.SIGCONT, held.cgroup_id)
        return [
            engine.record(hit, cgroup_id=held.cgroup_id, pid=held.pid, uid=uid, comm=comm,
                          filename=held.path, argv=argv, invoked=held.invoked,
                          caller=held.caller.path)
            for hit in hits
        ]  # fmt: skip

    def _view(self, pid: int) -> RootView:
        """Every policy path resolved in the held process's root; empty if it cannot be read."""
        try:
            return root_view(Path(f"/proc/{pid}/root"), self._engine.any_rule.targets)
        except ResolveError:
            return {}

    def _let_go(self, pid: int, signum: int, cgroup_id: int | None = None) -> None:
        """Signals a held process through a pidfd, once it is known to be that process.

        A pid alone may have been reused since the kernel held it (someone
        else killed it): the pidfd pins one process, which must still be
        stopped or in the cgroup the exec was held in.
        """
        log.debug("let go of pid %d with signal %d", pid, signum)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            log.debug("held pid %d is gone already", pid)
            self._release(pid)
            return
        try:
            stopped = _wait_stopped(pid) if signum == signal.SIGCONT else _stopped(pid)
            if cgroup_id is None or stopped or _in_cgroup(pid, cgroup_id):
                signal.pidfd_send_signal(pidfd, signum)
            else:
                log.warning("pid %d is no longer the exec held in cgroup %d: not signalled",
                            pid, cgroup_id)  # fmt: skip
        except ProcessLookupError:
            log.debug("held pid %d is gone already", pid)
        finally:
            os.close(pidfd)
        self._release(pid)

    def _release(self, pid: int) -> None:
        self._program.release_held(pid)
        self._unstored.pop(pid, None)

    def _next_job(self) -> tuple[int, int | None] | None:
        with self._jobs_changed:
            while not self._jobs and not self._closing:
                self._jobs_changed.wait()
            if self._closing:
                return None
            return self._jobs.popitem(last=False)[0]

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            cgroup_id, pid = job
            try:
                self._place(cgroup_id, pid)
                self._report(self.settle_held())
            except (FileNotFoundError, ProcessLookupError):
                log.debug("cgroup %d or pid %s went away before it was placed", cgroup_id, pid)
            except Exception:
                log.exception("failed to place cgroup %d", cgroup_id)
                if pid is not None:  # fail closed: it is stopped, and named by a rule
                    self._let_go(pid, signal.SIGKILL)

    def _place(self, cgroup_id: int, pid: int | None) -> None:
        engine = self._engine
        if engine.set_of(cgroup_id) is not None:
            return
        # Taken, not read: what stays behind would be kept for a cgroup whose
        # removal the kernel could not report (its event buffer full).
        path = self._paths.pop(cgroup_id, None) or (cgroup_v2_path_of_pid(pid) if pid else None)
        if path is None:
            return
        if not cgroup_dir(find_cgroup2_mount(), path).is_dir():
            engine.forget_cgroup(cgroup_id)  # removed already
            return
        if engine.place_below(cgroup_id, path):
            return
        container = self._identify(path, pid)
        log.debug("cgroup %d (%s): %s", cgroup_id, path, container.id if container else "host")
        if container is None:
            engine.place_host(cgroup_id)
        elif engine.needs_pid() and container.pid is None:
            return  # namespace selectors need a process: placed at its first held exec
        else:
            engine.place(container)


def held_files(held: HeldExecLike) -> list[FileIdentity]:
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


def _script_file(held: HeldExecLike) -> FileIdentity:
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


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (state T), as a held one is."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["T"]


def _wait_stopped(pid: int) -> bool:
    """Waits (briefly) until a held process has stopped; whether it has.

    The kernel's SIGSTOP may be delivered a moment after the event that
    reported the hold (bpf_send_signal defers it in some contexts): a SIGCONT
    sent before it would be undone by it, and the process stay stopped.
    """
    deadline = time.monotonic() + STOP_WAIT_S
    while not _stopped(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def _in_cgroup(pid: int, cgroup_id: int) -> bool:
    """Whether the process is in the cgroup v2 directory whose inode is `cgroup_id`."""
    try:
        rel = cgroup_v2_path_of_pid(pid)
        return os.stat(find_cgroup2_mount() / rel.lstrip("/")).st_ino == cgroup_id
    except (OSError, EnforcerError):
        return False


def held_context(held: HeldExecLike) -> ExecContext:
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
    return ExecContext(caller=identity if known else None, argv=_match_argv(held.pid))


def _match_argv(pid: int) -> tuple[bytes, ...] | None:
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


def _argv(pid: int) -> tuple[str, ...]:
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


def _comm_and_uid(pid: int) -> tuple[str, int]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "", 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return fields.get("Name", "").strip(), int(fields.get("Uid", "0").split()[0])
