"""The compiled exec program as data: its maps, its functions' instructions, a cache.

bcc compiles C at every start, and the compile is most of a start (LLVM, two
to three seconds here, minutes under emulation). What it produces depends
only on the C sources, the -D flags, the running kernel (its tracepoint
formats) and bcc: keyed by those, it is kept in a cache directory and loaded
again with BPF_PROG_LOAD (bpf_loader.py), without bcc or LLVM in the daemon.

Instructions refer to maps by file descriptor (BPF_LD_IMM64 with
BPF_PSEUDO_MAP_FD); the compile records which instruction names which map,
so that a load patches in the fds of the maps it made or reopened.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.bpf import abi
from enforcer.errors import EnforcerError

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("/var/cache/enforcer/bpf")
# Bumped when what is written here changes shape.
FORMAT = 1


class CompiledObjectError(EnforcerError):
    """A compiled object could not be read back (an older format, or damaged)."""


@dataclass(frozen=True)
class MapSpec:
    name: str
    map_type: int  # enum bpf_map_type
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    key_desc: Any  # bcc's JSON description of the key and value types
    value_desc: Any


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # as bcc names it: its prefix says the hook (bpf_loader.hook_of)
    insns: bytes
    map_refs: tuple[tuple[int, str], ...]  # (instruction index, map name)


@dataclass(frozen=True)
class CompiledObject:
    key: str
    license: str
    maps: tuple[MapSpec, ...]
    functions: tuple[FunctionSpec, ...]
    event_desc: Any  # the event buffer's record, as a bcc type description

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT,
            "key": self.key,
            "license": self.license,
            "maps": [vars(m) for m in self.maps],
            "functions": [
                {"name": f.name, "insns": base64.b64encode(f.insns).decode(),
                 "map_refs": [list(ref) for ref in f.map_refs]}
                for f in self.functions
            ],
            "event_desc": self.event_desc,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> CompiledObject:
        try:
            raw = json.loads(text)
            if raw["format"] != FORMAT:
                raise CompiledObjectError(f"format {raw['format']}, not {FORMAT}")
            return cls(
                key=raw["key"],
                license=raw["license"],
                maps=tuple(MapSpec(**m) for m in raw["maps"]),
                functions=tuple(
                    FunctionSpec(
                        name=f["name"],
                        insns=base64.b64decode(f["insns"]),
                        map_refs=tuple((int(i), str(name)) for i, name in f["map_refs"]),
                    )
                    for f in raw["functions"]
                ),
                event_desc=raw["event_desc"],
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CompiledObjectError(f"not a compiled object: {e}") from e

    def map_spec(self, name: str) -> MapSpec:
        for spec in self.maps:
            if spec.name == name:
                return spec
        raise KeyError(name)


def cache_key(source: Path, cflags: list[str]) -> str:
    """What the compile's output depends on, hashed."""
    digest = hashlib.sha256()
    for path in sorted(source.parent.glob("*.[ch]")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    uname = os.uname()
    for part in (*cflags, uname.release, uname.version, uname.machine, _bcc_version()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:32]


def _bcc_version() -> str:
    # Read, not imported: importing bcc maps LLVM into this process.
    spec = importlib.util.find_spec("bcc")
    if spec is None or spec.origin is None:
        return "no bcc"
    try:
        return (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return "unknown bcc"


def cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"exec_enforcer-{key}.json"


def read_cached(cache_dir: Path, key: str) -> CompiledObject | None:
    path = cache_path(cache_dir, key)
    try:
        compiled = CompiledObject.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, CompiledObjectError) as e:
        log.warning("ignoring the compiled program cached in %s (%s): compiling again", path, e)
        return None
    return compiled if compiled.key == key else None


def write_cached(cache_dir: Path, compiled: CompiledObject) -> Path:
    """Writes atomically (a reader sees the old file or the whole new one)."""
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = cache_path(cache_dir, compiled.key)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".compile-")
    with os.fdopen(fd, "w") as out:
        out.write(compiled.to_json())
    os.replace(tmp, path)
    for stale in cache_dir.glob("exec_enforcer-*.json"):
        if stale != path:
            stale.unlink(missing_ok=True)  # another version's or kernel's: one entry kept
    return path


_SCALARS: dict[str, Any] = {
    "_Bool": ctypes.c_bool,
    "char": ctypes.c_char,
    "signed char": ctypes.c_byte,
    "unsigned char": ctypes.c_ubyte,
    "short": ctypes.c_short,
    "unsigned short": ctypes.c_ushort,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long,
    "unsigned long": ctypes.c_ulong,
    "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong,
}


def ctype_of(desc: Any) -> Any:
    """The ctypes type of a bcc type description.

    The forms: a scalar's C name; [name, [field, ...], "struct"|"union"|
    "struct_packed"], each field [name, type] or [name, type, [count]] (an
    array) or [name, type, bits] (a bit field) or a nested description.
    """
    if isinstance(desc, str):
        if desc not in _SCALARS:
            raise CompiledObjectError(f"unknown scalar type {desc!r} in a map description")
        return _SCALARS[desc]
    name, fields, *kind = desc
    anonymous: list[str] = []
    members: list[tuple[Any, ...]] = []
    for field in fields:
        if len(field) == 3 and isinstance(field[2], str):  # a nested struct or union
            member = field[0] or f"__anon{len(anonymous)}"
            if not field[0]:
                anonymous.append(member)
            members.append((member, ctype_of(field)))
        elif len(field) == 3 and isinstance(field[2], list):
            members.append((field[0], ctype_of(field[1]) * field[2][0]))
        elif len(field) == 3:
            members.append((field[0], ctype_of(field[1]), field[2]))
        else:
            members.append((field[0], ctype_of(field[1])))
    kind_name = kind[0] if kind else "struct"
    base = ctypes.Union if kind_name == "union" else ctypes.Structure
    body: dict[str, Any] = {"_anonymous_": anonymous, "_fields_": members}
    if kind_name == "struct_packed":
        body["_pack_"] = 1
    return type(str(name), (base,), body)


def describe(ctype: Any) -> Any:
    """A ctypes structure as a bcc type description: the inverse of ctype_of."""
    for name, scalar in _SCALARS.items():
        if ctype is scalar:
            return name
    if issubclass(ctype, ctypes.Array):
        return [describe(ctype._type_), [ctype._length_]]
    fields = []
    for field in ctype._fields_:
        member, member_type = field[0], field[1]
        inner = describe(member_type)
        if issubclass(member_type, ctypes.Array):
            fields.append([member, *inner])
        else:
            fields.append([member, inner])
    return [ctype.__name__, fields, "struct"]


# In a generation's pin directory (pins.py): its own maps, and its compiled
# program's key, which says whether a next daemon may reuse it as it is.
GENERATION_MAPS = "maps"
PROGRAM_KEY = "program-key"
PINNED_MAPS = {
    "counters": "counters",
    "held": abi.HELD_PIN,
    "liveness": "liveness",
    "last_counted": "last-counted",
}
"""Maps every generation of the program shares, by their pin's name (pins.py)."""
