"""Loads a CompiledObject into the kernel: its maps, its programs, their hooks.

No bcc. A cache miss is compiled in a child process (bpf_compile.py) and the
result loaded from the cache like any hit, so there is one way in.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from enforcer.bpf import syscall
from enforcer.bpf.compiled import (
    PINNED_MAPS,
    CompiledObject,
    MapSpec,
    cache_key,
    ctype_of,
    read_cached,
)
from enforcer.bpf.links import Attachment, attach_kprobe, attach_raw_tracepoint, attach_tracepoint
from enforcer.bpf.maps import Map
from enforcer.errors import BpfLoadError
from enforcer.kernel.btf import Kind
from enforcer.kernel.facts import read_btf
from enforcer.kernel.mounts import tracefs_root

log = logging.getLogger(__name__)

# How long a compile may take: minutes under emulation.
COMPILE_TIMEOUT_S = 900


@dataclass(frozen=True)
class Hook:
    """Where a function attaches, from its name (bcc's naming)."""

    prog_type: int
    kind: str  # "tracepoint", "raw_tracepoint", "lsm", "kprobe"
    target: str  # "category:event", the raw tracepoint, the LSM hook, or ""

    @classmethod
    def of(cls, function: str) -> Hook:
        if function.startswith("raw_tracepoint__"):
            tracepoint = function.removeprefix("raw_tracepoint__")
            return cls(syscall.PROG_TYPE_RAW_TRACEPOINT, "raw_tracepoint", tracepoint)
        if function.startswith("tracepoint__"):
            category, event = function.removeprefix("tracepoint__").split("__", 1)
            return cls(syscall.PROG_TYPE_TRACEPOINT, "tracepoint", f"{category}:{event}")
        if function.startswith("lsm__"):
            return cls(syscall.PROG_TYPE_LSM, "lsm", function.removeprefix("lsm__"))
        return cls(syscall.PROG_TYPE_KPROBE, "kprobe", "")


def compiled(
    source: Path, cflags: list[str], cache_dir: Path | None
) -> tuple[CompiledObject, bool]:
    """The compiled program, and whether the cache had it."""
    key = cache_key(source, cflags)
    if cache_dir is not None and (hit := read_cached(cache_dir, key)) is not None:
        return hit, True
    with tempfile.TemporaryDirectory(prefix="enforcer-compile-") as scratch:
        target = cache_dir if cache_dir is not None and _writable(cache_dir) else Path(scratch)
        _compile_in_child(target, key, source, cflags)
        result = read_cached(target, key)
    if result is None:
        raise BpfLoadError(f"the compile of {source.name} wrote nothing readable to {target}")
    return result, False


def _writable(cache_dir: Path) -> bool:
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        log.warning("cannot keep the compiled program in %s (%s): compiling at every start",
                    cache_dir, e.strerror)  # fmt: skip
        return False
    return os.access(cache_dir, os.W_OK)


def _compile_in_child(cache_dir: Path, key: str, source: Path, cflags: list[str]) -> None:
    command = [sys.executable, "-m", "enforcer.bpf.bcc_build", str(cache_dir), key, str(source)]
    command += cflags
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise BpfLoadError(f"the compile of {source.name} took over {COMPILE_TIMEOUT_S} s") from e
    if done.returncode != 0:
        raise BpfLoadError(
            f"{done.stderr.strip() or f'the compiler exited with {done.returncode}'}. Check that "
            "kernel headers are installed (`make setup`) and run `enforcer doctor`"
        )


def load(obj: CompiledObject, *, pin_dir: Path | None) -> dict[str, Map]:
    """Makes the object's maps; those shared by generations reopened from pin_dir."""
    made: dict[str, Map] = {}
    try:
        for spec in obj.maps:
            pin = pin_dir / PINNED_MAPS[spec.name] if pin_dir and spec.name in PINNED_MAPS else None
            fd = _pinned_map(pin, spec) if pin is not None else None
            if fd is None:
                fd = syscall.map_create(
                    spec.map_type, key_size=spec.key_size, value_size=spec.value_size,
                    max_entries=spec.max_entries, flags=spec.flags, name=spec.name,
                )  # fmt: skip
                if pin is not None:
                    syscall.obj_pin(fd, pin)
            made[spec.name] = _map(spec, fd)
    except OSError as e:
        for bpf_map in made.values():
            bpf_map.close()
        raise BpfLoadError(f"cannot create the program's map {spec.name}: {e.strerror}") from e
    return made


def reopen(obj: CompiledObject, maps_dir: Path, pin_dir: Path) -> dict[str, Map] | None:
    """The maps of a loaded program of this object, from their pins; None if any is amiss."""
    found: dict[str, Map] = {}
    for spec in obj.maps:
        shared = PINNED_MAPS.get(spec.name)
        pin = pin_dir / shared if shared else maps_dir / spec.name
        try:
            fd = syscall.obj_get(pin)
        except OSError:
            fd = None
        if fd is not None and not _same_layout(fd, spec):
            os.close(fd)
            fd = None
        if fd is None:
            for bpf_map in found.values():
                bpf_map.close()
            return None
        found[spec.name] = _map(spec, fd)
    return found


def _map(spec: MapSpec, fd: int) -> Map:
    key_type = ctype_of(spec.key_desc) if spec.key_desc else None
    value_type = ctype_of(spec.value_desc) if spec.value_desc else None
    return Map(spec.name, fd, key_type, value_type, spec.map_type)


def _same_layout(fd: int, spec: MapSpec) -> bool:
    info = syscall.map_info(fd)
    wanted = (spec.map_type, spec.key_size, spec.value_size, spec.max_entries)
    return (info.map_type, info.key_size, info.value_size, info.max_entries) == wanted


def _pinned_map(pin: Path, spec: MapSpec) -> int | None:
    """The pinned map, if it has this layout; one of another layout is replaced."""
    try:
        fd = syscall.obj_get(pin)
    except FileNotFoundError:
        return None
    if _same_layout(fd, spec):
        return fd
    os.close(fd)
    log.warning("the map pinned at %s has another layout: replacing it", pin)
    pin.unlink()
    return None


def load_programs(obj: CompiledObject, maps: dict[str, Map], only: set[str]) -> dict[str, int]:
    """Loads the functions named in `only` through the verifier: {name: fd}."""
    loaded: dict[str, int] = {}
    try:
        for function in obj.functions:
            if function.name not in only:
                continue
            insns = bytearray(function.insns)
            for index, map_name in function.map_refs:
                struct.pack_into("=i", insns, index * 8 + 4, maps[map_name].fd)
            hook = Hook.of(function.name)
            attach_type, btf_id = (0, 0)
            if hook.kind == "lsm":
                attach_type, btf_id = syscall.ATTACH_LSM_MAC, _lsm_btf_id(hook.target)
            loaded[function.name] = syscall.prog_load(
                hook.prog_type, bytes(insns), function.name, license_=obj.license,
                expected_attach_type=attach_type, attach_btf_id=btf_id,
            )  # fmt: skip
    except (OSError, syscall.ProgramRejectedError) as e:
        for fd in loaded.values():
            os.close(fd)
        raise BpfLoadError(f"cannot load {function.name}: {e}") from e
    return loaded


def _lsm_btf_id(hook: str) -> int:
    btf = read_btf()
    btf_id = btf.find(Kind.FUNC, f"bpf_lsm_{hook}") if btf is not None else None
    if btf_id is None:
        raise BpfLoadError(f"the kernel's BTF has no LSM hook {hook} (bpf_lsm_{hook})")
    return btf_id


def attach(programs: dict[str, int], kprobe_function: str) -> dict[str, Attachment]:
    """Attaches every program to its hook: {hook name: attachment}."""
    made: dict[str, Attachment] = {}
    try:
        for name, fd in programs.items():
            hook = Hook.of(name)
            if hook.kind == "tracepoint":
                category, event = hook.target.split(":")
                made[hook.target] = attach_tracepoint(fd, tracefs_root(), category, event)
            elif hook.kind == "raw_tracepoint":
                made[hook.target] = attach_raw_tracepoint(fd, hook.target)
            elif hook.kind == "lsm":
                made[name] = attach_raw_tracepoint(fd, None)
            else:
                made[kprobe_function] = attach_kprobe(fd, kprobe_function)
    except Exception:
        for attachment in made.values():
            os.close(attachment.fd)
        raise
    return made
