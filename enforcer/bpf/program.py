"""The exec program in the kernel: load, attach, fill its maps, read them back.

The program comes compiled from bpf_loader (the cache, or a compile in a
child process); its maps are read and written by fd (bpf_maps), its events
through libbpf (bpf_events). No bcc in this process.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.bpf import abi, loader, syscall
from enforcer.bpf.abi import Action, EventKind
from enforcer.bpf.compiled import (
    DEFAULT_CACHE_DIR,
    PINNED_MAPS,
    PROGRAM_KEY,
    CompiledObject,
    ctype_of,
)
from enforcer.bpf.events import EventBuffer
from enforcer.bpf.links import Attachment, LinkError
from enforcer.bpf.maps import Map
from enforcer.bpf.pins import Reusable
from enforcer.bpf.records import Caller, CounterKey, HeldExec, KernelEvent
from enforcer.containers.namespaces import host_mount_namespace
from enforcer.enforce.conditions import CallerEntry
from enforcer.enforce.map_contents import GROUP_POLICY_ID, Hit, MapContents
from enforcer.errors import BpfLoadError, MapWriteError
from enforcer.kernel import backends
from enforcer.kernel.backends import KPROBE_PASS_FUNCTION, Backend
from enforcer.kernel.btf import VMLINUX

log = logging.getLogger(__name__)

SOURCE = abi.BPF_DIR / "exec_enforcer.c"
# Set ids alternate between two banks so a new policy set is complete in the
# maps before any cgroup is pointed at it (see ExecProgram.apply).
BANK_BASES = (0, 1 << 31)
# Most events handled per poll_events call.
EVENT_BATCH = 256


@dataclass(frozen=True)
class LoadInfo:
    backend: Backend
    ring_buffer: bool
    load_seconds: float  # the compile (in a child process, unless cached) and the load
    program_ids: tuple[int, ...]
    from_cache: bool


class ExecProgram:
    """The compiled, attached exec hook and its maps.

    With a pin_dir, its hooks are attached through BPF links (`links`) that
    the daemon pins, so the program can outlive the process; it then decides
    execs only once made the generation in force (`take_over`).

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
        cflags = [f"-I{abi.BPF_DIR}", *_layout_cflags()]
        if backend is Backend.KPROBE:
            cflags.append("-DBACKEND_KPROBE")
        if backend is Backend.LSM:
            cflags.append("-DBACKEND_LSM")
        if not ring_buffer:
            cflags.append("-DUSE_PERF_BUFFER")
        prepare_exec = backend is Backend.TRACEPOINT and backends.has_prepare_exec()
        if prepare_exec:
            cflags.append("-DHAS_PREPARE_EXEC")
        self._reads_callers = backend is not Backend.TRACEPOINT or prepare_exec
        started = time.monotonic()
        compiled, from_cache = loader.compiled(SOURCE, cflags, cache_dir)
        if pin_dir is not None:
            pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key = compiled.key
        self._programs: dict[str, int] = {}
        self._attachments: dict[str, Attachment] = {}
        self._events: EventBuffer | None = None
        reopened = _reopen(compiled, reuse, pin_dir)
        self.reused = reopened is not None
        if reopened is not None:
            self._maps_by_name = reopened
        else:
            self._maps_by_name = loader.load(compiled, pin_dir=pin_dir)
            self._load(compiled, backend)
        self.links = self._persistent_links() if pin_dir is not None and not self.reused else {}
        self._event_type = ctype_of(compiled.event_desc)
        self.info = LoadInfo(
            backend=backend,
            ring_buffer=ring_buffer,
            load_seconds=time.monotonic() - started,
            program_ids=_linked_program_ids(reuse) if reuse and self.reused else
            tuple(syscall.prog_id(fd) for fd in self._programs.values()),
            from_cache=from_cache,
        )  # fmt: skip
        self._uncounted = 0  # the daemon's own counts that found the counters map full
        self._batch_left = EVENT_BATCH
        self._maps = MapContents(cgroup_sets={}, host_set_id=abi.NO_SET, names={}, paths={})
        if self.reused:
            self._bank = int(self._table("config")[ctypes.c_int(abi.CONFIG_KEY)].bank)
        else:  # a reused program's host set stays in force until the first apply
            self._bank = 0
            instance = 1 + secrets.randbelow(0xFFFFFFFF)
            self._set_config(host_set_id=abi.NO_SET, host_flags=0, instance=instance)
        self._set_config(trace_all=trace_all, host_mnt_ns=host_mount_namespace())

    @property
    def reads_callers(self) -> bool:
        """Whether this program reads the calling program (for calledBy rules)."""
        return self._reads_callers

    def _load(self, compiled: CompiledObject, backend: Backend) -> None:
        try:
            names = {function.name for function in compiled.functions}
            self._programs = loader.load_programs(compiled, self._maps_by_name, names)
            self._attachments = loader.attach(self._programs, KPROBE_PASS_FUNCTION)
        except (BpfLoadError, LinkError) as e:
            self.close()
            raise BpfLoadError(
                f"cannot load {SOURCE.name} with the {backend} backend: {e}. Run `enforcer "
                "doctor`, and try another backend with `enforcer run --backend kprobe` or "
                "`--backend tracepoint`."
            ) from e

    def generation_maps(self) -> dict[str, int]:
        """The maps of this program alone, by name: pinned for a next daemon to reuse."""
        return {name: m.fd for name, m in self._maps_by_name.items() if name not in PINNED_MAPS}

    def _table(self, name: str) -> Map:
        return self._maps_by_name[name]

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

    def _set_config(
        self,
        *,
        host_set_id: int | None = None,
        host_flags: int | None = None,
        host_name_lengths: int | None = None,
        trace_all: bool | None = None,
        hold_new: bool | None = None,
        generation: int | None = None,
        host_mnt_ns: int | None = None,
        bank: int | None = None,
        instance: int | None = None,
        hold_owner: int | None = None,
    ) -> None:
        table = self._table("config")
        value = table[ctypes.c_int(abi.CONFIG_KEY)]
        if host_set_id is not None:
            value.host_set_id = host_set_id
        if host_flags is not None:
            value.host_flags = host_flags
        if host_name_lengths is not None:
            value.host_name_lengths = host_name_lengths
        if trace_all is not None:
            value.trace_all = int(trace_all)
        if hold_new is not None:
            value.hold_new = int(hold_new)
        if generation is not None:
            value.generation = generation
        if host_mnt_ns is not None:
            value.host_mnt_ns = host_mnt_ns
        if bank is not None:
            value.bank = bank
        if instance is not None:
            value.instance = instance
        if hold_owner is not None:
            value.hold_owner = hold_owner
        table[ctypes.c_int(abi.CONFIG_KEY)] = value

    def hold_new_cgroups(self, on: bool) -> None:
        """Whether cgroups created from now on start pending (see exec_enforcer.c)."""
        self._set_config(hold_new=on)

    def end_holding_at_exit(self, tgid: int) -> None:
        """The exit of process `tgid`, however it exits, ends the holding of new cgroups' execs.

        0: no process's exit does (a next daemon settles what is held).
        """
        self._set_config(hold_owner=tgid)

    def _live(self, slot: int) -> int:
        return int(self._table("liveness")[ctypes.c_int(slot)].value)

    def _set_live(self, slot: int, value: int) -> None:
        table = self._table("liveness")
        table[ctypes.c_int(slot)] = table.Leaf(value)

    def live_generation(self) -> int:
        """The generation in force: this program's, or one a previous daemon left."""
        return self._live(abi.LIVE_GENERATION)

    def prepare_generation(self, generation: int) -> None:
        """Gives this program its generation: it follows cgroups now, decides nothing yet."""
        self._set_config(generation=generation)

    def take_over(self, generation: int) -> None:
        """Puts this program in force (`prepare_generation` first); the older one stops."""
        self._set_live(abi.LIVE_GENERATION, generation)

    def keep_holding_until(self, monotonic_ns: int) -> None:
        """New cgroups' execs may be held until then (bpf_ktime_get_ns is CLOCK_MONOTONIC)."""
        self._set_live(abi.LIVE_HOLD_UNTIL, monotonic_ns)

    def unheld_execs(self) -> int:
        """Execs in new cgroups let run because no daemon was alive to settle them."""
        return self._live(abi.LIVE_UNHELD)

    def apply(self, maps: MapContents) -> None:
        """Makes the kernel enforce `maps`, never passing through a state with neither.

        The new rule entries go into the unused set-id bank first, then every
        cgroup is switched to its new set, then the old bank's entries go.
        Each exec sees the old policy set or the new one, whole.
        """
        if self.info.backend is not Backend.LSM and _has_deny(maps):
            log.warning(
                "deny rules kill instead on the %s backend: only the lsm backend can make an "
                "exec fail (run `enforcer doctor` to see why it is not used)",
                self.info.backend,
            )
        bank = 1 - self._bank
        base = BANK_BASES[bank]
        old = {name: self._keys_in_bank(name, self._bank) for name in _RULE_MAPS}
        try:
            self._fill_names(base, maps)
            self._fill_paths(base, maps)
            self.add_inodes(maps.inodes, base, maps)
            self._fill_cut(base, maps)
            self._fill_defaults(base, maps.defaults)
            self._fill_conditions(base, maps)
        except OSError as e:  # the kernel refused a write (bpf_maps.MapUpdateError)
            self._clear_bank(bank)
            raise MapWriteError(
                f"the kernel refused a policy map write ({e}); the policies in force stay. "
                "Check `enforcer status` for what the maps hold"
            ) from e
        in_force, self._maps = self._maps, maps
        cgroups = self._table("cgroup_sets")
        before = {k.value: (v.set_id, v.flags, v.name_lengths) for k, v in cgroups.items()}
        try:
            self._switch_cgroups(base, maps.cgroup_sets)
        except OSError as e:
            self._restore_cgroups(before)
            self._maps = in_force
            self._clear_bank(bank)
            raise MapWriteError(
                f"the kernel refused a cgroup map write ({e}); every cgroup is back on the "
                "policies in force"
            ) from e
        host = maps.host_set_id
        self._set_config(
            host_set_id=_in_bank(base, host),
            host_flags=maps.flags_of(host),
            host_name_lengths=maps.name_lengths_of(host),
            bank=bank,
        )
        for name, keys in old.items():
            _delete_keys(self._table(name), keys)
        self._bank = bank

    def _clear_bank(self, bank: int) -> None:
        """Removes what a failed switch wrote into the unused bank."""
        for name in _RULE_MAPS:
            _delete_keys(self._table(name), self._keys_in_bank(name, bank))

    def _restore_cgroups(self, before: Mapping[int, tuple[int, int, int]]) -> None:
        table = self._table("cgroup_sets")
        for cgroup_id, (set_id, flags, name_lengths) in before.items():
            value = table.Leaf()
            value.set_id, value.flags, value.name_lengths = set_id, flags, name_lengths
            table[ctypes.c_uint64(cgroup_id)] = value

    def _keys_in_bank(self, map_name: str, bank: int) -> list[Any]:
        base = BANK_BASES[bank]
        return [k for k in self._table(map_name) if _set_of_key(k) & BANK_BASES[1] == base]

    def add_inodes(
        self,
        inodes: Mapping[tuple[int, int, int], tuple[Hit, ...]],
        base: int | None = None,
        maps: MapContents | None = None,
    ) -> None:
        """Inode entries into a bank, by default the one in force (a container joining a set)."""
        base = BANK_BASES[self._bank] if base is None else base
        maps = self._maps if maps is None else maps
        table = self._table("rule_inodes")
        for (set_id, dev, ino), hits in inodes.items():
            key = table.Key()
            key.set_id, key.dev, key.ino = base + set_id, dev, ino
            table[key] = _match_value(table, hits, maps, set_id)

    def add_caller_inodes(
        self, inodes: Mapping[tuple[int, int, int], CallerEntry], base: int | None = None
    ) -> None:
        """calledBy inode entries into a bank, by default the one in force."""
        base = BANK_BASES[self._bank] if base is None else base
        table = self._table("caller_inodes")
        for (set_id, dev, ino), entry in inodes.items():
            key = table.Key()
            key.set_id, key.dev, key.ino = base + set_id, dev, ino
            table[key] = table.Leaf(entry.bits, entry.caller_id)

    def _fill_conditions(self, base: int, maps: MapContents) -> None:
        names = self._table("caller_names")
        for (set_id, name), entry in maps.caller_names.items():
            key = names.Key()
            key.set_id = base + set_id
            _set_bytes(key, "name", name.encode())
            names[key] = names.Leaf(entry.bits, entry.caller_id)
        args = self._table("arg_values")
        for (set_id, value), bits in maps.arg_values.items():
            key = args.Key()
            key.set_id = base + set_id
            _set_bytes(key, "arg", value.encode())
            args[key] = args.Leaf(bits)
        paths = self._table("caller_paths")
        for (set_id, path), entry in maps.caller_paths.items():
            paths[_path_key(paths, base + set_id, path)] = paths.Leaf(entry.bits, entry.caller_id)
        self.add_caller_inodes(maps.caller_inodes, base)

    def _fill_cut(self, base: int, maps: MapContents) -> None:
        table = self._table("cut_hits")
        for set_id, hits in maps.cut.items():
            table[ctypes.c_uint32(base + set_id)] = _match_value(table, hits, maps, set_id)

    def _fill_defaults(self, base: int, defaults: Mapping[int, tuple[Hit, ...]]) -> None:
        table = self._table("set_defaults")
        for set_id, hits in defaults.items():
            value = table.Leaf()
            value.count = len(hits)
            for slot, hit in zip(value.hits, hits, strict=False):
                slot.policy_id, slot.rule_id = hit.policy_id, hit.rule_id
                slot.target_id, slot.action = hit.target_id, int(hit.action)
            table[ctypes.c_uint32(base + set_id)] = value

    def _fill_names(self, base: int, maps: MapContents) -> None:
        table = self._table("rule_names")
        for (set_id, name), hits in maps.names.items():
            key = table.Key()
            key.set_id = base + set_id
            key.name = name.encode()
            table[key] = _match_value(table, hits, maps, set_id)

    def _fill_paths(self, base: int, maps: MapContents) -> None:
        table = self._table("rule_paths")
        for (set_id, path), hits in maps.paths.items():
            key = _path_key(table, base + set_id, path)
            table[key] = _match_value(table, hits, maps, set_id)

    def _switch_cgroups(self, base: int, cgroup_sets: Mapping[int, int]) -> None:
        table = self._table("cgroup_sets")
        # Pending cgroups are the lifecycle's to settle (assign_cgroups), not ours.
        stale = [
            k
            for k, v in table.items()
            if k.value not in cgroup_sets and v.set_id != abi.SET_PENDING
        ]
        self._write_cgroups(base, cgroup_sets)
        _delete_keys(table, stale)

    def _write_cgroups(self, base: int, cgroup_sets: Mapping[int, int]) -> None:
        table = self._table("cgroup_sets")
        for cgroup_id, set_id in cgroup_sets.items():
            value = table.Leaf()
            value.set_id = _in_bank(base, set_id)
            value.flags = self._maps.flags_of(set_id)
            value.name_lengths = self._maps.name_lengths_of(set_id)
            table[ctypes.c_uint64(cgroup_id)] = value

    def assign_cgroups(self, cgroup_sets: Mapping[int, int | None]) -> None:
        """Points cgroups at sets of the policy set in force; None makes one a host cgroup."""
        self._write_cgroups(
            BANK_BASES[self._bank], {k: v for k, v in cgroup_sets.items() if v is not None}
        )
        host = [ctypes.c_uint64(k) for k, v in cgroup_sets.items() if v is None]
        _delete_keys(self._table("cgroup_sets"), host)

    def pending_cgroups(self) -> list[int]:
        return [
            k.value for k, v in self._table("cgroup_sets").items() if v.set_id == abi.SET_PENDING
        ]

    def held_execs(self) -> list[HeldExec]:
        return [
            HeldExec(
                pid=k.value,
                cgroup_id=v.cgroup_id,
                set_id=v.set_id,
                path=os.fsdecode(v.path),
                name=os.fsdecode(v.name),
                inode=(v.dev, v.ino),
                flags=v.flags,
                invoked=os.fsdecode(v.invoked),
                interp_name=os.fsdecode(v.interp_name),
                cwd=os.fsdecode(v.cwd),
                caller=Caller(
                    path=os.fsdecode(v.caller.path),
                    name=os.fsdecode(v.caller.name),
                    inode=(v.caller.dev, v.caller.ino),
                    flags=v.caller.flags,
                ),
            )
            for k, v in self._table("held").items()
        ]

    def release_held(self, pid: int) -> None:
        _delete_keys(self._table("held"), [ctypes.c_uint32(pid)])

    def add_counts(self, cgroup_id: int, hits: Iterable[Hit]) -> None:
        """Counts hits decided in userspace (held execs) beside the kernel's own.

        Under keys marked COUNTED_BY_DAEMON, which the kernel never writes: the
        read-then-write here races none of its increments. One caller at a
        time (Lifecycle settles under a lock).
        """
        table = self._table("counters")
        for hit in hits:
            action = int(hit.action) | abi.COUNTED_BY_DAEMON
            key = table.Key(
                cgroup_id, hit.policy_id, hit.rule_id, hit.target_id, action, hit.caller_id
            )
            current = table.get(key)
            try:
                table[key] = table.Leaf(current.value + 1 if current is not None else 1)
            except OSError as e:
                if e.errno != errno.E2BIG:
                    raise
                self._uncounted += 1  # the map is full: counted as lost

    def counters(self) -> dict[CounterKey, int]:
        """Every count, the kernel's and the daemon's rows of one key added up."""
        counts: dict[CounterKey, int] = {}
        for k, v in self._table("counters").items():
            action = Action(k.action & ~abi.COUNTED_BY_DAEMON)
            key = CounterKey(k.cgroup_id, k.policy_id, k.rule_id, k.target_id, action, k.caller_id)
            counts[key] = counts.get(key, 0) + v.value
        return counts

    def full_maps(self) -> dict[str, int]:
        """Writes that found their map full, by what was lost (see FULL_* in enforcer.h)."""
        table = self._table("full_maps")
        counts = {name: int(table[ctypes.c_int(slot)].value) for name, slot in _FULL_SLOTS.items()}
        counts["uncounted_hits"] += self._uncounted
        return counts

    def counters_map_id(self) -> int:
        """The kernel's id of the counters map: the same map, pinned, keeps its id."""
        return syscall.map_info(self._table("counters").fd).id

    def reset_counters(self) -> None:
        self._table("counters").clear()

    def entry_counts(self) -> dict[str, int]:
        """How many entries each policy map holds now."""
        return {
            name: sum(1 for _ in self._table(name))
            for name in ("cgroup_sets", *_RULE_MAPS, "counters")
        }

    def exec_total(self) -> int:
        return _sum_percpu(self._table("exec_total"))

    def event_drops(self) -> int:
        return _sum_percpu(self._table("event_drops"))

    def signal_errors(self) -> tuple[int, int]:
        """Failed bpf_send_signal calls: (SIGKILL, SIGSTOP)."""
        table = self._table("signal_errors")
        return int(sum(table[ctypes.c_int(0)])), int(sum(table[ctypes.c_int(1)]))

    def open_events(self, handler: Callable[[KernelEvent], None]) -> None:
        size = ctypes.sizeof(self._event_type)

        def on_raw(data: bytes) -> int:
            try:
                raw = self._event_type.from_buffer_copy(data[:size].ljust(size, b"\0"))
                event = _decode_event(raw)
            except (ValueError, TypeError):
                log.exception("undecodable event from the kernel")
            else:
                handler(event)
            self._batch_left -= 1
            # Negative: libbpf stops this poll here (the event is consumed).
            return -1 if self._batch_left <= 0 else 0

        self._events = EventBuffer(
            self._table("events").fd,
            ring_buffer=self.info.ring_buffer,
            page_count=abi.RINGBUF_PAGES,
            handler=on_raw,
        )

    def poll_events(self, timeout_ms: int) -> None:
        """Waits up to timeout_ms for events and hands at most EVENT_BATCH to the handler.

        libbpf's ring buffer poll reads on while the kernel writes, so under an
        exec storm it would never return; the caller's loop (the watchdog, the
        hold-grace renewal) turns between batches. A perf buffer poll reads
        only what was there when it began.
        """
        self._batch_left = EVENT_BATCH
        if self._events is None:
            time.sleep(timeout_ms / 1000)
            return
        self._events.poll(timeout_ms)

    def close(self) -> None:
        """Closes this process's hold on the program; pinned links keep it attached."""
        if self._events is not None:
            self._events.close()
            self._events = None
        for attachment in self._attachments.values():
            os.close(attachment.fd)
        for fd in self._programs.values():
            os.close(fd)
        for bpf_map in self._maps_by_name.values():
            bpf_map.close()
        self.links, self._attachments, self._programs, self._maps_by_name = {}, {}, {}, {}


