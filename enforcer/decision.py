"""The kernel's per-exec decision, replayed in userspace for held execs.

An exec in a cgroup that was still pending when it happened is stopped by the
kernel; once the daemon knows which policies apply there, it decides that exec
here, exactly as bpf/exec_enforcer.c would have: the longest path entry (exact
path or directory), then the basename entry, counting each (policy, rule) once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from enforcer import abi
from enforcer.abi import Action
from enforcer.compiler import Hit, MapContents
from enforcer.policy.model import ExecPolicy


def decide(maps: MapContents, set_id: int, filename: str, name: str) -> tuple[Hit, ...]:
    """The hits the kernel would have reported, path hits first.

    A held exec is already past the hook, so a deny rule can only kill it:
    its hits say kill, as the syscall hooks' do.
    """
    if set_id == abi.NO_SET:
        return ()
    by_path = _longest_path_entry(maps, set_id, filename)
    by_name = maps.names.get((set_id, name), ()) if name else ()
    counted = {(h.policy_id, h.rule_id) for h in by_path}
    hits = by_path + tuple(h for h in by_name if (h.policy_id, h.rule_id) not in counted)
    return tuple(replace(h, action=Action.KILL) if h.action is Action.DENY else h for h in hits)


def kills(hits: tuple[Hit, ...]) -> bool:
    return any(hit.action is Action.KILL for hit in hits)


def _longest_path_entry(maps: MapContents, set_id: int, filename: str) -> tuple[Hit, ...]:
    exact = maps.paths.get((set_id, filename + "\0"))
    if exact is not None:
        return exact
    for cut in range(len(filename) - 1, -1, -1):
        if filename[cut] == "/":
            hits = maps.paths.get((set_id, filename[: cut + 1]))
            if hits is not None:
                return hits
    return ()


class AnyRule:
    """Whether any rule of any policy names a program, wherever it runs.

    Lets a held exec that no rule names go on at once, before its cgroup is
    even identified: the container runtime's own execs (runc re-executing
    itself, for one) must never wait for the metadata the runtime is busy
    producing.
    """

    def __init__(self, policies: Iterable[ExecPolicy]) -> None:
        matches = [rule.match for policy in policies for rule in policy.spec.rules]
        self._names = {name for m in matches for name in m.names}
        self._paths = {path for m in matches for path in m.paths}
        self._dirs = {d if d.endswith("/") else d + "/" for m in matches for d in m.dirs}

    def names(self, filename: str, name: str) -> bool:
        if name in self._names or filename in self._paths:
            return True
        return any(filename.startswith(d) for d in self._dirs)
