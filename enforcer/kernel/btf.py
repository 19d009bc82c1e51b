"""The running kernel's own type information (BTF), read without bcc.

Kernel headers may belong to another kernel (bcc compiles against whatever
/lib/modules/$(uname -r)/build holds), so struct offsets are taken from here
instead: /sys/kernel/btf/vmlinux describes the running kernel exactly. Two
questions are answered: the BTF id of a function (an LSM program is loaded
against its hook's `bpf_lsm_*` function) and the byte offset of a struct
member (the LSM hook reads `struct linux_binprm` at offsets from here).

The format is the kernel's (Documentation/bpf/btf.rst): a header, then
variable-length type records, then a string table.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from enforcer.errors import EnforcerError

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")


class BtfError(EnforcerError, ValueError):
    """Raised when a BTF blob is truncated or not BTF at all."""


class Kind(IntEnum):
    """BTF_KIND_* values this reader tells apart (the others are only skipped)."""

    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# Bytes that follow a type record: fixed, or per entry (times vlen).
_FIXED_EXTRA: dict[int, int] = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
_PER_ENTRY: dict[int, int] = {
    Kind.STRUCT: 12,
    Kind.UNION: 12,
    Kind.ENUM: 8,
    Kind.FUNC_PROTO: 8,
    Kind.DATASEC: 12,
    Kind.ENUM64: 12,
}


@dataclass(frozen=True)
class _Type:
    kind: int
    name_off: int
    vlen: int
    kind_flag: bool
    size_or_type: int
    offset: int  # of the record within the type section


class Btf:
    """One parsed BTF blob: types by id (1-based), names from its string table."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("BTF is shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        self._types_raw = data[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        if len(self._types_raw) != type_len or len(self._strings) != str_len:
            raise BtfError("BTF is truncated")
        self._offsets, self._type_names = self._walk()

    @classmethod
    def from_file(cls, path: Path = VMLINUX) -> Btf:
        return cls(path.read_bytes())

    def _walk(self) -> tuple[list[int], bytes]:
        """Where each type's record starts, and each type's name offset (u32s, packed).

        Index 0 (void) has neither. The packed names let `find` search in C.
        """
        fixed = [_FIXED_EXTRA.get(k, 0) for k in range(32)]
        per_entry = [_PER_ENTRY.get(k, 0) for k in range(32)]
        raw, unpack, end = self._types_raw, _TYPE.unpack_from, len(self._types_raw)
        offsets, names, offset = [-1], array("I", [0]), 0
        while offset + _TYPE.size <= end:
            offsets.append(offset)
            name_off, info, _ = unpack(raw, offset)
            names.append(name_off)
            kind = (info >> 24) & 0x1F
            offset += _TYPE.size + fixed[kind] + per_entry[kind] * (info & 0xFFFF)
        if offset != end:
            raise BtfError("BTF type section ends inside a type")
        return offsets, names.tobytes()

    def _type(self, type_id: int) -> _Type:
        if type_id <= 0 or type_id >= len(self._offsets):
            return _Type(0, 0, 0, False, 0, -1)
        offset = self._offsets[type_id]
        name_off, info, size_or_type = _TYPE.unpack_from(self._types_raw, offset)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        return _Type(kind, name_off, vlen, bool(info >> 31), size_or_type, offset)

    def name(self, name_off: int) -> str:
        end = self._strings.find(b"\0", name_off)
        return self._strings[name_off : end if end >= 0 else None].decode(errors="replace")

    def find(self, kind: Kind, name: str) -> int | None:
        """The id of the first type of `kind` called `name`."""
        name_off = self._string_offset(name.encode())
        if name_off is None:
            return None
        wanted, at, found = struct.pack("=I", name_off), 0, []
        while (at := self._type_names.find(wanted, at)) >= 0:
            if at % 4 == 0:
                found.append(at // 4)
            at += 1
        for type_id in found:
            if self._type(type_id).kind == kind:
                return type_id
        return None

    def _string_offset(self, text: bytes) -> int | None:
        # The kernel's BTF holds each string once (pahole deduplicates them).
        if self._strings.startswith(text + b"\0"):
            return 0
        at = self._strings.find(b"\0" + text + b"\0")
        return at + 1 if at >= 0 else None

    def member_offset(self, struct_name: str, member: str) -> int | None:
        """Byte offset of `member` in `struct struct_name`, looking into anonymous members."""
        type_id = self.find(Kind.STRUCT, struct_name)
        return None if type_id is None else self._member_bits(type_id, member, 0, 0)

    def _member_bits(self, type_id: int, member: str, base_bits: int, depth: int) -> int | None:
        t = self._type(type_id)
        if t.kind not in (Kind.STRUCT, Kind.UNION) or depth > 8:
            return None
        for i in range(t.vlen):
            at = t.offset + _TYPE.size + i * _MEMBER.size
            name_off, member_type, offset = _MEMBER.unpack_from(self._types_raw, at)
            bits = base_bits + (offset & 0xFFFFFF if t.kind_flag else offset)
            name = self.name(name_off)
            if name == member:
                return bits // 8 if bits % 8 == 0 else None
            if not name:
                found = self._member_bits(self._resolve(member_type), member, bits, depth + 1)
                if found is not None:
                    return found
        return None

    def _resolve(self, type_id: int) -> int:
        """Follows typedefs and qualifiers to the type they name."""
        for _ in range(16):
            t = self._type(type_id)
            if t.kind not in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT):
                break
            type_id = t.size_or_type
        return type_id
