"""The execs the kernel holds for the daemon to decide, and the controls of holding.

The held map and the liveness array are shared by every generation of the
program (pinned): which generation decides execs, until when new cgroups'
execs may be held, and how many ran unheld because no daemon was alive.
"""

from __future__ import annotations

import ctypes
import os

from enforcer.bpf import abi
from enforcer.bpf.config import ProgramConfig
from enforcer.bpf.maps import Map
from enforcer.bpf.records import Caller, HeldExec


class HeldMap:
    def __init__(self, held: Map, liveness: Map, config: ProgramConfig) -> None:
        self._held = held
        self._liveness = liveness
        self._config = config

    def held_execs(self) -> list[HeldExec]:
        return [_held_exec(k.value, v) for k, v in self._held.items()]

    def release_held(self, pid: int) -> None:
        self._held.discard([ctypes.c_uint32(pid)])

    def hold_new_cgroups(self, on: bool) -> None:
        """Whether cgroups created from now on start pending (see exec_enforcer.c)."""
        self._config.update(hold_new=on)

    def end_holding_at_exit(self, tgid: int) -> None:
        """The exit of process `tgid`, however it exits, ends the holding of new cgroups' execs.

        0: no process's exit does (a next daemon settles what is held).
        """
        self._config.update(hold_owner=tgid)

    def live_generation(self) -> int:
        """The generation in force: this program's, or one a previous daemon left."""
        return self._live(abi.LIVE_GENERATION)

    def prepare_generation(self, generation: int) -> None:
        """Gives this program its generation: it follows cgroups now, decides nothing yet."""
        self._config.update(generation=generation)

    def take_over(self, generation: int) -> None:
        """Puts this program in force (`prepare_generation` first); the older one stops."""
        self._set_live(abi.LIVE_GENERATION, generation)

    def keep_holding_until(self, monotonic_ns: int) -> None:
        """New cgroups' execs may be held until then (bpf_ktime_get_ns is CLOCK_MONOTONIC)."""
        self._set_live(abi.LIVE_HOLD_UNTIL, monotonic_ns)

    def unheld_execs(self) -> int:
        """Execs in new cgroups let run because no daemon was alive to settle them."""
        return self._live(abi.LIVE_UNHELD)

    def _live(self, slot: int) -> int:
        return int(self._liveness[ctypes.c_int(slot)].value)

    def _set_live(self, slot: int, value: int) -> None:
        self._liveness[ctypes.c_int(slot)] = self._liveness.Leaf(value)


def _held_exec(pid: int, v: ctypes.Structure) -> HeldExec:
    """A held map entry (struct held_exec) as a record."""
    return HeldExec(
        pid=pid,
        cgroup_id=v.cgroup_id,
        set_id=v.set_id,
        path=os.fsdecode(v.path),
        name=os.fsdecode(v.name),
        inode=(v.dev, v.ino),
        flags=v.flags,
        invoked=os.fsdecode(v.invoked),
        interp_name=os.fsdecode(v.interp_name),
        cwd=os.fsdecode(v.cwd),
        caller=Caller(
            path=os.fsdecode(v.caller.path),
            name=os.fsdecode(v.caller.name),
            inode=(v.caller.dev, v.caller.ino),
            flags=v.caller.flags,
        ),
    )
