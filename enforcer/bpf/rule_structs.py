"""One rule map entry as the kernel holds it (bpf/enforcer.h): keys and values built in ctypes.

The types come from the compile (the map's Key and Leaf); what goes where in
them is here, for rule_banks.py to write.
"""

from __future__ import annotations

import ctypes

from enforcer.bpf.abi import Action
from enforcer.bpf.maps import Map
from enforcer.enforce.map_contents import GROUP_POLICY_ID, Hit, MapContents


def set_of_key(key: ctypes.Structure | ctypes.c_uint32) -> int:
    """The set id a rule map key starts with (cut_hits keys are the set id itself)."""
    return int(key.value if isinstance(key, ctypes.c_uint32) else key.set_id)


def match_value(
    table: Map, hits: tuple[Hit, ...], maps: MapContents, set_id: int
) -> ctypes.Structure:
    """An entry as the kernel holds it.

    An unconditional allow hit is only its `named` bit. A conditional hit, allow or not,
    is kept with its own named bits, which count only where its conditions hold.
    """
    value: ctypes.Structure = table.Leaf()
    kept = [
        h
        for h in hits
        if h.action is not Action.ALLOW or h.policy_id == GROUP_POLICY_ID or h.conditional
    ]
    value.count = len(kept)
    value.named = maps.named_mask(set_id, [h for h in hits if not h.conditional])
    for slot, hit in zip(value.hits, kept, strict=False):
        slot.policy_id, slot.rule_id = hit.policy_id, hit.rule_id
        slot.target_id, slot.action = hit.target_id, int(hit.action)
        slot.caller, slot.args = hit.caller, hit.args
        slot.named = maps.named_mask(set_id, [hit]) if hit.conditional else 0
    return value


def defaults_value(table: Map, hits: tuple[Hit, ...]) -> ctypes.Structure:
    """A set_defaults entry: what applies where no rule of the set matched."""
    value: ctypes.Structure = table.Leaf()
    value.count = len(hits)
    for slot, hit in zip(value.hits, hits, strict=False):
        slot.policy_id, slot.rule_id = hit.policy_id, hit.rule_id
        slot.target_id, slot.action = hit.target_id, int(hit.action)
    return value


def name_key(table: Map, set_id: int, name: str) -> ctypes.Structure:
    """A rule_names key: the set id and the basename of what runs."""
    key: ctypes.Structure = table.Key()
    key.set_id = set_id
    key.name = name.encode()
    return key


def path_key(table: Map, set_id: int, path: str) -> ctypes.Structure:
    """An LPM key of rule_paths or caller_paths: the set id and the path's bytes."""
    raw = path.encode()
    key: ctypes.Structure = table.Key()
    key.set_id = set_id
    key.prefixlen = 32 + 8 * len(raw)
    _set_bytes(key, "path", raw)
    return key


def inode_key(table: Map, set_id: int, dev: int, ino: int) -> ctypes.Structure:
    """A key of rule_inodes or caller_inodes."""
    key: ctypes.Structure = table.Key()
    key.set_id, key.dev, key.ino = set_id, dev, ino
    return key


def caller_name_key(table: Map, set_id: int, name: str) -> ctypes.Structure:
    key: ctypes.Structure = table.Key()
    key.set_id = set_id
    _set_bytes(key, "name", name.encode())
    return key


def arg_value_key(table: Map, set_id: int, value: str) -> ctypes.Structure:
    key: ctypes.Structure = table.Key()
    key.set_id = set_id
    _set_bytes(key, "arg", value.encode())
    return key


def _set_bytes(key: ctypes.Structure, field: str, raw: bytes) -> None:
    # memmove, not assignment: ctypes would stop a char array at a NUL ("/bin/sh\0").
    ctypes.memmove(ctypes.addressof(key) + getattr(type(key), field).offset, raw, len(raw))
