"""The daemon's bpffs directory: pinned maps, pinned links per generation, one owner.

Layout (default /sys/fs/bpf/enforcer):
    counters, held-3, liveness maps every generation of the program shares
                               (the held map's name changes with its layout)
    links-<N>/<hook>           the links that keep generation N attached
    links-<N>/maps/<map>       its own maps, and links-<N>/program-key, the key
                               of its compiled program (bpf_object.cache_key)

A start whose compiled program is the one generation N runs reuses it as it
is: its maps are reopened, nothing is loaded, and N stays in force. Any other
start of the daemon loads generation N+1 beside the N still enforcing
and, once its maps are full, makes it the one in force and removes links-N:
the old program leaves the kernel only after the new one decides. Links of a
generation that never came into force (a start that died half-way) are
removed at the next start.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from enforcer.bpf import abi, links, syscall
from enforcer.bpf.compiled import GENERATION_MAPS, PROGRAM_KEY
from enforcer.bpf.maps import open_pinned
from enforcer.errors import EnforcerError
from enforcer.service.locks import try_lock

log = logging.getLogger(__name__)

_LINKS = re.compile(r"links-(\d+)")


class PinDirBusyError(EnforcerError):
    """Another enforcer daemon already uses this pin directory."""


@dataclass(frozen=True)
class Unloaded:
    generations: tuple[int, ...]  # whose links were removed
    released: int  # held execs let go


@dataclass(frozen=True)
class Reusable:
    """A generation's pin directory and the key of the program it runs."""

    directory: Path
    key: str

    @property
    def maps_dir(self) -> Path:
        return self.directory / GENERATION_MAPS


# bpffs holds BPF objects only: the key is the value of a one-entry array map.
_KEY_SIZE = 64
_MAP_TYPE_ARRAY = 2


def _pin_key(path: Path, key: str) -> None:
    fd = syscall.map_create(_MAP_TYPE_ARRAY, key_size=4, value_size=_KEY_SIZE,
                                max_entries=1, flags=0, name="program_key")  # fmt: skip
    try:
        value = ctypes.create_string_buffer(key.encode(), _KEY_SIZE)
        syscall.map_update(fd, ctypes.c_uint32(0), value)
        links.pin(fd, path)
    finally:
        os.close(fd)


def _pinned_key(path: Path) -> str | None:
    try:
        fd = syscall.obj_get(path)
    except OSError:
        return None
    try:
        if syscall.map_info(fd).value_size != _KEY_SIZE:
            return None
        value = ctypes.create_string_buffer(_KEY_SIZE)
        found = syscall.map_lookup(fd, ctypes.c_uint32(0), value)
        return value.value.decode(errors="replace") if found else None
    finally:
        os.close(fd)


class PinDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    def lock(self) -> None:
        """Makes this process the directory's only user, until it exits."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = try_lock(self.path, directory=True)
        if fd is None:
            raise PinDirBusyError(
                f"another enforcer daemon is running with --pin-dir {self.path}: stop it "
                "first (`systemctl stop enforcer`), or give this one a --pin-dir of its own"
            )
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def links_dir(self, generation: int) -> Path:
        return self.path / f"links-{generation}"

    def generations(self) -> list[int]:
        """Generations that have links pinned here."""
        if not self.path.is_dir():
            return []
        return sorted(
            int(m[1]) for entry in self.path.iterdir() if (m := _LINKS.fullmatch(entry.name))
        )

    def pin_links(
        self, generation: int, link_fds: dict[str, int], map_fds: dict[str, int], key: str
    ) -> None:
        """Pins a generation's links, and its own maps for a next daemon to reuse.

        The links are pinned first and the program key last: a directory
        with a key is whole (reuse_dir).
        """
        directory = self.links_dir(generation)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700)
        for name, fd in link_fds.items():
            links.pin(fd, directory / name)
        (directory / GENERATION_MAPS).mkdir(mode=0o700)
        for name, fd in map_fds.items():
            links.pin(fd, directory / GENERATION_MAPS / name)
        _pin_key(directory / PROGRAM_KEY, key)

    def live_generation(self) -> int:
        """The generation in force, as the pinned liveness map says; 0 if none."""
        try:
            liveness = open_pinned(self.path / "liveness", ctypes.c_uint32, ctypes.c_uint64)
        except FileNotFoundError:
            return 0
        with closing(liveness):
            return int(liveness[ctypes.c_uint32(abi.LIVE_GENERATION)].value)

    def reusable(self, generation: int) -> Reusable | None:
        """`generation`'s program, if it was pinned whole: see ExecProgram."""
        directory = self.links_dir(generation)
        key = _pinned_key(directory / PROGRAM_KEY)
        return Reusable(directory, key) if key is not None else None

    def remove_links(self, keep: int | None = None) -> list[int]:
        """Removes every generation's links but `keep`'s: those programs leave the kernel."""
        removed = [g for g in self.generations() if g != keep]
        for generation in removed:
            shutil.rmtree(self.links_dir(generation))
        return removed

    def unload(self) -> Unloaded:
        """Ends enforcement by programs no daemon runs: their links go, held execs go on."""
        self.lock()
        try:
            removed = self.remove_links()
            return Unloaded(tuple(removed), self._release_held() + self.release_legacy_held())
        finally:
            self.unlock()

    def release_legacy_held(self) -> int:
        """Lets go of the execs an older daemon's held map (another layout) still holds.

        This daemon cannot read them to decide them: they go on, as `enforcer
        unload` lets them, and the old map's pin is removed.
        """
        released = 0
        for name in abi.LEGACY_HELD_PINS:
            count = self._release_held(name)
            if count:
                log.warning("let go of %d execs held by an older version's program", count)
            released += count
            (self.path / name).unlink(missing_ok=True)
        return released

    def _release_held(self, name: str = abi.HELD_PIN) -> int:
        try:
            held = open_pinned(self.path / name, ctypes.c_uint32)
        except FileNotFoundError:
            return 0
        with closing(held):
            pids = list(held)
            for pid in pids:
                try:
                    os.kill(pid.value, signal.SIGCONT)
                except ProcessLookupError:
                    log.debug("held pid %d is gone already", pid.value)
                with suppress(KeyError):  # gone from the map already
                    del held[pid]
            return len(pids)
