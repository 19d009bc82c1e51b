"""Compiles the exec program with bcc into a CompiledObject; the only module importing bcc.

It runs in a process of its own (`python -m enforcer.bpf.bcc_build`), started by
bpf_loader when the cache has no entry: LLVM, and the memory it takes, leave
with that process, and the daemon never maps libbcc. Import it after
`kernel.ensure_mounts()`: bcc fixes its tracefs path at import time.
"""

from __future__ import annotations

import ctypes
import json
import struct
import sys
from pathlib import Path
from typing import Any

from bcc import BPF
from bcc import table as bcc_table
from bcc.libbcc import lib

from enforcer.bpf.compiled import CompiledObject, FunctionSpec, MapSpec, describe, write_cached

_LD_IMM64 = 0x18
_PSEUDO_MAP_FD = 1

# What bcc's Python side does not declare, of its C API (bcc_common.h).
for _function_name, _restype in (
    ("bpf_table_name", ctypes.c_char_p),
    ("bpf_table_key_desc_id", ctypes.c_char_p),
    ("bpf_table_leaf_desc_id", ctypes.c_char_p),
    ("bpf_table_key_size_id", ctypes.c_size_t),
    ("bpf_table_leaf_size_id", ctypes.c_size_t),
    ("bpf_table_fd_id", ctypes.c_int),
):
    getattr(lib, _function_name).restype = _restype
    getattr(lib, _function_name).argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.bpf_num_tables.restype = ctypes.c_size_t
lib.bpf_num_tables.argtypes = [ctypes.c_void_p]


class _CompileOnly(BPF):  # type: ignore[misc]  # bcc is untyped
    """bcc's module, with nothing loaded into the kernel or attached."""

    def _trace_autoload(self) -> None:
        return


def compile_object(source: Path, cflags: list[str], key: str) -> CompiledObject:
    module = _CompileOnly(src_file=str(source).encode(), cflags=cflags)
    try:
        maps, by_fd = _maps(module)
        functions = tuple(
            _function(module, lib.bpf_function_name(module.module, i).decode(), by_fd)
            for i in range(lib.bpf_num_functions(module.module))
        )
        event_class = bcc_table._get_event_class(module["events"])
        return CompiledObject(
            key=key,
            license=lib.bpf_module_license(module.module).decode(),
            maps=maps,
            functions=functions,
            event_desc=describe(event_class),
        )
    finally:
        module.cleanup()


def _maps(module: Any) -> tuple[tuple[MapSpec, ...], dict[int, str]]:
    specs, by_fd = [], {}
    for table_id in range(lib.bpf_num_tables(module.module)):
        name = lib.bpf_table_name(module.module, table_id).decode()
        key_desc = lib.bpf_table_key_desc_id(module.module, table_id).decode()
        value_desc = lib.bpf_table_leaf_desc_id(module.module, table_id).decode()
        specs.append(
            MapSpec(
                name=name,
                map_type=lib.bpf_table_type_id(module.module, table_id),
                key_size=lib.bpf_table_key_size_id(module.module, table_id),
                value_size=lib.bpf_table_leaf_size_id(module.module, table_id),
                max_entries=lib.bpf_table_max_entries_id(module.module, table_id),
                flags=lib.bpf_table_flags_id(module.module, table_id),
                key_desc=_json(key_desc),
                value_desc=_json(value_desc),
            )
        )
        by_fd[lib.bpf_table_fd_id(module.module, table_id)] = name
    return tuple(specs), by_fd


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def _function(module: Any, name: str, maps_by_fd: dict[int, str]) -> FunctionSpec:
    insns = bytes(module.dump_func(name.encode()))
    refs = []
    for index in range(len(insns) // 8):
        code, regs, _off, imm = struct.unpack_from("=BBhi", insns, index * 8)
        if code == _LD_IMM64 and regs >> 4 == _PSEUDO_MAP_FD:
            if imm not in maps_by_fd:
                raise RuntimeError(f"{name}: instruction {index} names an fd that is no map")
            refs.append((index, maps_by_fd[imm]))
    return FunctionSpec(name=name, insns=insns, map_refs=tuple(refs))


def main(argv: list[str]) -> int:
    """`python -m enforcer.bpf.bcc_build CACHE_DIR KEY SOURCE CFLAG...`"""
    cache_dir, key, source, *cflags = argv
    try:
        write_cached(Path(cache_dir), compile_object(Path(source), cflags, key))
    except Exception as e:  # bcc raises bare Exception for a failed compile
        print(f"cannot compile {source}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
