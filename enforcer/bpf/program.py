"""The exec program in the kernel: compiled, loaded, attached; its maps handed to its parts.

The program comes compiled from loader.py (the cache, or a compile in a child
process); its maps are read and written by fd (maps.py), each through the
part whose concern it is: `rules` (rule_banks.py), `counters` (counters.py),
`held` (held_map.py) and `events` (event_reader.py). No bcc in this process.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from enforcer.bpf import abi, loader, syscall
from enforcer.bpf.compiled import (
    DEFAULT_CACHE_DIR,
    PINNED_MAPS,
    PROGRAM_KEY,
    CompiledObject,
    ctype_of,
)
from enforcer.bpf.config import ProgramConfig
from enforcer.bpf.counters import Counters
from enforcer.bpf.event_reader import EventReader
from enforcer.bpf.held_map import HeldMap
from enforcer.bpf.links import Attachment, LinkError
from enforcer.bpf.maps import Map
from enforcer.bpf.pins import Reusable
from enforcer.bpf.rule_banks import RuleBanks
from enforcer.containers.namespaces import host_mount_namespace
from enforcer.errors import BpfLoadError
from enforcer.kernel.backends import Backend
from enforcer.kernel.btf import VMLINUX
from enforcer.kernel.facts import KPROBE_PASS_FUNCTION, current_layout, has_prepare_exec

log = logging.getLogger(__name__)

SOURCE = abi.BPF_DIR / "exec_enforcer.c"


@dataclass(frozen=True)
class LoadInfo:
    backend: Backend
    ring_buffer: bool
    load_seconds: float  # the compile (in a child process, unless cached) and the load
    program_ids: tuple[int, ...]
    from_cache: bool


class ExecProgram:
    """The compiled, attached exec hook, and the parts that read and write its maps.

    With a pin_dir, its hooks are attached through BPF links (`links`) that
    the daemon pins, so the program can outlive the process; it then decides
    execs only once made the generation in force (`held.take_over`).

    `reuse` is the pin directory of the generation in force (pins.reuse_dir):
    where its program is this very compiled program, nothing is loaded at
    all; its maps are reopened, and it goes on deciding as it did (`reused`).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        ring_buffer: bool,
        trace_all: bool = False,
        pin_dir: Path | None = None,
        cache_dir: Path | None = DEFAULT_CACHE_DIR,
        reuse: Reusable | None = None,
    ) -> None:
        cflags, reads_callers = _cflags(backend, ring_buffer=ring_buffer)
        started = time.monotonic()
        compiled, from_cache = loader.compiled(SOURCE, cflags, cache_dir)
        if pin_dir is not None:
            pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key = compiled.key
        self._programs: dict[str, int] = {}
        self._attachments: dict[str, Attachment] = {}
        reopened = _reopen(compiled, reuse, pin_dir)
        self.reused = reopened is not None
        if reopened is not None:
            self._maps_by_name = reopened
        else:
            self._maps_by_name = loader.load(compiled, pin_dir=pin_dir)
            self._load(compiled, backend)
        self.links = self._persistent_links() if pin_dir is not None and not self.reused else {}
        self.info = LoadInfo(
            backend=backend,
            ring_buffer=ring_buffer,
            load_seconds=time.monotonic() - started,
            program_ids=_linked_program_ids(reuse) if reuse and self.reused else
            tuple(syscall.prog_id(fd) for fd in self._programs.values()),
            from_cache=from_cache,
        )  # fmt: skip
        maps = self._maps_by_name
        config = ProgramConfig(maps["config"])
        self.rules = RuleBanks(maps, config, backend, reads_callers=reads_callers)
        self.counters = Counters(maps)
        self.held = HeldMap(maps["held"], maps["liveness"], config)
        event_type = ctype_of(compiled.event_desc)
        self.events = EventReader(maps["events"], event_type, ring_buffer=ring_buffer)
        if not self.reused:  # a reused program's host set stays in force until the first apply
            instance = 1 + secrets.randbelow(0xFFFFFFFF)
            config.update(host_set_id=abi.NO_SET, host_flags=0, instance=instance)
        config.update(trace_all=trace_all, host_mnt_ns=host_mount_namespace())

    def _load(self, compiled: CompiledObject, backend: Backend) -> None:
        try:
            names = {function.name for function in compiled.functions}
            self._programs = loader.load_programs(compiled, self._maps_by_name, names)
            self._attachments = loader.attach(self._programs, KPROBE_PASS_FUNCTION)
        except (BpfLoadError, LinkError) as e:
            self._close_kernel_objects()
            raise BpfLoadError(
                f"cannot load {SOURCE.name} with the {backend} backend: {e}. Run `enforcer "
                "doctor`, and try another backend with `enforcer run --backend kprobe` or "
                "`--backend tracepoint`."
            ) from e

    def generation_maps(self) -> dict[str, int]:
        """The maps of this program alone, by name: pinned for a next daemon to reuse."""
        return {name: m.fd for name, m in self._maps_by_name.items() if name not in PINNED_MAPS}

    def _persistent_links(self) -> dict[str, int]:
        """The hooks' links, for the daemon to pin: {hook: link fd}.

        Where the kernel attached a program by a perf event instead (no BPF
        links for it, Linux < 5.15), nothing can be pinned: {}.
        """
        if all(a.pinnable for a in self._attachments.values()):
            return {hook: a.fd for hook, a in self._attachments.items()}
        log.warning(
            "this kernel cannot attach %s through BPF links that outlive the daemon "
            "(Linux 5.15 or later can): enforcement stops while the daemon is not running",
            ", ".join(h for h, a in self._attachments.items() if not a.pinnable),
        )
        return {}

    def close(self) -> None:
        """Closes this process's hold on the program; pinned links keep it attached."""
        self.events.close()
        self._close_kernel_objects()

    def _close_kernel_objects(self) -> None:
        for attachment in self._attachments.values():
            os.close(attachment.fd)
        for fd in self._programs.values():
            os.close(fd)
        for bpf_map in self._maps_by_name.values():
            bpf_map.close()
        self.links, self._attachments, self._programs, self._maps_by_name = {}, {}, {}, {}


