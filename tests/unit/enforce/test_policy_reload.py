"""A reload of the daemon, when a new file reuses the name of a policy in force.

The policy in force keeps its name: the newcomer is the one refused, whichever file sorts
first. The loader decides it (`LoadResult.keeping_names_in_force`) from the policies the
engine holds, and the engine's reload asks it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from enforce_fakes import FakeRules

from enforcer.enforce.engine import Engine
from enforcer.policy import LoadResult, load_policies

POLICY = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: shared
spec:
  selector:
    containers:
      ids: [abc123def456]
  rules:
    - name: r
      match:
        names: [{program}]
"""


def engine_for(load: Callable[[], LoadResult]) -> Engine:
    return Engine(FakeRules(), load, discover=lambda: [], named_netns=lambda: {})


def add_newcomer_after_reload(engine: Engine, directory: Path) -> tuple[Path, Path]:
    held = directory / "b.yaml"
    held.write_text(POLICY.format(program="nc"))
    engine.reload()
    newcomer = directory / "a.yaml"  # read first: sorts before the file in force
    newcomer.write_text(POLICY.format(program="sh"))
    engine.reload()
    return held, newcomer


def test_the_policy_in_force_keeps_its_name_when_the_loader_is_told(tmp_path: Path) -> None:
    engine: Engine

    def load() -> LoadResult:
        return load_policies([tmp_path]).keeping_names_in_force(engine.policies)

    engine = engine_for(load)
    held, newcomer = add_newcomer_after_reload(engine, tmp_path)

    assert [(p.policy.name, p.source) for p in engine.policies] == [("shared", held)]
    assert engine.policies[0].policy.spec.rules[0].match.names == ("nc",)
    [problem] = engine.problems
    assert (problem.file, problem.field) == (newcomer, "metadata.name")
    assert f"already defined at {held}:4 (the one in force)" in problem.message


def test_the_daemon_keeps_the_policy_in_force_against_a_newcomer(tmp_path: Path) -> None:
    # The daemon's load is `load_policies(paths)` (cli.run): the engine has to ask.
    engine = engine_for(lambda: load_policies([tmp_path]))
    held, _ = add_newcomer_after_reload(engine, tmp_path)
    assert [p.source for p in engine.policies] == [held]
