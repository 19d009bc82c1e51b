"""The Python mirror of bpf/enforcer.h must say what the header says."""

from __future__ import annotations

import re

from enforcer.bpf import abi


def _header_defines() -> dict[str, int]:
    text = abi.HEADER.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define (\w+) (\d+)\s*$", text, re.M)}


def _header_enum(prefix: str) -> dict[str, int]:
    text = abi.HEADER.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(rf"\b{prefix}_(\w+) = (\d+),", text)}


def test_sizes_match_header() -> None:
    defines = _header_defines()
    names = [
        "PATH_LEN",
        "NAME_LEN",
        "LONG_PATH_LEN",
        "MAX_HITS",
        "MAX_EXEC_HITS",
        "MAX_DEFERRED",
        "WALK_STEPS",
        "WALK_BUF",
        "COMM_LEN",
        "MAX_ARGS",
        "ARG_LEN",
        "MAX_CGROUPS",
        "MAX_NAME_ENTRIES",
        "MAX_PATH_ENTRIES",
        "MAX_COUNTERS",
        "MAX_HELD",
        "SET_PENDING",
        "RINGBUF_PAGES",
        "CONFIG_KEY",
        "LIVE_GENERATION",
        "LIVE_HOLD_UNTIL",
        "LIVE_UNHELD",
        "LIVE_SLOTS",
        "FULL_CGROUPS",
        "FULL_HELD",
        "FULL_COUNTERS",
        "HELD_LOST",
        "FULL_SLOTS",
        "MAX_CGROUP_LEVELS",
        "COUNTED_BY_DAEMON",
        "MAX_DEFAULTS",
        "MATCH_ARGS",
        "ARG_KEY_LEN",
        "ARG_SKIP_MAX",
        "MAX_CONDITIONS",
        "MAX_CALLER_ENTRIES",
        "MAX_ARG_ENTRIES",
    ]
    assert {n: defines[n] for n in names} == {n: getattr(abi, n) for n in names}


def test_action_enum_matches_header() -> None:
    assert _header_enum("ACTION") == {a.name: a.value for a in abi.Action}


def test_event_kind_enum_matches_header() -> None:
    assert _header_enum("EVENT") == {k.name: k.value for k in abi.EventKind}


def _header_flags(prefix: str) -> dict[str, int]:
    text = abi.HEADER.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(rf"^#define {prefix}_(\w+) (\d+)\b", text, re.M)}


def test_set_flags_match_header() -> None:
    flags = _header_flags("SET")
    del flags["PENDING"]  # a set id, not a flag
    assert flags == {f.name: f.value for f in abi.SetFlag}


def test_exec_flags_match_header() -> None:
    assert _header_flags("EXEC") == {f.name: f.value for f in abi.ExecFlag}


def test_caller_flags_match_header() -> None:
    assert _header_flags("CALLER") == {f.name: f.value for f in abi.CallerFlag}


def test_the_held_map_pin_name_matches_header() -> None:
    found = re.search(r'^#define HELD_PIN "([^"]+)"', abi.HEADER.read_text(), re.M)
    assert found is not None and found[1] == abi.HELD_PIN
    assert abi.HELD_PIN not in abi.LEGACY_HELD_PINS
