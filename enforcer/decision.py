"""The kernel's per-exec decision, replayed in userspace for held execs.

An exec in a cgroup that was still pending when it happened is stopped by the
kernel; once the daemon knows which policies apply there, it decides that exec
here, exactly as bpf/exec_enforcer.c would have: the longest path entry (exact
path or directory), then the basename entry, counting each (policy, rule) once.
"""

from __future__ import annotations

from enforcer import abi
from enforcer.abi import Action
from enforcer.compiler import Hit, MapContents


def decide(maps: MapContents, set_id: int, filename: str, name: str) -> tuple[Hit, ...]:
    """The hits the kernel would have reported, path hits first."""
    if set_id == abi.NO_SET:
        return ()
    by_path = _longest_path_entry(maps, set_id, filename)
    by_name = maps.names.get((set_id, name), ()) if name else ()
    counted = {(h.policy_id, h.rule_id) for h in by_path}
    return by_path + tuple(h for h in by_name if (h.policy_id, h.rule_id) not in counted)


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
