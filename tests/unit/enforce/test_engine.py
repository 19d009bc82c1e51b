"""The engine's bookkeeping that needs no kernel: what it compiles for which containers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fake_tables import FakeCounters, FakeRules

from enforcer.containers.model import Container
from enforcer.enforce.engine import Engine
from enforcer.policy.loader import LoadedPolicy, LoadResult
from enforcer.policy.model import ExecPolicy

WEB = Container(id="a" * 64, runtime="podman", name="web-1", cgroup_ids=(101,), pid=None)


def by_name(pattern: str, match: Mapping[str, object] | None = None) -> LoadedPolicy:
    policy = ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"containers": {"names": [pattern]}},
                "rules": [{"name": "r", "match": match or {"names": ["nc"]}}],
            },
        }
    )
    return LoadedPolicy(policy=policy, source=Path("policies/web.yaml"), line=1)


def test_a_runtime_that_times_out_does_not_unselect_a_placed_container() -> None:
    program = FakeRules()
    seen = [WEB]
    engine = Engine(
        program,
        FakeCounters(),
        lambda: LoadResult((by_name("web-*"),), ()),
        lambda: list(seen),
        lambda: {},
    )
    engine.reload()
    assert program.maps is not None and program.maps.cgroup_sets[101] != 0

    # podman did not answer this time: the name is unknown, not empty.
    seen[:] = [Container(id=WEB.id, runtime="podman", cgroup_ids=(101,), metadata_known=False)]
    engine.reload()
    assert program.maps.cgroup_sets[101] != 0
    assert engine.containers[0].name == "web-1"

    # A container that answers with another name is placed by what it says now.
    seen[:] = [Container(id=WEB.id, runtime="podman", name="db-1", cgroup_ids=(101,))]
    engine.reload()
    assert program.maps.cgroup_sets[101] == 0


def test_calledby_on_a_program_that_cannot_read_callers_is_a_problem_of_its_file() -> None:
    program = FakeRules(reads_callers=False)
    match = {"names": ["sh"], "calledBy": {"paths": ["/usr/sbin/nginx"]}}
    engine = Engine(
        program,
        FakeCounters(),
        lambda: LoadResult((by_name("web-*", match),), ()),
        lambda: [WEB],
        lambda: {},
    )
    assert engine.reload() is False
    (problem,) = engine.problems
    assert (problem.file, problem.field) == (
        Path("policies/web.yaml"),
        "spec.rules[0].match.calledBy",
    )
    assert "Linux 6.10" in problem.message and "--backend lsm" in problem.message
    assert program.maps is not None and program.maps.cgroup_sets.get(101, 0) == 0
