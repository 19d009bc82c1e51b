"""The compiled program is kept: a start with the cache loads it without bcc or LLVM."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import host_policy as host_policy_file
from conftest import requested_backend, start_daemon
from test_bpf_program import host_policy

from enforcer.enforce.compiler import compile_policies
from enforcer.kernel import backends
from enforcer.kernel.facts import probe

pytestmark = pytest.mark.root

# Builds the program from the cache in a process of its own and says what it mapped.
CHILD = """
import sys
from pathlib import Path
from enforcer.kernel.backends import Backend, choose_backend
from enforcer.kernel.facts import probe
from enforcer.kernel.mounts import ensure_mounts
ensure_mounts()
from enforcer.bpf.program import ExecProgram
facts = probe()
backend = choose_backend(facts, Backend(sys.argv[2])).backend
program = ExecProgram(backend, ring_buffer=facts.ring_buffer, cache_dir=Path(sys.argv[1]))
print("cached" if program.info.from_cache else "compiled")
print("".join(line for line in open("/proc/self/maps") if "libbcc" in line or "LLVM" in line))
"""


@pytest.fixture
def make_program(exec_program_class: Any) -> Iterator[Any]:
    facts = probe()
    backend = backends.choose_backend(facts, backends.Backend(requested_backend())).backend
    made: list[Any] = []

    def make(cache_dir: Path) -> Any:
        made.append(exec_program_class(backend, ring_buffer=facts.ring_buffer, cache_dir=cache_dir))
        return made[-1]

    yield make
    for program in made:
        program.close()


def test_the_first_start_compiles_and_the_next_enforces_from_what_it_kept(
    make_program: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = make_program(cache)
    assert not first.info.from_cache
    assert len(list(cache.glob("exec_enforcer-*.json"))) == 1
    first.close()

    again = make_program(cache)
    name = f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2("/bin/true", tmp_path / name)
    again.rules.apply(compile_policies([host_policy([name])], []).maps)

    assert again.info.from_cache
    assert subprocess.run([str(tmp_path / name)], check=False).returncode == -signal.SIGKILL
    assert list(again.counters.counters().values()) == [1]


def test_a_damaged_cache_entry_is_compiled_again(make_program: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_program(cache).close()
    (entry,) = cache.glob("exec_enforcer-*.json")
    entry.write_text(entry.read_text()[:100])

    program = make_program(cache)
    assert not program.info.from_cache
    assert entry.read_text().endswith("}")


def test_the_enforcing_process_never_maps_bcc_or_llvm(make_program: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_program(cache).close()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache), requested_backend()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert child.stdout.split("\n", 1) == ["cached", "\n"], child.stdout


def test_run_compiles_into_its_bpf_cache_once(tmp_path: Path, program: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(host_policy_file(program))
    cache = tmp_path / "bpf-cache"
    logs = []
    for start in ("first", "second"):
        workdir = tmp_path / start
        workdir.mkdir()
        daemon = start_daemon(policies, workdir, "--bpf-cache", str(cache))
        try:
            assert subprocess.run([str(program)], check=False).returncode == -signal.SIGKILL
        finally:
            daemon.stop()
        logs.append(daemon.log.read_text())
    assert "BPF program compiled and loaded" in logs[0]
    assert "BPF program loaded from the cache" in logs[1]