def _reopen(
    compiled: CompiledObject, reuse: Reusable | None, pin_dir: Path | None
) -> dict[str, Map] | None:
    """The maps of the program in force, where it is `compiled` and was pinned whole."""
    if reuse is None or pin_dir is None or reuse.key != compiled.key:
        return None  # nothing to reuse; or another version's program, or other flags
    return loader.reopen(compiled, reuse.maps_dir, pin_dir)


def _linked_program_ids(reuse: Reusable) -> tuple[int, ...]:
    ids = []
    for pin in reuse.directory.iterdir():
        if pin.is_file() and pin.name != PROGRAM_KEY:
            fd = syscall.obj_get(pin)
            try:
                ids.append(syscall.link_prog_id(fd))
            finally:
                os.close(fd)
    return tuple(ids)


def _cflags(backend: Backend, *, ring_buffer: bool) -> tuple[list[str], bool]:
    """The compile's flags for `backend`, and whether its program reads the calling program."""
    cflags = [f"-I{abi.BPF_DIR}", *_layout_cflags()]
    if backend is Backend.KPROBE:
        cflags.append("-DBACKEND_KPROBE")
    if backend is Backend.LSM:
        cflags.append("-DBACKEND_LSM")
    if not ring_buffer:
        cflags.append("-DUSE_PERF_BUFFER")
    prepare_exec = backend is Backend.TRACEPOINT and has_prepare_exec()
    if prepare_exec:
        cflags.append("-DHAS_PREPARE_EXEC")
    return cflags, backend is not Backend.TRACEPOINT or prepare_exec


def _layout_cflags() -> list[str]:
    layout = current_layout()
    if layout is None or not layout.complete:
        missing = ", ".join(layout.missing) if layout else "every struct"
        raise BpfLoadError(
            "the exec program reads the file that runs at struct offsets from the kernel's BTF, "
            f"and {VMLINUX} is missing or does not describe {missing}; run `enforcer doctor`"
        )
    return layout.cflags()
