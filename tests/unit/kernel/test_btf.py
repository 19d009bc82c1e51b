"""Reading function ids and struct member offsets from a BTF blob built here."""

from __future__ import annotations

import struct

import pytest

from enforcer.kernel.btf import MAGIC, Btf, BtfError, Kind


class BlobBuilder:
    """Writes BTF the way the kernel lays it out: header, type records, strings."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: Kind, name: str, vlen: int, size_or_type: int, extra: bytes = b"") -> int:
        info = (int(kind) << 24) | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        self.count += 1
        return self.count

    def int_type(self, name: str, size: int) -> int:
        return self.add(Kind.INT, name, 0, size, struct.pack("<I", size * 8))

    def struct(self, kind: Kind, name: str, members: list[tuple[str, int, int]], size: int) -> int:
        extra = b"".join(struct.pack("<III", self.name(m), t, bits) for m, t, bits in members)
        return self.add(kind, name, len(members), size, extra)

    def blob(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", MAGIC, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + bytes(self.types) + bytes(self.strings)


@pytest.fixture
def btf() -> Btf:
    b = BlobBuilder()
    long_id = b.int_type("long", 8)
    char_id = b.int_type("char", 1)
    char_ptr = b.add(Kind.PTR, "", 0, char_id)
    const_ptr = b.add(Kind.CONST, "", 0, char_ptr)
    names = b.struct(Kind.UNION, "", [("interp", const_ptr, 0), ("alias", long_id, 0)], 8)
    names_typedef = b.add(Kind.TYPEDEF, "names_t", 0, names)
    b.struct(
        Kind.STRUCT,
        "linux_binprm",
        [("argc", long_id, 0), ("filename", const_ptr, 64), ("", names_typedef, 128)],
        24,
    )
    proto = b.add(Kind.FUNC_PROTO, "", 1, long_id, struct.pack("<II", 0, char_ptr))
    b.add(Kind.FUNC, "bpf_lsm_bprm_check_security", 0, proto)
    b.add(Kind.ENUM, "e", 2, 4, struct.pack("<IiIi", b.name("A"), 1, b.name("B"), 2))
    b.add(Kind.FUNC, "later", 0, proto)
    return Btf(b.blob())


def test_finds_a_function_by_name_past_types_of_every_size(btf: Btf) -> None:
    assert btf.find(Kind.FUNC, "bpf_lsm_bprm_check_security") == 9
    assert btf.find(Kind.FUNC, "later") == 11
    assert btf.find(Kind.FUNC, "bpf_lsm_file_open") is None
    assert btf.find(Kind.STRUCT, "bpf_lsm_bprm_check_security") is None


def test_member_offsets_in_bytes_also_inside_anonymous_members(btf: Btf) -> None:
    assert btf.member_offset("linux_binprm", "argc") == 0
    assert btf.member_offset("linux_binprm", "filename") == 8
    assert btf.member_offset("linux_binprm", "interp") == 16
    assert btf.member_offset("linux_binprm", "fdpath") is None
    assert btf.member_offset("task_struct", "pid") is None


def test_rejects_what_is_not_btf() -> None:
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\0" * 64)
    with pytest.raises(BtfError):
        Btf(b"\x9f\xeb")
    b = BlobBuilder()
    b.int_type("long", 8)
    with pytest.raises(BtfError, match="truncated"):
        Btf(b.blob()[:-3])
