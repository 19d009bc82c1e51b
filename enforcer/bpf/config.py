"""The exec program's one config entry (struct config_value in bpf/enforcer.h).

The rule banks (the host set, the bank in force) and the held map's controls
(holding, the generation, the holding daemon) each write their own fields of
it; every write reads the entry first, so each leaves the others' fields be.
"""

from __future__ import annotations

import ctypes
from typing import TypedDict, Unpack

from enforcer.bpf import abi
from enforcer.bpf.maps import Map


class ConfigFields(TypedDict, total=False):
    """The fields of struct config_value userspace writes, as enforcer.h names them."""

    host_set_id: int
    host_flags: int
    host_name_lengths: int
    trace_all: bool
    hold_new: bool
    generation: int
    host_mnt_ns: int
    bank: int
    instance: int
    hold_owner: int


class ProgramConfig:
    def __init__(self, table: Map) -> None:
        self._table = table

    def bank(self) -> int:
        """The set-id bank in force: 0 in a new program (its config starts zeroed)."""
        return int(self._table[ctypes.c_int(abi.CONFIG_KEY)].bank)

    def update(self, **fields: Unpack[ConfigFields]) -> None:
        """Writes the fields given; the others keep the values they have."""
        key = ctypes.c_int(abi.CONFIG_KEY)
        value = self._table[key]
        for name, field in fields.items():
            setattr(value, name, field)
        self._table[key] = value
