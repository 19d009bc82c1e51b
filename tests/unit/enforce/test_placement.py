"""Containers and cgroups placed between compiles: their sets, their owners, and failures."""

from __future__ import annotations

import pytest
from enforce_fakes import FakeRules, kills, loaded

from enforcer.containers.model import Container
from enforcer.enforce.engine import Engine
from enforcer.errors import EnforcerError
from enforcer.policy.loader import LoadedPolicy, LoadResult

WEB_1 = Container(
    id="a" * 64, runtime="podman", name="web-1", cgroup_ids=(101,), cgroup_path="/pod/web-1"
)
WEB_2 = Container(
    id="b" * 64, runtime="podman", name="web-2", cgroup_ids=(201, 202), cgroup_path="/pod/web-2"
)
DB = Container(id="c" * 64, runtime="podman", name="db-1", cgroup_ids=(301,), cgroup_path="/db")
WEB = loaded("web", {"containers": {"names": ["web-*"]}}, kills("nc"))
DBS = loaded("db", {"containers": {"names": ["db-*"]}}, kills("psql"))


def engine_with(policies: list[LoadedPolicy], running: list[Container]) -> tuple[Engine, FakeRules]:
    rules = FakeRules()
    engine = Engine(rules, lambda: LoadResult(tuple(policies), ()), lambda: running, lambda: {})
    assert engine.reload() is True
    return engine, rules


def web_set(rules: FakeRules) -> int:
    assert rules.maps is not None
    return rules.maps.cgroup_sets[WEB_1.cgroup_ids[0]]


def test_a_container_joining_a_compiled_set_is_written_without_a_recompile() -> None:
    engine, rules = engine_with([WEB], [WEB_1])
    in_force, number = rules.maps, web_set(rules)

    assert engine.placement.place(WEB_2) == number != 0
    assert rules.maps is in_force
    assert rules.assigned == {201: number, 202: number}
    assert engine.placement.set_of(202) == number
    assert [c.id for c in engine.containers] == [WEB_1.id, WEB_2.id]
    assert engine.owner(202) == (WEB_2.id, "web-2")
    assert engine.container_of(201) == WEB_2


def test_a_container_with_a_new_set_is_placed_by_a_recompile() -> None:
    engine, rules = engine_with([WEB, DBS], [WEB_1])
    in_force = rules.maps

    number = engine.placement.place(DB)
    assert rules.maps is not in_force and rules.maps is not None
    assert number == rules.maps.cgroup_sets[301] != 0 and number != web_set(rules)
    assert engine.placement.set_of(301) == number
    assert not engine.placement.unplaceable(301)


def test_a_container_that_cannot_be_compiled_is_unplaceable_and_the_maps_in_force_stay() -> None:
    engine, rules = engine_with([WEB, DBS], [WEB_1])
    in_force = rules.maps
    rules.refuse = True

    with pytest.raises(EnforcerError, match=f"container {DB.short_id} cannot be placed: .*refused"):
        engine.placement.place(DB)
    assert rules.maps is in_force
    assert engine.placement.unplaceable(301)
    assert engine.placement.set_of(301) is None
    assert engine.enforce_error is not None

    engine.placement.forget_cgroup(301)  # its cgroup removed: nothing of it stays
    assert not engine.placement.unplaceable(301)


def test_a_container_whose_runtime_did_not_answer_is_known_as_such_where_names_select() -> None:
    unknown = Container(id=DB.id, runtime="podman", cgroup_ids=(301,), metadata_known=False)
    engine, _ = engine_with([WEB], [WEB_1])
    assert engine.placement.place(unknown) == 0  # no name: no policy selects it
    assert engine.placement.metadata_unknown(301)
    assert not engine.placement.metadata_unknown(101)  # its runtime answered

    by_id = loaded("by-id", {"containers": {"ids": [DB.id[:12]]}}, kills("nc"))
    engine, _ = engine_with([by_id], [])
    engine.placement.place(unknown)
    assert not engine.placement.metadata_unknown(301)  # the id is known without the runtime


def test_a_cgroup_made_inside_a_placed_container_is_the_containers() -> None:
    engine, rules = engine_with([WEB], [WEB_1])
    number = web_set(rules)

    assert engine.placement.place_below(102, "/pod/web-1/sub")
    assert rules.assigned == {102: number}
    assert engine.placement.set_of(102) == number
    assert engine.containers[0].cgroup_ids == (101, 102)  # the next compile writes it too
    assert engine.owner(102) == (WEB_1.id, "web-1")
    assert not engine.placement.place_below(103, "/pod/web-10/sub")  # no prefix match by name


def test_a_removed_sub_cgroup_keeps_its_owner_for_its_counts() -> None:
    engine, _ = engine_with([WEB], [WEB_1])
    engine.placement.place_below(102, "/pod/web-1/sub")

    engine.placement.forget_cgroup(102)
    assert engine.containers[0].cgroup_ids == (101,)
    assert engine.placement.set_of(102) is None
    assert engine.owner(102) == (WEB_1.id, "web-1")
    assert engine.container_of(102) is None


def test_a_container_whose_own_cgroup_is_removed_is_gone() -> None:
    engine, _ = engine_with([WEB], [WEB_1, WEB_2])
    engine.placement.forget_cgroup(201)
    assert [c.id for c in engine.containers] == [WEB_1.id]
    assert engine.placement.set_of(201) is None
    assert engine.owner(201) == (WEB_2.id, "web-2")  # its counts still name it


def test_a_host_cgroup_gets_the_host_set() -> None:
    host = loaded("host", {"host": True}, kills("nc"))
    engine, rules = engine_with([host], [])
    assert rules.maps is not None and rules.maps.host_set_id != 0
    assert engine.placement.set_of(55) is None  # never placed

    engine.placement.place_host(55)
    assert rules.assigned == {55: None}
    assert engine.placement.set_of(55) == rules.maps.host_set_id
    assert engine.owner(55) == ("host", "")


def test_a_cgroup_the_kernel_classified_but_the_daemon_did_not_place_has_the_host_set() -> None:
    host = loaded("host", {"host": True}, kills("nc"))
    engine, rules = engine_with([host], [])
    assert rules.maps is not None
    assert engine.placement.enforced_set(56) == rules.maps.host_set_id


def test_a_recompile_keeps_host_cgroups_placed_and_places_every_container() -> None:
    engine, rules = engine_with([WEB], [WEB_1])
    engine.placement.place_host(55)
    engine.reload()
    assert engine.placement.set_of(55) is not None
    assert engine.placement.set_of(101) == web_set(rules)