# The rule maps whose keys start with a set id, filled per bank.
_RULE_MAPS = (
    "rule_names",
    "rule_paths",
    "rule_inodes",
    "cut_hits",
    "set_defaults",
    "caller_names",
    "caller_paths",
    "caller_inodes",
    "arg_values",
)
# full_maps slots, as status and metrics name them.
_FULL_SLOTS = {
    "cgroups_unplaced": abi.FULL_CGROUPS,
    "held_unstored": abi.FULL_HELD,
    "uncounted_hits": abi.FULL_COUNTERS,
    "held_lost": abi.HELD_LOST,
}


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


def _layout_cflags() -> list[str]:
    layout = backends.current_layout()
    if layout is None or not layout.complete:
        missing = ", ".join(layout.missing) if layout else "every struct"
        raise BpfLoadError(
            "the exec program reads the file that runs at struct offsets from the kernel's BTF, "
            f"and {VMLINUX} is missing or does not describe {missing}; run `enforcer doctor`"
        )
    return layout.cflags()


def _set_of_key(key: Any) -> int:
    """The set id a rule map key starts with (cut_hits keys are the set id itself)."""
    return int(key.value if isinstance(key, ctypes.c_uint32) else key.set_id)


def _has_deny(maps: MapContents) -> bool:
    return any(
        hit.action is Action.DENY
        for table in (maps.names, maps.paths, maps.inodes, maps.defaults)
        for hits in table.values()
        for hit in hits
    )


