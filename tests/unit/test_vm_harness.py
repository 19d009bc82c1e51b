"""The pure parts of tests/vm/: kernels, module order, the initramfs, the matrix's results."""

from __future__ import annotations

import importlib.util
import lzma
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

VM_DIR = Path(__file__).resolve().parent.parent / "vm"


def load(name: str) -> ModuleType:
    """tests/vm/NAME.py, as the driver imports it (its siblings by their plain names)."""
    if str(VM_DIR) not in sys.path:
        sys.path.append(str(VM_DIR))
    spec = importlib.util.spec_from_file_location(name, VM_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vm() -> ModuleType:
    return load("vm")


@pytest.fixture(scope="module")
def boot() -> ModuleType:
    return load("boot")


@pytest.fixture(scope="module")
def matrix() -> ModuleType:
    return load("matrix")


V = "kernel/drivers/virtio"
NINE = "kernel/net/9p"
MODULES_DEP = f"""\
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/overlayfs/overlay.ko:
kernel/fs/9p/9p.ko: {NINE}/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
{V}/virtio_pci.ko: {V}/virtio.ko {V}/virtio_ring.ko
{V}/virtio.ko:
{V}/virtio_ring.ko:
{NINE}/9pnet.ko:
{NINE}/9pnet_virtio.ko: {NINE}/9pnet.ko {V}/virtio.ko {V}/virtio_ring.ko
"""


def test_modules_load_after_their_dependencies_and_once(boot: ModuleType) -> None:
    order = boot.module_order(MODULES_DEP, ["virtio_pci", "9pnet_virtio", "9p", "overlay"])
    names = [Path(p).name for p in order]
    assert sorted(names) == sorted(set(names))
    assert names.index("virtio.ko") < names.index("virtio_pci.ko")
    assert names.index("9pnet.ko") < names.index("9pnet_virtio.ko") < names.index("9p.ko")
    assert names.index("netfs.ko") < names.index("fscache.ko") < names.index("9p.ko")
    with pytest.raises(boot.VmError, match=r"neither in modules\.dep nor built in"):
        boot.module_order(MODULES_DEP, ["virtiofs"])


def test_a_built_in_module_needs_no_file_and_a_compressed_one_is_unpacked(
    boot: ModuleType,
) -> None:
    # 6.12 builds virtio_pci in and ships its modules as .ko.xz.
    dep = "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz\nkernel/net/9p/9pnet.ko.xz:\n"
    builtin = "kernel/drivers/virtio/virtio_pci.ko\n"
    order = boot.module_order(dep, ["virtio_pci", "9p"], builtin)
    assert order == ["kernel/net/9p/9pnet.ko.xz", "kernel/fs/9p/9p.ko.xz"]
    elf = b"\x7fELF module"
    assert boot.plain_module("9p.ko.xz", lzma.compress(elf)) == elf
    assert boot.plain_module("9p.ko", elf) == elf
    with pytest.raises(boot.VmError, match="xz and gz only"):
        boot.plain_module("9p.ko.zst", b"")


def test_a_kernel_series_is_its_newest_release_with_modules_and_headers(
    boot: ModuleType, tmp_path: Path
) -> None:
    boot_dir, lib = tmp_path / "boot", tmp_path / "lib"
    boot_dir.mkdir()
    for release in ("6.1.0-9-amd64", "6.1.0-26-amd64", "6.1.0-30-amd64", "6.12.117+deb12-amd64"):
        (boot_dir / f"vmlinuz-{release}").touch()
        if release != "6.1.0-30-amd64":  # installed without its headers
            (lib / "modules" / release / "build" / "include").mkdir(parents=True)
            (lib / "modules" / release / "modules.dep").touch()
    assert boot.find_kernel("6.1", boot_dir, lib).release == "6.1.0-26-amd64"
    assert boot.find_kernel("6.12", boot_dir, lib).release == "6.12.117+deb12-amd64"
    with pytest.raises(boot.VmError, match=r"linux-image-6\.12-amd64"):
        boot.find_kernel("6.6", boot_dir, lib)


def test_initramfs_archive_is_newc_with_aligned_entries_and_a_trailer(boot: ModuleType) -> None:
    archive = boot.newc_archive([boot.CpioEntry("init", 0o100755, b"#!/bin/sh\n")])
    assert archive.startswith(b"070701")
    assert len(archive) % 4 == 0
    header_end = 110
    assert archive[header_end : header_end + 5] == b"init\0"
    assert b"#!/bin/sh\n" in archive
    assert archive.rstrip(b"\0").endswith(b"TRAILER!!!")
    filesize = int(archive[54:62], 16)
    assert filesize == len(b"#!/bin/sh\n")


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.integration.test_backends" name="test_kill" time="1"/>
<testcase classname="tests.integration.test_backends" name="test_deny" time="1">
<failure message="assert -9 == 0">trace</failure></testcase>
<testcase classname="tests.integration.test_doctor" name="test_user" time="0">
<skipped message="setpriv is not installed"/></testcase>
</testsuite></testsuites>
"""


def test_junit_results_give_each_outcome_and_say_why(matrix: ModuleType, tmp_path: Path) -> None:
    share = tmp_path
    (share / "junit.xml").write_text(JUNIT)
    (share / "exit-code").write_text("1\n")
    (share / "measure.json").write_text('{"compile_seconds": 12.5, "ns_per_exec": 900.0}')
    result = matrix.read_results("6.12", "6.12.117+deb12-amd64", "lsm", share)
    assert [o for _, o in result.tests] == ["passed", "failed", "skipped"]
    assert result.exit_code == 1 and not result.ok
    assert "test_deny: assert -9 == 0" in result.failures[0]
    [row] = [line for line in matrix.report([result]).splitlines() if "6.12.117" in line]
    assert row.split() == [
        "6.12",
        "6.12.117+deb12-amd64",
        "lsm",
        "1/3",
        "1",
        "1",
        "12.5",
        "900",
        "0",
    ]


def doctor(choice: str | None, *usable: str) -> dict[str, object]:
    verdicts = [{"name": b, "usable": b in usable} for b in ("lsm", "kprobe", "tracepoint")]
    return {"backend": {"name": choice} if choice else None, "backends": verdicts}


def cell(matrix: ModuleType, kernel: str, backend: str, ok: bool, said: dict[str, object]) -> Any:
    result = matrix.CellResult(kernel, f"{kernel}.0-1-amd64", backend, exit_code=0 if ok else 1)
    result.tests = [("t::a", "passed" if ok else "failed")]
    result.doctor = said
    return result


def test_doctor_must_choose_the_first_backend_that_passed(matrix: ModuleType) -> None:
    all_three = doctor("lsm", "lsm", "kprobe", "tracepoint")
    agreeing = [cell(matrix, "6.1", b, True, all_three) for b in ("lsm", "kprobe", "tracepoint")]
    assert matrix.doctor_disagreements(agreeing) == []
    assert "doctor agrees" in matrix.report(agreeing)
    # Only kprobe and tracepoint were asked for: doctor's lsm is simply not in this run.
    assert matrix.doctor_disagreements(agreeing[1:]) == []

    lsm_failed = [cell(matrix, "6.1", "lsm", False, all_three), *agreeing[1:]]
    assert matrix.doctor_disagreements(lsm_failed) == [
        "6.1: doctor chose lsm, whose tests did not pass"
    ]
    says_no_lsm = doctor("kprobe", "kprobe", "tracepoint")
    passed_anyway = [cell(matrix, "6.12", b, True, says_no_lsm) for b in ("lsm", "kprobe")]
    assert matrix.doctor_disagreements(passed_anyway) == [
        "6.12: lsm passed, but doctor calls it unusable",
        "6.12: doctor chose kprobe, but lsm passed and ranks first",
    ]
    silent = [cell(matrix, "6.12", "kprobe", True, {})]
    assert "gave no verdict" in matrix.doctor_disagreements(silent)[0]


def test_the_guest_steps_run_doctor_measure_and_pytest_with_the_backend(vm: ModuleType) -> None:
    steps = vm.steps_script(
        Path("/src/enforcer"), "kprobe", ["tests/integration/x.py"], ["-k", "y"]
    )
    assert "cd /src/enforcer" in steps
    assert "measure.py --backend kprobe" in steps
    assert "ENFORCER_BACKEND=kprobe ENFORCER_DAEMON_START_TIMEOUT_S=300 /src/" in steps
    assert steps.index("doctor --json") < steps.index("measure.py") < steps.index("pytest")
    assert "tests/integration/x.py -k y" in steps


def test_every_backend_runs_the_container_tests_and_lsm_and_kprobe_the_rest(
    vm: ModuleType,
) -> None:
    containers = "tests/integration/test_enforce_containers.py"
    no_gap = next(t for t in vm.VM_ONLY_TESTS if "no_gap" in t)
    for backend in ("lsm", "kprobe", "tracepoint"):
        assert containers in vm.default_tests(backend)
        assert (no_gap in vm.default_tests(backend)) is (backend != "tracepoint")


def test_make_test_vm_passes_a_part_of_the_matrix_on_to_the_driver(vm: ModuleType) -> None:
    repo = VM_DIR.parent.parent
    dry_run = subprocess.run(
        ["make", "-s", "-n", "-C", str(repo), "test-vm", "KERNELS=6.12", "BACKENDS=lsm tracepoint"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    argv = shlex.split(dry_run)
    assert argv[:2] == [".venv/bin/python", "tests/vm/vm.py"]
    args = vm.parse_args(argv[2:])
    assert (args.kernels, args.backends, args.tests) == (["6.12"], ["lsm", "tracepoint"], None)
    every = vm.parse_args([])
    assert (every.kernels, every.backends) == (["6.1", "6.12"], ["lsm", "kprobe", "tracepoint"])
