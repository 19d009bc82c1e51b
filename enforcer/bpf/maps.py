"""A BPF map read and written by its fd, with ctypes keys and values.

It answers like a dict: `map[key]`, `map.get(key)`, `map[key] = value`,
`del map[key]`, iteration over keys, `items()`. Keys and values are ctypes
objects of the map's `Key` and `Leaf` types (from the compile's type
descriptions, bpf_object.ctype_of). A per-CPU map's value is a list, one
entry per possible CPU.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from enforcer.bpf import syscall
from enforcer.bpf.syscall import CData
from enforcer.errors import EnforcerError

PERCPU_TYPES = frozenset({5, 6, 10})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ARRAY_TYPES = frozenset({2, 6})  # ARRAY, PERCPU_ARRAY: entries cannot be deleted
POSSIBLE_CPUS = Path("/sys/devices/system/cpu/possible")


@cache
def possible_cpus() -> int:
    """How many CPUs a per-CPU value has slots for (e.g. "0-3" or "0,2-5")."""
    return count_cpus(POSSIBLE_CPUS.read_text())


def count_cpus(cpu_list: str) -> int:
    """How many CPUs a kernel CPU list names ("0-3", "0,2-5")."""
    count = 0
    for part in cpu_list.strip().split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


class Map:
    def __init__(self, name: str, fd: int, key_type: Any, value_type: Any, map_type: int) -> None:
        self.name = name
        self.fd = fd
        self.Key = key_type
        self.Leaf = value_type
        self.percpu = map_type in PERCPU_TYPES
        self._array = map_type in ARRAY_TYPES
        # Each CPU's value is 8-byte aligned in the kernel's copy.
        self._slot = (ctypes.sizeof(value_type) + 7) // 8 * 8

    def get_fd(self) -> int:
        return self.fd

    def _value_buffer(self) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(self._slot * possible_cpus() if self.percpu else
                                           ctypes.sizeof(self.Leaf))  # fmt: skip

    def get(self, key: CData) -> Any:
        buffer = self._value_buffer()
        if not syscall.map_lookup(self.fd, key, buffer):
            return None
        if self.percpu and self._slot == ctypes.sizeof(self.Leaf):
            # An array: a scalar's iterates as numbers, as `sum()` wants.
            return (self.Leaf * possible_cpus()).from_buffer_copy(buffer.raw)
        if self.percpu:
            return [self.Leaf.from_buffer_copy(buffer.raw, cpu * self._slot)
                    for cpu in range(possible_cpus())]  # fmt: skip
        return self.Leaf.from_buffer_copy(buffer.raw)

    def __getitem__(self, key: CData) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: CData, value: CData) -> None:
        try:
            syscall.map_update(self.fd, key, value)
        except OSError as e:
            raise MapUpdateError(self.name, e) from e

    def __delitem__(self, key: CData) -> None:
        if not syscall.map_delete(self.fd, key):
            raise KeyError(key)

    def discard(self, keys: Iterable[CData]) -> None:
        """Deletes those of `keys` the map holds; the others are gone already."""
        for key in keys:
            syscall.map_delete(self.fd, key)

    def __iter__(self) -> Iterator[Any]:
        """The keys there now (a copy each: the map may change while they are used)."""
        key, next_key = None, self.Key()
        while syscall.map_next_key(self.fd, key, next_key):
            key = self.Key.from_buffer_copy(next_key)
            yield key

    def items(self) -> list[tuple[Any, Any]]:
        pairs = []
        for key in list(self):
            value = self.get(key)
            if value is not None:  # deleted since it was listed
                pairs.append((key, value))
        return pairs

    def clear(self) -> None:
        """Deletes every entry; an array's entries are zeroed instead."""
        for key in list(self):
            if self._array:
                syscall.map_update(self.fd, key, self._value_buffer())
            else:
                syscall.map_delete(self.fd, key)

    def close(self) -> None:
        os.close(self.fd)


def open_pinned(
    path: Path, key_type: type[CData] | None = None, value_type: type[CData] | None = None
) -> Map:
    """The map pinned at `path` (FileNotFoundError if none); close() it when done.

    Keys and values are raw bytes of the map's sizes unless their types are given.
    """
    fd = syscall.obj_get(path)
    try:
        info = syscall.map_info(fd)
    except OSError:
        os.close(fd)
        raise
    key_type = key_type or ctypes.c_char * info.key_size
    value_type = value_type or ctypes.c_char * info.value_size
    return Map(path.name, fd, key_type, value_type, info.map_type)


class MapUpdateError(EnforcerError, OSError):
    """The kernel refused a map write (the map is full: E2BIG; or a bad value)."""

    def __init__(self, name: str, cause: OSError) -> None:
        super().__init__(cause.errno, f"cannot write to map {name}: {cause.strerror}")
