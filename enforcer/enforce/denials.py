"""Rule hits named for people, and the recent ones kept for `enforcer events`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from enforcer.bpf.abi import Action, EventKind
from enforcer.bpf.records import KernelEvent
from enforcer.enforce.ids import CounterName
from enforcer.enforce.map_contents import Hit

HOST = "host"
RECENT_EVENTS = 1000


@dataclass(frozen=True)
class Denial:
    """A rule hit, with every id turned back into the name a person knows."""

    time: float
    policy: str
    rule: str
    action: str
    container_id: str
    container_name: str
    cgroup_id: int
    pid: int
    uid: int
    comm: str
    filename: str  # the file that runs, resolved in the container's root
    target: str
    argv: tuple[str, ...] = ()
    invoked: str = ""  # the path as passed to exec, where it differs
    caller: str = ""  # the program that called exec, resolved, where the kernel read it

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        verb = {Action.KILL.name.lower(): "killed", Action.DENY.name.lower(): "denied"}.get(
            self.action, "audited"
        )
        where = HOST if self.container_id == HOST else f"container {self.container_id[:12]}"
        invoked = f" (invoked as {self.invoked})" if self.invoked else ""
        caller = f", called by {self.caller}" if self.caller else ""
        return (
            f"{verb} {self.filename}{invoked} (pid {self.pid}, comm {self.comm}{caller}) in "
            f"{where}: "
            f"policy {self.policy}, rule {self.rule}"
        )


class DenialLog:
    """Names hits (the kernel's, and those decided for held execs) and keeps the last ones.

    `describe` names a hit's ids, `owner` says whose a cgroup is, and `expand`
    turns a group hit into its rules' own hits; all three read the engine's
    state, so the log holds none of it.
    """

    def __init__(
        self,
        describe: Callable[[Hit], CounterName],
        owner: Callable[[int], tuple[str, str]],
        expand: Callable[[Hit], tuple[Hit, ...]],
    ) -> None:
        self._describe = describe
        self._owner = owner
        self._expand = expand
        self.recent: deque[Denial] = deque(maxlen=RECENT_EVENTS)
        self._seen = 0  # how many denials were ever recorded
        self._new_denial = threading.Condition()

    def denials(self, kind: EventKind, event: KernelEvent) -> list[Denial]:
        """Names a kernel rule-hit event (a group hit: each of its rules); records them."""
        if kind is not EventKind.MATCH or event.hit is None:
            return []
        return [
            self.record(
                hit,
                cgroup_id=event.cgroup_id,
                pid=event.pid,
                uid=event.uid,
                comm=event.comm,
                filename=event.filename,
                argv=event.argv,
                invoked=event.invoked,
                caller=event.caller,
            )
            for hit in self._expand(event.hit)
        ]

    def record(
        self,
        hit: Hit,
        *,
        cgroup_id: int,
        pid: int,
        uid: int,
        comm: str,
        filename: str,
        argv: tuple[str, ...] = (),
        invoked: str = "",
        caller: str = "",
    ) -> Denial:
        """Names one hit (from the kernel, or decided for a held exec) and keeps it."""
        name = self._describe(hit)
        container_id, container_name = self._owner(cgroup_id)
        denial = Denial(
            time=time.time(),
            policy=name.policy,
            rule=name.rule,
            action=hit.action.name.lower(),
            container_id=container_id,
            container_name=container_name,
            cgroup_id=cgroup_id,
            pid=pid,
            uid=uid,
            comm=comm,
            filename=filename,
            target=str(name.target),
            argv=argv,
            invoked=invoked if invoked != filename else "",
            caller=caller,
        )
        with self._new_denial:
            self.recent.append(denial)
            self._seen += 1
            self._new_denial.notify_all()
        return denial

    def denials_after(self, seen: int, timeout: float) -> tuple[list[Denial], int]:
        """The denials recorded after the first `seen`, waiting up to `timeout` for one."""
        with self._new_denial:
            self._new_denial.wait_for(lambda: self._seen > seen, timeout)
            fresh = min(self._seen - seen, len(self.recent))
            return list(self.recent)[len(self.recent) - fresh :], self._seen
