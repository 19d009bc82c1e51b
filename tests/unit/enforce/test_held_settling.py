"""Held execs settled by the daemon: killed, let go, or left held, on real stopped processes.

Each held exec here is a real `sleep`, stopped as the kernel stops a held one:
what is read of it comes from /proc, and the signal it gets is the outcome.
Only the kernel's tables are fakes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from enforce_fakes import FakeCounters, FakeHeld, FakeRules, kills, loaded

from enforcer.bpf import abi
from enforcer.bpf.abi import EventKind, ExecFlag
from enforcer.bpf.records import Caller, HeldExec, KernelEvent
from enforcer.containers.cgroup import cgroup_v2_path_of_pid
from enforcer.containers.model import Container
from enforcer.enforce import proc
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Engine
from enforcer.enforce.lifecycle import Identify, Lifecycle
from enforcer.enforce.resolve import kernel_dev
from enforcer.errors import EnforcerError
from enforcer.policy.loader import LoadedPolicy, LoadResult
from tests.support.wait import eventually

SLEEP = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")
TRUE = os.path.realpath(shutil.which("true") or "/usr/bin/true")
CGROUP = 900  # the held execs' cgroup, as the kernel named it
KILL_SLEEP = loaded("host", {"host": True}, kills("sleep"))
KILL_NC = loaded("host", {"host": True}, kills("nc"))


def no_container(path: str, pid: int | None) -> Container | None:
    return None  # every cgroup a host cgroup


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process stopped after its exec, as a held one is."""
    child = subprocess.Popen([SLEEP, "60"])
    os.kill(child.pid, signal.SIGSTOP)
    try:
        eventually(lambda: proc.stopped(child.pid), 10, what=f"pid {child.pid} stopped")
        yield child
    finally:
        child.kill()
        child.wait()


def held(pid: int, program: str = SLEEP, flags: int = 0) -> HeldExec:
    """The held map's entry for `pid`, which the kernel saw exec `program`."""
    found = os.stat(program)
    return HeldExec(
        pid=pid, cgroup_id=CGROUP, set_id=abi.SET_PENDING, path=program,
        name=os.path.basename(program), inode=(kernel_dev(found.st_dev), found.st_ino),
        flags=flags, invoked=program, interp_name="", cwd="/",
        caller=Caller(path="", name="", inode=(0, 0), flags=0),
    )  # fmt: skip


def killed(child: subprocess.Popen[bytes]) -> bool:
    return child.wait(timeout=10) == -signal.SIGKILL


def continued(child: subprocess.Popen[bytes]) -> bool:
    eventually(lambda: not proc.stopped(child.pid), 10, what=f"pid {child.pid} continued")
    return child.poll() is None


@dataclass
class Daemon:
    """An engine and its lifecycle, on fake tables; what the lifecycle reported."""

    engine: Engine
    lifecycle: Lifecycle
    rules: FakeRules
    counters: FakeCounters
    held: FakeHeld
    reported: list[Denial] = field(default_factory=list)
    settled: threading.Event = field(default_factory=threading.Event)


@contextmanager
def daemon(
    policies: list[LoadedPolicy], *execs: HeldExec, identify: Identify = no_container
) -> Iterator[Daemon]:
    rules, counters, table = FakeRules(), FakeCounters(), FakeHeld(*execs)
    engine = Engine(rules, lambda: LoadResult(tuple(policies), ()), lambda: [], lambda: {})
    assert engine.reload() is True
    reported: list[Denial] = []
    settled = threading.Event()

    def report(denials: list[Denial]) -> None:
        reported.extend(denials)
        settled.set()

    lifecycle = Lifecycle(engine, held=table, counters=counters, identify=identify, report=report)
    try:
        yield Daemon(engine, lifecycle, rules, counters, table, reported, settled)
    finally:
        lifecycle.close()


def test_a_named_exec_in_a_placed_cgroup_is_killed_counted_and_named(
    sleeper: subprocess.Popen[bytes],
) -> None:
    with daemon([KILL_SLEEP], held(sleeper.pid)) as d:
        d.engine.placement.place_host(CGROUP)
        (denial,) = d.lifecycle.settle_held()
    assert killed(sleeper)
    assert (denial.policy, denial.rule, denial.action) == ("host", "r", "kill")
    assert (denial.pid, denial.comm, denial.uid) == (sleeper.pid, "sleep", os.getuid())
    assert (denial.filename, denial.argv, denial.container_id) == (SLEEP, (SLEEP, "60"), "host")
    assert d.held.released == [sleeper.pid]
    ((cgroup_id, hits),) = d.counters.added
    assert cgroup_id == CGROUP and [h.action for h in hits] == [abi.Action.KILL]


def test_an_exec_no_rule_names_goes_on_before_its_cgroup_is_placed(
    sleeper: subprocess.Popen[bytes],
) -> None:
    asked: list[str] = []
    with daemon([KILL_NC], held(sleeper.pid), identify=lambda path, pid: asked.append(path)) as d:
        assert d.lifecycle.settle_held() == []
        assert continued(sleeper)
        assert d.held.released == [sleeper.pid]
        assert d.lifecycle.queued() == 0 and asked == []


def test_a_named_exec_waits_for_its_cgroup_to_be_placed_and_is_decided_then(
    sleeper: subprocess.Popen[bytes],
) -> None:
    asked: list[tuple[str, int | None]] = []

    def identify(path: str, pid: int | None) -> Container | None:
        asked.append((path, pid))
        return None  # a host cgroup

    path = cgroup_v2_path_of_pid(sleeper.pid)
    with daemon([KILL_SLEEP], held(sleeper.pid), identify=identify) as d:
        assert d.lifecycle.settle_held() == []  # not placed yet: queued for the worker
        assert d.settled.wait(timeout=10)
        assert killed(sleeper)
        assert asked == [(path, sleeper.pid)]
        assert [denial.pid for denial in d.reported] == [sleeper.pid]


