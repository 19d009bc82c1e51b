"""The compiled program as data: type descriptions, the cache file, hooks by name."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import pytest

from enforcer.bpf.compiled import (
    CompiledObject,
    CompiledObjectError,
    FunctionSpec,
    MapSpec,
    cache_key,
    cache_path,
    ctype_of,
    describe,
    read_cached,
    write_cached,
)
from enforcer.bpf.loader import Hook
from enforcer.bpf.maps import count_cpus

# bcc's description of struct match_value (bpf/enforcer.h), as its compile gives it.
MATCH_VALUE = [
    "match_value",
    [
        ["count", "unsigned int"],
        ["named", "unsigned int"],
        ["hits", ["hit", [["policy_id", "unsigned short"], ["rule_id", "unsigned short"],
                          ["target_id", "unsigned short"], ["action", "unsigned short"]],
                  "struct"], [8]],
    ],
    "struct",
]  # fmt: skip


def compiled(key: str = "k1") -> CompiledObject:
    return CompiledObject(
        key=key,
        license="GPL",
        maps=(MapSpec("counters", 1, 16, 8, 65536, 0, "int", "unsigned long long"),),
        functions=(FunctionSpec("raw_tracepoint__x", bytes(range(16)), ((0, "counters"),)),),
        event_desc=["event", [["pid", "unsigned int"], ["comm", "char", [16]]], "struct"],
    )


def test_a_struct_description_gives_the_c_layout() -> None:
    value = ctype_of(MATCH_VALUE)
    assert ctypes.sizeof(value) == 72
    assert value.hits.offset == 8
    item = value()
    item.hits[7].action = 4
    assert item.hits[7].action == 4


def test_a_structure_described_decodes_to_the_same_layout() -> None:
    original = ctype_of(MATCH_VALUE)
    again = ctype_of(describe(original))
    assert ctypes.sizeof(again) == ctypes.sizeof(original)
    assert [(name, getattr(again, name).offset) for name, *_ in again._fields_] == [
        (name, getattr(original, name).offset) for name, *_ in original._fields_
    ]


def test_an_unknown_scalar_is_an_error_not_a_guess() -> None:
    with pytest.raises(CompiledObjectError, match="__int256"):
        ctype_of(["x", [["a", "__int256"]], "struct"])


def test_a_compiled_object_survives_its_file() -> None:
    assert CompiledObject.from_json(compiled().to_json()) == compiled()


@pytest.mark.parametrize("text", ["", "{}", '{"format": 0}', "[1]", "\x00\xff"])
def test_a_damaged_file_is_refused(text: str) -> None:
    with pytest.raises(CompiledObjectError):
        CompiledObject.from_json(text)


def test_the_cache_keeps_one_entry_and_reads_back_only_its_key(tmp_path: Path) -> None:
    write_cached(tmp_path, compiled("old"))
    write_cached(tmp_path, compiled("new"))
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(tmp_path, "new").name]
    assert read_cached(tmp_path, "new") == compiled("new")
    assert read_cached(tmp_path, "old") is None


def test_a_damaged_cache_entry_is_compiled_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_path(tmp_path, "k1").write_text('{"format": 1, "key": "k1"')
    with caplog.at_level(logging.WARNING):
        assert read_cached(tmp_path, "k1") is None
    assert "compiling again" in caplog.text


def test_the_key_changes_with_the_flags_and_the_sources(tmp_path: Path) -> None:
    source = tmp_path / "prog.c"
    source.write_text("int x;")
    (tmp_path / "prog.h").write_text("#define A 1")
    first = cache_key(source, ["-DA"])
    assert cache_key(source, ["-DA"]) == first
    assert cache_key(source, ["-DB"]) != first
    (tmp_path / "prog.h").write_text("#define A 2")
    assert cache_key(source, ["-DA"]) != first


@pytest.mark.parametrize(
    ("function", "kind", "target"),
    [
        ("raw_tracepoint__sched_process_exec", "raw_tracepoint", "sched_process_exec"),
        ("tracepoint__cgroup__cgroup_rmdir", "tracepoint", "cgroup:cgroup_rmdir"),
        ("lsm__bprm_check_security", "lsm", "bprm_check_security"),
        ("pass_check", "kprobe", ""),
    ],
)
def test_a_function_name_says_its_hook(function: str, kind: str, target: str) -> None:
    hook = Hook.of(function)
    assert (hook.kind, hook.target) == (kind, target)


@pytest.mark.parametrize(("text", "count"), [("0\n", 1), ("0-3\n", 4), ("0,2-5\n", 5)])
def test_possible_cpus_are_counted_from_the_kernels_list(text: str, count: int) -> None:
    assert count_cpus(text) == count
