"""The exec program itself, driven through bpf_program.ExecProgram on the real kernel.

Host processes are selected here (host set), so every rule names only a
program made for the test.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import requested_backend

from enforcer.bpf import abi
from enforcer.containers import Container, cgroup_v2_path_of_pid, find_cgroup2_mount
from enforcer.enforce.compiler import compile_policies
from enforcer.kernel import backends
from enforcer.kernel.facts import probe
from enforcer.policy.model import ExecPolicy

pytestmark = pytest.mark.root

KILLED = -signal.SIGKILL


@pytest.fixture(params=[True, False], ids=["ring-buffer", "perf-buffer"])
def program(request: pytest.FixtureRequest, exec_program_class: Any) -> Iterator[Any]:
    facts = probe()
    if request.param and not facts.ring_buffer:
        pytest.skip(f"kernel {facts.release} has no BPF ring buffer")
    backend = backends.choose_backend(facts, backends.Backend(requested_backend())).backend
    loaded = exec_program_class(backend, ring_buffer=request.param)
    try:
        yield loaded
    finally:
        loaded.close()


def host_policy(names: list[str], *, dirs: list[str] | None = None) -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "bpf-test"},
            "spec": {
                "selector": {"host": True},
                "rules": [{"name": "r", "match": {"names": names, "dirs": dirs or []}}],
            },
        }
    )


def test_kill_is_counted_and_reported_as_an_event(program: Any, tmp_path: Path) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2("/bin/true", tmp_path / name)
    program.rules.apply(compile_policies([host_policy([name])], []).maps)
    events: list[Any] = []
    program.events.open_events(events.append)

    assert subprocess.run([str(tmp_path / name)], check=False).returncode == -signal.SIGKILL
    program.events.poll_events(1000)

    assert [e.filename for e in events] == [str(tmp_path / name)]
    assert list(program.counters.counters().values()) == [1]
    assert program.counters.event_drops() == 0


def test_a_path_longer_than_the_path_key_still_matches_by_name(
    program: Any, tmp_path: Path
) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    deep = tmp_path
    while len(str(deep)) < abi.PATH_LEN + 40:
        deep = deep / ("d" * 30)
    deep.mkdir(parents=True)
    shutil.copy2("/bin/true", deep / name)
    program.rules.apply(compile_policies([host_policy([name])], []).maps)

    assert len(str(deep / name)) > abi.PATH_LEN
    assert subprocess.run([str(deep / name)], check=False).returncode == -signal.SIGKILL


def test_directory_rule_matches_below_and_only_below(program: Any, tmp_path: Path) -> None:
    inside = tmp_path / "forbidden"
    sibling = tmp_path / "forbidden-not"
    for directory in (inside, sibling):
        directory.mkdir()
        shutil.copy2("/bin/true", directory / "prog")
    program.rules.apply(compile_policies([host_policy([], dirs=[str(inside)])], []).maps)

    assert subprocess.run([str(inside / "prog")], check=False).returncode == -signal.SIGKILL
    assert subprocess.run([str(sibling / "prog")], check=False).returncode == 0


def test_reapplying_replaces_the_rules_and_leaves_no_stale_entries(
    program: Any, tmp_path: Path
) -> None:
    first, second = (f"enforcer-test-{secrets.token_hex(4)}" for _ in range(2))
    for name in (first, second):
        shutil.copy2("/bin/true", tmp_path / name)
    program.rules.apply(compile_policies([host_policy([first])], []).maps)
    program.rules.apply(compile_policies([host_policy([second])], []).maps)

    assert subprocess.run([str(tmp_path / first)], check=False).returncode == 0
    assert subprocess.run([str(tmp_path / second)], check=False).returncode == -signal.SIGKILL
    assert program.counters.entry_counts()["rule_names"] == 1


def test_counts_the_daemon_adds_never_race_the_kernels_increments(
    program: Any, tmp_path: Path
) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2("/bin/true", tmp_path / name)
    maps = compile_policies([host_policy([name])], []).maps
    program.rules.apply(maps)
    (hit,) = next(iter(maps.names.values()))
    kills, added = 300, 3000
    # The kernel counts kills on the loop's cgroup while the daemon (here,
    # this thread) counts held execs of the same rule on the same cgroup.
    script = f'for i in $(seq {kills}); do "{tmp_path / name}"; done; exit 0'
    loop = subprocess.Popen(["/bin/sh", "-c", script], stderr=subprocess.DEVNULL)
    own = find_cgroup2_mount() / cgroup_v2_path_of_pid(loop.pid).lstrip("/")
    cgroup_id = own.stat().st_ino
    for _ in range(added):
        program.counters.add_counts(cgroup_id, [hit])
    assert loop.wait(120) == 0

    assert sum(program.counters.counters().values()) == kills + added


def test_a_full_counters_map_still_kills_and_counts_what_it_lost(
    program: Any, tmp_path: Path
) -> None:
    name = f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2("/bin/true", tmp_path / name)
    maps = compile_policies([host_policy([name])], []).maps
    program.rules.apply(maps)
    (hit,) = next(iter(maps.names.values()))
    for fake_cgroup in range(1, abi.MAX_COUNTERS + 1):  # every key taken
        program.counters.add_counts(fake_cgroup << 32, [hit])
    program.counters.add_counts(1 << 63, [hit])  # one more: no room for the daemon either

    assert subprocess.run([str(tmp_path / name)], check=False).returncode == -signal.SIGKILL
    assert program.counters.full_maps()["uncounted_hits"] == 2


def exec_in_cgroup(
    cgroup: Path, path: Path, *, own_mounts: bool = True
) -> subprocess.CompletedProcess[str]:
    """Execs `path` from a process in `cgroup`, as a container process would.

    In a mount namespace of its own, as every container process is: an exec
    in the host's mount namespace is the runtime's own work, which no
    default applies to.
    """
    script = f'echo $$ > "{cgroup}/cgroup.procs" && exec "{path}"'
    argv = ["/bin/sh", "-c", script]
    if own_mounts:
        argv = ["unshare", "--mount", "--propagation", "unchanged", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


ALLOWLIST = {
    "apiVersion": "enforcer/v1",
    "kind": "ExecPolicy",
    "metadata": {"name": "allowlist"},
    "spec": {
        "selector": {"allContainers": True},
        "default": "kill",
        "rules": [
            {"name": "tools", "action": "allow", "match": {"dirs": ["{tools}"]}},
            {"name": "no-env", "action": "kill", "match": {"names": ["env"]}},
        ],
    },
}


def test_an_allowlist_kills_what_it_does_not_name_in_its_container(
    program: Any, tmp_path: Path
) -> None:
    tools, elsewhere = tmp_path / "tools", tmp_path / "elsewhere"
    for directory in (tools, elsewhere):
        directory.mkdir()
        for name in ("true", "env"):
            shutil.copy2(f"/usr/bin/{name}", directory / name)
    cgroup = find_cgroup2_mount() / f"enforcer-test-{secrets.token_hex(4)}"
    cgroup.mkdir()
    try:
        container = Container(id="c" * 64, runtime="runc", cgroup_ids=(cgroup.stat().st_ino,))
        spec = json.loads(json.dumps(ALLOWLIST).replace("{tools}", str(tools)))
        program.rules.apply(compile_policies([ExecPolicy.model_validate(spec)], [container]).maps)

        assert exec_in_cgroup(cgroup, tools / "true").returncode == 0
        assert exec_in_cgroup(cgroup, elsewhere / "true").returncode == KILLED  # the default
        # A kill rule beats the allow.
        assert exec_in_cgroup(cgroup, tools / "env").returncode == KILLED
        # The runtime's own exec (runc re-executing itself before it makes the
        # container's namespaces): rules apply, the default does not.
        assert exec_in_cgroup(cgroup, elsewhere / "true", own_mounts=False).returncode == 0
        assert exec_in_cgroup(cgroup, tools / "env", own_mounts=False).returncode == KILLED
        # The host is no container: nothing there is touched.
        assert subprocess.run([str(elsewhere / "true")], check=False).returncode == 0
        rules = sorted(k.rule_id for k in program.counters.counters())
        assert len(set(rules)) == 2 and sum(program.counters.counters().values()) == 3
    finally:
        cgroup.rmdir()


def test_a_default_deny_fails_the_exec_where_the_kernel_can_and_kills_elsewhere(
    program: Any, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy2("/usr/bin/true", tools / "true")
    shutil.copy2("/usr/bin/true", tmp_path / "other")
    cgroup = find_cgroup2_mount() / f"enforcer-test-{secrets.token_hex(4)}"
    cgroup.mkdir()
    try:
        container = Container(id="d" * 64, runtime="runc", cgroup_ids=(cgroup.stat().st_ino,))
        spec = json.loads(json.dumps(ALLOWLIST).replace("{tools}", str(tools)))
        spec["spec"]["default"] = "deny"
        program.rules.apply(compile_policies([ExecPolicy.model_validate(spec)], [container]).maps)
        result = exec_in_cgroup(cgroup, tmp_path / "other")
        if program.info.backend is backends.Backend.LSM:
            assert result.returncode == 126 and "Operation not permitted" in result.stderr
        else:
            assert result.returncode == KILLED
        assert exec_in_cgroup(cgroup, tools / "true").returncode == 0
        assert sum(program.counters.counters().values()) == 1
    finally:
        cgroup.rmdir()


def test_an_exec_two_programs_decide_is_counted_once(
    exec_program_class: Any, tmp_path: Path
) -> None:
    """As at a generation handover whose switch falls between the two programs' runs."""
    facts = probe()
    backend = backends.choose_backend(facts, backends.Backend(requested_backend())).backend
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    name = f"enforcer-test-{secrets.token_hex(4)}"
    shutil.copy2("/bin/true", tmp_path / name)
    maps = compile_policies([host_policy([name])], []).maps
    programs = []
    try:
        for _ in range(2):  # each in force: both decide every exec
            made = exec_program_class(backend, ring_buffer=facts.ring_buffer, pin_dir=pin_dir)
            programs.append(made)
            programs[-1].held.prepare_generation(1)
            programs[-1].rules.apply(maps)
        programs[0].held.take_over(1)

        for _ in range(3):
            assert subprocess.run([str(tmp_path / name)], check=False).returncode == KILLED
        assert list(programs[1].counters.counters().values()) == [3]
    finally:
        for program in programs:
            program.close()
        shutil.rmtree(pin_dir, ignore_errors=True)