def _in_bank(base: int, set_id: int) -> int:
    return abi.NO_SET if set_id == abi.NO_SET else base + set_id


def _match_value(table: Any, hits: tuple[Hit, ...], maps: MapContents, set_id: int) -> Any:
    """An entry as the kernel holds it.

    An unconditional allow hit is only its `named` bit. A conditional hit, allow or not,
    is kept with its own named bits, which count only where its conditions hold.
    """
    value = table.Leaf()
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


def _path_key(table: Any, set_id: int, path: str) -> Any:
    """An LPM key of rule_paths or caller_paths: the set id and the path's bytes."""
    raw = path.encode()
    key = table.Key()
    key.set_id = set_id
    key.prefixlen = 32 + 8 * len(raw)
    _set_bytes(key, "path", raw)
    return key


def _set_bytes(key: Any, field: str, raw: bytes) -> None:
    # memmove, not assignment: ctypes would stop a char array at a NUL ("/bin/sh\0").
    ctypes.memmove(ctypes.addressof(key) + getattr(type(key), field).offset, raw, len(raw))


def _delete_keys(table: Any, keys: Iterable[Any]) -> None:
    for key in keys:
        try:
            del table[key]
        except KeyError:
            continue


def _sum_percpu(table: Any) -> int:
    return int(sum(table[ctypes.c_int(0)]))