def test_an_undecided_exec_is_let_go_on_close_when_nothing_stays_to_decide_it(
    sleeper: subprocess.Popen[bytes],
) -> None:
    with daemon([KILL_SLEEP], held(sleeper.pid)) as d:
        assert d.lifecycle.close(release_undecided=True) == []
        assert continued(sleeper)
        assert d.held.released == [sleeper.pid]


def test_an_undecided_exec_stays_held_on_close_for_the_next_daemon(
    sleeper: subprocess.Popen[bytes],
) -> None:
    with daemon([KILL_SLEEP], held(sleeper.pid)) as d:
        assert d.lifecycle.close(release_undecided=False) == []
        time.sleep(0.2)
        assert proc.stopped(sleeper.pid)
        assert d.held.released == []


def test_a_held_exec_whose_process_is_gone_is_released() -> None:
    gone = subprocess.Popen([TRUE])
    gone.wait()
    with daemon([KILL_SLEEP], held(gone.pid)) as d:
        d.engine.placement.place_host(CGROUP)
        (denial,) = d.lifecycle.settle_held()  # decided from the held map alone
        assert (denial.pid, denial.comm, denial.argv) == (gone.pid, "", ())
        assert d.held.released == [gone.pid]
        assert d.lifecycle.settle_held() == []


def test_in_a_container_that_cannot_be_placed_a_named_exec_is_killed_and_others_go_on(
    sleeper: subprocess.Popen[bytes],
) -> None:
    other = subprocess.Popen([SLEEP, "60"])
    os.kill(other.pid, signal.SIGSTOP)
    eventually(lambda: proc.stopped(other.pid), 10, what=f"pid {other.pid} stopped")
    db = Container(id="c" * 64, runtime="podman", name="db-1", cgroup_ids=(CGROUP,))
    policies = [KILL_NC, loaded("db", {"containers": {"names": ["db-*"]}}, kills("sleep"))]
    try:
        with daemon(policies, held(sleeper.pid), held(other.pid, program=TRUE)) as d:
            d.rules.refuse = True
            with pytest.raises(EnforcerError, match="cannot be placed"):
                d.engine.placement.place(db)
            assert d.lifecycle.settle_held() == []
            assert killed(sleeper)
            assert continued(other)  # seen exec'ing `true`, which no rule names
    finally:
        other.kill()
        other.wait()


def test_a_named_exec_in_a_container_whose_runtime_did_not_answer_is_killed(
    sleeper: subprocess.Popen[bytes],
) -> None:
    unknown = Container(id="c" * 64, runtime="podman", cgroup_ids=(CGROUP,), metadata_known=False)
    web = loaded("web", {"containers": {"names": ["web-*"]}}, kills("sleep"))
    with daemon([web], held(sleeper.pid)) as d:
        assert d.engine.placement.place(unknown) == 0
        assert d.lifecycle.settle_held() == []
        assert killed(sleeper)


def test_a_held_exec_that_cannot_be_decided_is_killed(sleeper: subprocess.Popen[bytes]) -> None:
    with daemon([KILL_NC], held(sleeper.pid)) as d:
        d.engine.placement.place_host(CGROUP)
        d.counters.refuse = True  # counting its (no) hits fails
        assert d.lifecycle.settle_held() == []
        assert killed(sleeper)
        assert d.held.released == [sleeper.pid]


def test_a_held_exec_whose_cgroup_the_worker_cannot_place_is_killed(
    sleeper: subprocess.Popen[bytes],
) -> None:
    def identify(path: str, pid: int | None) -> Container | None:
        raise RuntimeError("the runtime answered nonsense")

    with daemon([KILL_SLEEP], held(sleeper.pid), identify=identify) as d:
        assert d.lifecycle.settle_held() == []
        assert killed(sleeper)


def test_a_cgroup_gone_before_the_worker_places_it_is_forgotten_and_the_worker_goes_on() -> None:
    asked: list[int] = []
    here = cgroup_v2_path_of_pid(os.getpid())

    def identify(path: str, pid: int | None) -> Container | None:
        asked.append(len(asked))
        if len(asked) == 1:
            raise FileNotFoundError(path)  # the container went while its runtime was asked
        return None

    with daemon([KILL_SLEEP], identify=identify) as d:
        d.lifecycle.cgroup_created(901, "/enforcer-test-no-such-cgroup")  # removed already
        d.lifecycle.cgroup_created(902, here)
        d.lifecycle.cgroup_created(903, here)
        eventually(lambda: d.engine.placement.set_of(903) is not None, 10, what="cgroup 903 placed")
        assert len(asked) == 2  # the removed cgroup never reached the runtime
        assert d.engine.placement.set_of(901) is None
        assert d.engine.placement.set_of(902) is None


def test_an_exec_the_held_map_had_no_room_for_is_decided_from_its_event(
    sleeper: subprocess.Popen[bytes],
) -> None:
    event = KernelEvent(
        kind=EventKind.HELD, timestamp_ns=0, cgroup_id=CGROUP, pid=sleeper.pid, tid=sleeper.pid,
        uid=0, hit=None, comm="sleep", filename=SLEEP, invoked=SLEEP, flags=ExecFlag.UNSTORED,
    )  # fmt: skip
    with daemon([KILL_SLEEP]) as d:
        d.engine.placement.place_host(CGROUP)
        (denial,) = d.lifecycle.exec_held(event)
        assert killed(sleeper)
        assert denial.filename == SLEEP and d.held.released == [sleeper.pid]
        assert d.lifecycle.settle_held() == []  # settled once
