"""The pure parts of tests/vm/vm.py: module order, the initramfs archive, results."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

VM_PY = Path(__file__).resolve().parent.parent / "vm" / "vm.py"


@pytest.fixture(scope="module")
def vm() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enforcer_vm_driver", VM_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


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


def test_modules_load_after_their_dependencies_and_once(vm: ModuleType) -> None:
    order = vm.module_order(MODULES_DEP, ["virtio_pci", "9pnet_virtio", "9p", "overlay"])
    names = [Path(p).name for p in order]
    assert sorted(names) == sorted(set(names))
    assert names.index("virtio.ko") < names.index("virtio_pci.ko")
    assert names.index("9pnet.ko") < names.index("9pnet_virtio.ko") < names.index("9p.ko")
    assert names.index("netfs.ko") < names.index("fscache.ko") < names.index("9p.ko")
    with pytest.raises(vm.VmError, match=r"not in modules\.dep"):
        vm.module_order(MODULES_DEP, ["virtiofs"])


def test_initramfs_archive_is_newc_with_aligned_entries_and_a_trailer(vm: ModuleType) -> None:
    archive = vm.newc_archive([vm.CpioEntry("init", 0o100755, b"#!/bin/sh\n")])
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


def test_junit_results_give_each_outcome_and_say_why(vm: ModuleType, tmp_path: Path) -> None:
    share = tmp_path
    (share / "junit.xml").write_text(JUNIT)
    (share / "exit-code").write_text("1\n")
    (share / "measure.json").write_text('{"compile_seconds": 12.5, "ns_per_exec": 900.0}')
    result = vm.read_results("lsm", share)
    assert [o for _, o in result.tests] == ["passed", "failed", "skipped"]
    assert result.exit_code == 1 and not result.ok
    assert "test_deny: assert -9 == 0" in result.failures[0]
    report = vm.report([result])
    assert "lsm" in report and "12.5" in report and "900" in report


def test_the_guest_steps_run_doctor_measure_and_pytest_with_the_backend(vm: ModuleType) -> None:
    steps = vm.steps_script(
        Path("/src/enforcer"), "kprobe", ["tests/integration/x.py"], ["-k", "y"]
    )
    assert "cd /src/enforcer" in steps
    assert "measure.py --backend kprobe" in steps
    assert "ENFORCER_BACKEND=kprobe ENFORCER_DAEMON_START_TIMEOUT_S=300 /src/" in steps
    assert steps.index("doctor --json") < steps.index("measure.py") < steps.index("pytest")
    assert "tests/integration/x.py -k y" in steps
