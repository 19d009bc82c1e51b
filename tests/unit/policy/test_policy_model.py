"""The ExecPolicy model: defaults, normalisation, limits and selector rules.

What a user sees for each mistake (line, field path, message) is tested in
test_policy_loader.py, and for selector keys in test_selectors.py; this file
checks the model's own behaviour and its edges.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from enforcer.bpf import abi
from enforcer.policy import (
    ContainerSelector,
    ExecPolicy,
    Labels,
    Match,
    Mode,
    NamespaceSelector,
    RuleAction,
    Selector,
)


def policy_data(
    match: dict[str, Any] | None = None, selector: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "enforcer/v1",
        "kind": "ExecPolicy",
        "metadata": {"name": "no-recon"},
        "spec": {
            "selector": selector if selector is not None else {"containers": {"ids": ["abc"]}},
            "rules": [{"name": "recon", "match": match or {"names": ["whoami"]}}],
        },
    }


def validation_errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as info:
        ExecPolicy.model_validate(data)
    return [(tuple(err["loc"]), err["msg"]) for err in info.value.errors()]


def test_defaults_are_enforce_and_kill() -> None:
    policy = ExecPolicy.model_validate(policy_data())
    assert policy.spec.mode is Mode.ENFORCE
    assert policy.spec.rules[0].action is RuleAction.KILL
    assert policy.name == "no-recon"


def test_enum_values_are_the_yaml_words() -> None:
    assert [m.value for m in Mode] == ["enforce", "audit"]
    assert [a.value for a in RuleAction] == ["kill", "deny", "audit", "allow"]


def test_models_are_frozen_and_hashable() -> None:
    first = ExecPolicy.model_validate(policy_data())
    second = ExecPolicy.model_validate(policy_data())
    assert first == second
    assert hash(first) == hash(second)
    with pytest.raises(ValidationError, match="frozen"):
        first.metadata.name = "other"  # type: ignore[misc]


def test_python_field_names_are_accepted_as_well_as_aliases() -> None:
    data = policy_data(selector={"all_containers": True})
    data["api_version"] = data.pop("apiVersion")
    policy = ExecPolicy.model_validate(data)
    assert policy.api_version == "enforcer/v1"
    assert policy.spec.selector.all_containers


@pytest.mark.parametrize(
    ("given", "stored"),
    [("/tmp/", "/tmp"), ("/tmp", "/tmp"), ("/var/tmp//", "/var/tmp"), ("/", "/"), ("//", "/")],
)
def test_dirs_are_stored_without_trailing_slash(given: str, stored: str) -> None:
    policy = ExecPolicy.model_validate(policy_data({"dirs": [given]}))
    assert policy.spec.rules[0].match.dirs == (stored,)


def test_dirs_equal_after_normalisation_are_duplicates() -> None:
    errors = validation_errors(policy_data({"dirs": ["/tmp", "/tmp/"]}))
    assert errors == [
        (
            ("spec", "rules", 0, "match", "dirs"),
            "'/tmp' is listed more than once in dirs; remove one",
        )
    ]


@pytest.mark.parametrize(
    ("field", "longest_ok"),
    [
        ("names", "n" * 63),
        ("names", "é" * 31 + "n"),  # 63 bytes of UTF-8
        ("paths", "/" + "p" * 249),
        ("dirs", "/" + "d" * 248),
        ("dirs", "/" + "d" * 248 + "/"),  # the trailing '/' is stripped before counting
    ],
)
def test_longest_accepted_entry(field: str, longest_ok: str) -> None:
    ExecPolicy.model_validate(policy_data({field: [longest_ok]}))


@pytest.mark.parametrize(
    ("field", "too_long", "reason"),
    [
        ("names", "n" * 64, "64 bytes including the NUL"),
        ("names", "é" * 32, "64 bytes including the NUL"),
        ("paths", "/" + "p" * 250, "252 bytes of the path including the NUL"),
        ("dirs", "/" + "d" * 249, "trailing '/' and the NUL"),
    ],
)
def test_entry_one_byte_too_long(field: str, too_long: str, reason: str) -> None:
    [(loc, message)] = validation_errors(policy_data({field: [too_long]}))
    assert loc == ("spec", "rules", 0, "match", field, 0)
    assert reason in message


def test_nul_is_rejected_everywhere() -> None:
    for field, value in [("names", "a\0b"), ("paths", "/a\0b"), ("dirs", "/a\0b")]:
        [(_, message)] = validation_errors(policy_data({field: [value]}))
        assert "NUL" in message


def test_match_is_empty_only_without_entries() -> None:
    assert not Match(names=("nc",)).is_empty
    assert not Match(dirs=("/tmp",)).is_empty
    assert Match.model_construct().is_empty
    with pytest.raises(ValidationError, match="at least one entry in names, paths or dirs"):
        Match(names=(), paths=(), dirs=())


@pytest.mark.parametrize(
    "selector",
    [
        {"host": True},
        {"allContainers": True},
        {"allContainers": True, "host": True},
        {"containers": {"ids": ["web-1"]}, "host": True},
        {"containers": {"ids": ["a" * 64, "abc123def456", "my_ctr.2"]}},
        {"containers": {"names": ["web-*"]}},
        {"containers": {"images": ["nginx", "localhost:5000/app:1", "nginx@sha256:" + "0" * 64]}},
        {"containers": {"labels": {"team": "blue", "app.kubernetes.io/name": "api"}}},
        {"containers": {"labels": {"canary": ""}}},
        {"namespaces": {"pid": [4026532198]}},
        {"namespaces": {"net": ["blue", 4026531840, "my_ns.2"]}},
        {"containers": {"names": ["web-*"]}, "namespaces": {"net": ["blue"]}, "host": True},
    ],
)
def test_selectors_that_select_something(selector: dict[str, Any]) -> None:
    ExecPolicy.model_validate(policy_data(selector=selector))


@pytest.mark.parametrize(
    ("selector", "loc", "fragment"),
    [
        ({}, ("spec", "selector"), "selects nothing"),
        ({"host": False, "allContainers": False}, ("spec", "selector"), "selects nothing"),
        (
            {"allContainers": True, "containers": {"ids": ["abc"]}},
            ("spec", "selector"),
            "already selects every container",
        ),
        ({"containers": {"ids": []}}, ("spec", "selector", "containers", "ids"), "at least one"),
        ({"containers": {"ids": ["x" * 129]}}, ("spec", "selector", "containers", "ids", 0), "128"),
        ({"containers": {"ids": ["web 1"]}}, ("spec", "selector", "containers", "ids", 0), "'_'"),
        ({"containers": {"ids": [""]}}, ("spec", "selector", "containers", "ids", 0), "1-128"),
        ({"containers": {}}, ("spec", "selector", "containers"), "at least one of ids, names"),
        ({"namespaces": {}}, ("spec", "selector", "namespaces"), "needs pid or net"),
        (
            {"allContainers": True, "namespaces": {"pid": [1]}},
            ("spec", "selector"),
            "already selects every container",
        ),
        (
            {"host": True, "namespaces": {"net": ["blue"]}},
            ("spec", "selector"),
            "not host processes",
        ),
        (
            {"namespaces": {"net": ["x" * 256]}},
            ("spec", "selector", "namespaces", "net", 0),
            "1-255",
        ),
    ],
)
def test_selectors_rejected(selector: dict[str, Any], loc: tuple[str, ...], fragment: str) -> None:
    [(got_loc, message)] = validation_errors(policy_data(selector=selector))
    assert got_loc == loc
    assert fragment in message


def test_selector_and_container_selector_build_from_python() -> None:
    selector = Selector(containers=ContainerSelector(ids=("abc",)), host=True)
    assert selector.containers is not None
    assert selector.containers.ids == ("abc",)
    assert not selector.all_containers


def test_empty_lists_are_errors_but_absent_keys_are_not_conditions() -> None:
    selector = ContainerSelector(names=("web-*",))
    assert (selector.ids, selector.images, dict(selector.labels)) == ((), (), {})
    with pytest.raises(ValidationError, match="leave out 'images'"):
        ContainerSelector(names=("web-*",), images=())


def test_namespace_selector_builds_from_python_and_keeps_ints_and_names_apart() -> None:
    namespaces = NamespaceSelector(net=("blue", 4026531840))
    assert namespaces.net == ("blue", 4026531840)
    assert namespaces.pid == ()
    assert Selector(namespaces=namespaces).namespaces == namespaces


def test_labels_are_read_only_hashable_and_equal_whatever_their_order() -> None:
    first = ExecPolicy.model_validate(
        policy_data(selector={"containers": {"labels": {"team": "blue", "app": "web"}}})
    )
    second = ExecPolicy.model_validate(
        policy_data(selector={"containers": {"labels": {"app": "web", "team": "blue"}}})
    )
    labels = first.spec.selector.containers.labels if first.spec.selector.containers else None

    assert isinstance(labels, Labels)
    assert first == second
    assert hash(first) == hash(second)
    assert labels == {"team": "blue", "app": "web"}
    assert not hasattr(labels, "__setitem__")
    assert first.model_dump()["spec"]["selector"]["containers"]["labels"] == {
        "team": "blue",
        "app": "web",
    }


# --- Booleans and numbers are strict ------------------------------------------------------------


@pytest.mark.parametrize("key", ["host", "allContainers"])
@pytest.mark.parametrize("value", ["yes", "true", "on", "1", 1, 0, "false", None])
def test_booleans_take_only_true_and_false(key: str, value: object) -> None:
    [(loc, message)] = validation_errors(policy_data(selector={key: value}))
    assert loc == ("spec", "selector", key)
    assert "valid boolean" in message


@pytest.mark.parametrize("value", ["4026532198", 4026532198.0, True, 0, -1, 2**32])
def test_namespace_inodes_take_only_32_bit_positive_integers(value: object) -> None:
    [(loc, message)] = validation_errors(policy_data(selector={"namespaces": {"pid": [value]}}))
    assert loc == ("spec", "selector", "namespaces", "pid", 0)
    assert "from 1 to 4294967295" in message


def test_the_largest_namespace_inode_is_accepted() -> None:
    ExecPolicy.model_validate(policy_data(selector={"namespaces": {"pid": [2**32 - 1]}}))


# --- What the kernel keys and metric labels cannot carry ---------------------------------------

SURROGATE = "x\ud800"


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        (policy_data({"names": [SURROGATE]}), ("spec", "rules", 0, "match", "names", 0)),
        (policy_data({"paths": ["/" + SURROGATE]}), ("spec", "rules", 0, "match", "paths", 0)),
        (policy_data({"dirs": ["/" + SURROGATE]}), ("spec", "rules", 0, "match", "dirs", 0)),
        (
            policy_data(selector={"containers": {"names": [SURROGATE]}}),
            ("spec", "selector", "containers", "names", 0),
        ),
        (
            policy_data(selector={"containers": {"images": [SURROGATE]}}),
            ("spec", "selector", "containers", "images", 0),
        ),
        (
            policy_data(selector={"containers": {"labels": {"team": SURROGATE}}}),
            ("spec", "selector", "containers", "labels", "team"),
        ),
        (
            policy_data(selector={"containers": {"labels": {SURROGATE: "blue"}}}),
            ("spec", "selector", "containers", "labels", SURROGATE),
        ),
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is(
    data: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        ExecPolicy.model_validate(data)
    [error] = info.value.errors()
    assert tuple(error["loc"]) + tuple((error.get("ctx") or {}).get("loc", ())) == loc
    assert "lone UTF-16 surrogate" in str(error["msg"]) + str(error.get("ctx"))


@pytest.mark.parametrize(
    ("where", "value"),
    [("metadata", {"name": SURROGATE}), ("rule", {"name": SURROGATE, "match": {"names": ["a"]}})],
)
def test_names_that_become_labels_refuse_surrogates(where: str, value: dict[str, Any]) -> None:
    data = policy_data()
    if where == "metadata":
        data["metadata"] = value
    else:
        data["spec"]["rules"] = [value]
    [(_, message)] = validation_errors(data)
    assert "lone UTF-16 surrogate" in message


def test_every_accepted_string_encodes_as_utf8() -> None:
    # What the map writer does with each key: it must not raise.
    policy = ExecPolicy.model_validate(
        policy_data({"names": ["é" * 31 + "n"], "paths": ["/opt/ünï/x"], "dirs": ["/tmp/日本"]})
    )
    match = policy.spec.rules[0].match
    for value in (*match.names, *match.paths, *match.dirs, policy.name):
        value.encode("utf-8")


def test_a_key_with_a_surrogate_is_named_not_crashed_on() -> None:
    data = policy_data()
    data["spec"][SURROGATE] = 1
    [(_, message)] = validation_errors(data)
    assert "lone UTF-16 surrogate" in message


@pytest.mark.parametrize(
    "selector",
    [
        {"containers": {"names": ["a\0b"]}},
        {"containers": {"images": ["nginx\0"]}},
        {"containers": {"labels": {"team": "a\0b"}}},
        {"containers": {"labels": {"te\0am": "blue"}}},
    ],
)
def test_nul_is_refused_in_selectors_too(selector: dict[str, Any]) -> None:
    [(_, message)] = validation_errors(policy_data(selector=selector))
    assert "NUL" in message


# --- What one rule may list: half of the kernel map its entries go in ---------------------------


@pytest.mark.parametrize(("field", "prefix"), [("names", "n"), ("paths", "/p"), ("dirs", "/d")])
def test_a_rule_may_fill_half_a_map_but_not_more(field: str, prefix: str) -> None:
    room = (abi.MAX_NAME_ENTRIES if field == "names" else abi.MAX_PATH_ENTRIES) // 2
    ExecPolicy.model_validate(policy_data({field: [f"{prefix}{i}" for i in range(room)]}))
    [(loc, message)] = validation_errors(
        policy_data({field: [f"{prefix}{i}" for i in range(room + 1)]})
    )
    assert loc == ("spec", "rules", 0, "match", field)
    assert f"{room + 1} {field} in one rule: a rule may list at most {room}" in message


def test_paths_and_dirs_of_a_rule_share_their_map() -> None:
    half = abi.MAX_PATH_ENTRIES // 4
    [(loc, message)] = validation_errors(
        policy_data(
            {
                "paths": [f"/p{i}" for i in range(half + 1)],
                "dirs": [f"/d{i}" for i in range(half)],
            }
        )
    )
    assert loc == ("spec", "rules", 0, "match")
    assert "paths and dirs together in one rule" in message