def _decode_event(raw: Any) -> KernelEvent:
    kind = EventKind(raw.kind)
    hit = (
        Hit(raw.policy_id, raw.rule_id, raw.target_id, Action(raw.action))
        if kind is EventKind.MATCH
        else None
    )
    return KernelEvent(
        kind=kind,
        timestamp_ns=raw.timestamp_ns,
        cgroup_id=raw.cgroup_id,
        pid=raw.pid,
        tid=raw.tid,
        uid=raw.uid,
        hit=hit,
        comm=raw.comm.decode(errors="replace"),
        filename=raw.filename.decode(errors="replace"),
        argv=_decode_args(raw),
        invoked=raw.invoked.decode(errors="replace"),
        flags=raw.flags,
        caller=raw.caller.decode(errors="replace"),
    )


def _decode_args(raw: Any) -> tuple[str, ...]:
    # ctypes cuts a char array at its first NUL: read the slots' raw bytes.
    field = type(raw).args
    slots = ctypes.string_at(ctypes.addressof(raw) + field.offset, field.size)
    return tuple(
        slots[i * abi.ARG_LEN : (i + 1) * abi.ARG_LEN].split(b"\0", 1)[0].decode(errors="replace")
        for i in range(min(raw.argc, abi.MAX_ARGS))
    )
