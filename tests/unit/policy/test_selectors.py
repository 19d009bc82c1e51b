"""Selectors: which containers a policy selects by id, name, image, labels and namespaces.

Selections are compared by container name, which these tests give every container, so each
expectation reads as what `docker ps` would show. The last part checks what a user sees for
a selector mistake: the field path, the line and the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from enforcer.bpf import abi
from enforcer.containers import Container
from enforcer.enforce.compiler import compile_policies
from enforcer.enforce.selection import Selection, select
from enforcer.policy import ExecPolicy, load_policy_text
from enforcer.policy.images import ImageRef, image_matches, repository_forms, split_image

PID_WEB1, PID_WEB2, PID_API = 4026532201, 4026532202, 4026532203
NET_BLUE, NET_RED, NET_HOST = 4026532301, 4026532302, 4026531840
NETNS = {"blue": NET_BLUE, "red": NET_RED}
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


def container(
    name: str,
    image: str = "",
    *,
    cid: str = "",
    labels: dict[str, str] | None = None,
    pid_ns: int | None = None,
    net_ns: int | None = None,
    cgroup: int = 0,
) -> Container:
    return Container(
        id=cid or f"{name}-{'0' * 8}",
        runtime="docker",
        name=name,
        image=image,
        labels=labels or {},
        cgroup_ids=(cgroup,) if cgroup else (),
        pid_ns=pid_ns,
        net_ns=net_ns,
    )


WEB1 = container(
    "web-1",
    "nginx:1.25",
    cid="aaaa1111" + "1" * 56,
    labels={"team": "blue", "app": "web"},
    pid_ns=PID_WEB1,
    net_ns=NET_BLUE,
    cgroup=11,
)
WEB2 = container(
    "web-2",
    "docker.io/library/nginx:1.24",
    cid="aaaa2222" + "2" * 56,
    labels={"team": "red", "app": "web"},
    pid_ns=PID_WEB2,
    net_ns=NET_RED,
    cgroup=12,
)
API = container(
    "api",
    "registry.example.com/team/api:v1",
    cid="bbbb3333" + "3" * 56,
    labels={"team": "blue", "app.kubernetes.io/name": "api"},
    pid_ns=PID_API,
    net_ns=NET_BLUE,
    cgroup=13,
)
BOX = container("box", "localhost/busybox:test", cid="cccc4444" + "4" * 56, cgroup=14)
REG = container("reg-app", "localhost:5000/app:1", cid="dddd5555" + "5" * 56, net_ns=NET_HOST)
# runc knows neither name nor image; the inventory names it by its id.
BARE = Container(id="bare", runtime="runc", name="bare", cgroup_ids=(16,))
ALL = (WEB1, WEB2, API, BOX, REG, BARE)


def policy(selector: dict[str, Any], name: str = "p") -> ExecPolicy:
    return ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": name},
            "spec": {"selector": selector, "rules": [{"name": "r", "match": {"names": ["nc"]}}]},
        }
    )


def selection(selector: dict[str, Any], containers: tuple[Container, ...] = ALL) -> Selection:
    return select(policy(selector), containers, NETNS)


def names(selector: dict[str, Any], containers: tuple[Container, ...] = ALL) -> list[str]:
    """The names of the selected containers, in selection order."""
    by_id = {c.id: c.name for c in containers}
    return [by_id[cid] for cid in selection(selector, containers).container_ids]


# --- Each key alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"containers": {"ids": [API.id[:8]]}}, ["api"]),
        ({"containers": {"names": ["web-*"]}}, ["web-1", "web-2"]),
        ({"containers": {"names": ["api"]}}, ["api"]),
        ({"containers": {"names": ["bare"]}}, ["bare"]),
        ({"containers": {"images": ["nginx"]}}, ["web-1", "web-2"]),
        ({"containers": {"images": ["busybox:test"]}}, ["box"]),
        ({"containers": {"labels": {"team": "blue"}}}, ["web-1", "api"]),
        ({"namespaces": {"pid": [PID_WEB2]}}, ["web-2"]),
        ({"namespaces": {"net": ["blue"]}}, ["web-1", "api"]),
        ({"namespaces": {"net": [NET_HOST]}}, ["reg-app"]),
    ],
)
def test_each_key_alone(selector: dict[str, Any], expected: list[str]) -> None:
    assert names(selector) == expected
    assert selection(selector).unresolved == ()
    assert selection(selector).host is False


def test_names_are_case_sensitive_globs_on_the_whole_name() -> None:
    assert names({"containers": {"names": ["WEB-*"]}}) == []
    assert names({"containers": {"names": ["web"]}}) == []
    assert names({"containers": {"names": ["web-?"]}}) == ["web-1", "web-2"]
    assert names({"containers": {"names": ["web-[2-9]"]}}) == ["web-2"]


def test_a_container_without_name_or_image_matches_no_pattern_not_even_a_star() -> None:
    nameless = Container(id="x" * 64, runtime="runc")

    assert names({"containers": {"names": ["*"]}}, (nameless,)) == []
    assert names({"containers": {"images": ["*"]}}, (nameless,)) == []


# --- OR within a key, AND across keys ----------------------------------------------------------


def test_entries_of_one_key_are_ored_and_kept_in_container_order() -> None:
    assert names({"containers": {"names": ["api", "web-1"]}}) == ["web-1", "api"]
    assert names({"containers": {"images": ["busybox", "registry.example.com/*"]}}) == [
        "api",
        "box",
    ]
    assert names({"namespaces": {"net": ["red", NET_HOST]}}) == ["web-2", "reg-app"]
    assert names({"namespaces": {"pid": [PID_API, PID_WEB1]}}) == ["web-1", "api"]


def test_ids_are_reported_in_container_order_not_in_the_order_listed() -> None:
    assert names({"containers": {"ids": [API.id, WEB1.id[:12]]}}) == ["web-1", "api"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"containers": {"names": ["web-*"], "labels": {"team": "blue"}}}, ["web-1"]),
        ({"containers": {"images": ["nginx"]}, "namespaces": {"net": ["blue"]}}, ["web-1"]),
        ({"containers": {"labels": {"team": "blue"}}, "namespaces": {"pid": [PID_API]}}, ["api"]),
        ({"namespaces": {"pid": [PID_WEB1, PID_API], "net": ["red"]}}, []),
        (
            {"containers": {"ids": [WEB1.id, WEB2.id], "images": ["nginx:1.24"]}},
            ["web-2"],
        ),
        (
            {
                "containers": {
                    "names": ["web-*", "api"],
                    "images": ["nginx:1.25", "*/team/*"],
                    "labels": {"team": "blue"},
                },
                "namespaces": {"net": ["blue"], "pid": [PID_API]},
            },
            ["api"],
        ),
    ],
)
def test_keys_are_anded(selector: dict[str, Any], expected: list[str]) -> None:
    assert names(selector) == expected


def test_an_id_filtered_out_by_another_key_is_resolved_not_reported() -> None:
    got = selection({"containers": {"ids": [API.id[:8]], "names": ["web-*"]}})

    assert got.container_ids == ()
    assert got.unresolved == ()


# --- Images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("nginx", ImageRef("nginx", None, None)),
        ("nginx:1.25", ImageRef("nginx", "1.25", None)),
        ("localhost:5000/app", ImageRef("localhost:5000/app", None, None)),
        ("localhost:5000/app:1", ImageRef("localhost:5000/app", "1", None)),
        (f"nginx@{DIGEST}", ImageRef("nginx", None, DIGEST)),
        (f"nginx:1.25@{DIGEST}", ImageRef("nginx", "1.25", DIGEST)),
        ("registry.example.com/team/*:v1", ImageRef("registry.example.com/team/*", "v1", None)),
    ],
)
def test_split_image_tells_a_tag_from_a_registry_port(reference: str, expected: ImageRef) -> None:
    assert split_image(reference) == expected


@pytest.mark.parametrize(
    ("repository", "forms"),
    [
        ("docker.io/library/nginx", ("docker.io/library/nginx", "nginx")),
        ("docker.io/team/app", ("docker.io/team/app", "team/app")),
        ("localhost/busybox", ("localhost/busybox", "busybox")),
        ("nginx", ("nginx", "docker.io/library/nginx")),
        ("team/app", ("team/app", "docker.io/team/app")),
        ("localhost:5000/app", ("localhost:5000/app",)),
        ("registry.example.com/team/api", ("registry.example.com/team/api",)),
    ],
)
def test_repository_forms(repository: str, forms: tuple[str, ...]) -> None:
    assert repository_forms(repository) == forms


@pytest.mark.parametrize(
    ("pattern", "image", "expected"),
    [
        # Short and long forms, either way round.
        ("nginx", "nginx:1.25", True),
        ("nginx", "docker.io/library/nginx:1.25", True),
        ("nginx:1.25", "docker.io/library/nginx:1.25", True),
        ("docker.io/library/nginx", "nginx:1.25", True),
        ("docker.io/library/nginx:1.25", "docker.io/library/nginx:1.25", True),
        ("team/app", "docker.io/team/app:2", True),
        ("busybox:test", "localhost/busybox:test", True),
        ("localhost/busybox", "localhost/busybox:test", True),
        # A tag narrows; no tag matches every tag; a bare image has the tag latest.
        ("nginx:1.24", "nginx:1.25", False),
        ("nginx:1.*", "docker.io/library/nginx:1.25", True),
        ("nginx", "nginx", True),
        ("nginx:latest", "nginx", True),
        ("nginx:latest", f"nginx@{DIGEST}", False),
        # A glob covers the whole repository, not a prefix of it; case matters.
        ("nginx", "nginx-extras:1", False),
        ("nginx*", "nginx-extras:1", True),
        ("NGINX", "nginx:1.25", False),
        ("registry.example.com/team/*:v1", "registry.example.com/team/api:v1", True),
        ("registry.example.com/team/*:v1", "registry.example.com/team/api:v2", False),
        ("*/team/*", "registry.example.com/team/api:v1", True),
        # A registry with a port: the port is not a tag.
        ("localhost:5000/app:1", "localhost:5000/app:1", True),
        ("localhost:5000/app", "localhost:5000/app:1", True),
        ("localhost:5000/app:2", "localhost:5000/app:1", False),
        ("app", "localhost:5000/app:1", False),
        ("localhost:5000/*", "localhost:5000/app:1", True),
        # A digest matches exactly.
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}", True),
        (f"nginx@{DIGEST}", f"nginx:1.25@{DIGEST}", True),
        (f"nginx:1.25@{DIGEST}", f"nginx:1.25@{DIGEST}", True),
        (f"nginx:1.24@{DIGEST}", f"nginx:1.25@{DIGEST}", False),
        (f"nginx@{DIGEST}", f"nginx@{OTHER_DIGEST}", False),
        (f"nginx@{DIGEST}", "nginx:1.25", False),
        (f"nginx@{DIGEST}", f"redis@{DIGEST}", False),
        ("nginx", f"docker.io/library/nginx@{DIGEST}", True),
        # An unknown image matches nothing.
        ("*", "", False),
    ],
)
def test_image_matches(pattern: str, image: str, expected: bool) -> None:
    assert image_matches(pattern, image) is expected


def test_images_select_containers_whatever_form_the_runtime_recorded() -> None:
    assert names({"containers": {"images": ["docker.io/library/nginx:1.25"]}}) == ["web-1"]
    assert names({"containers": {"images": ["nginx:1.24"]}}) == ["web-2"]
    assert names({"containers": {"images": ["localhost/busybox"]}}) == ["box"]
    assert names({"containers": {"images": ["localhost:5000/app:1"]}}) == ["reg-app"]


# --- Labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web"}, ["web-1", "web-2"]),  # some of the container's labels: enough
        ({"app": "web", "team": "red"}, ["web-2"]),  # every label given must match
        ({"app.kubernetes.io/name": "api"}, ["api"]),
        ({"team": "green"}, []),  # the value differs
        ({"app": "web", "tier": "front"}, []),  # a label no container has
        ({"team": "Blue"}, []),  # values are exact, case included
        ({"team": "blu*"}, []),  # and not globs
    ],
)
def test_labels(labels: dict[str, str], expected: list[str]) -> None:
    assert names({"containers": {"labels": labels}}) == expected


def test_an_empty_label_value_matches_only_an_empty_value() -> None:
    flagged = container("flagged", labels={"canary": ""})
    plain = container("plain", labels={"other": ""})

    assert names({"containers": {"labels": {"canary": ""}}}, (flagged, plain)) == ["flagged"]


# --- Namespaces -------------------------------------------------------------------------------


def test_a_net_namespace_by_name_and_by_inode_select_the_same_containers() -> None:
    assert names({"namespaces": {"net": ["blue"]}}) == names({"namespaces": {"net": [NET_BLUE]}})


def test_a_missing_netns_name_matches_nothing_and_is_reported() -> None:
    got = selection({"namespaces": {"net": ["green", "red"]}})

    assert names({"namespaces": {"net": ["green", "red"]}}) == ["web-2"]
    assert got.unresolved == ("network namespace 'green' does not exist",)


def test_netns_names_come_from_the_caller_only() -> None:
    got = select(policy({"namespaces": {"net": ["blue"]}}), ALL)

    assert got.container_ids == ()
    assert got.unresolved == ("network namespace 'blue' does not exist",)


def test_a_quoted_number_is_a_netns_name() -> None:
    numbered = {"4026532301": NET_RED}
    got = select(policy({"namespaces": {"net": [str(NET_BLUE)]}}), ALL, numbered)

    assert [c.name for c in ALL if c.id in got.container_ids] == ["web-2"]


def test_containers_with_unknown_namespaces_never_match_namespace_keys() -> None:
    unknown = (BOX, BARE)

    assert names({"namespaces": {"net": ["blue", "red", NET_HOST]}}, unknown) == []
    assert names({"namespaces": {"pid": [PID_WEB1]}}, unknown) == []


def test_unresolved_ids_and_netns_names_are_both_reported() -> None:
    got = selection({"containers": {"ids": ["ffff"]}, "namespaces": {"net": ["green"]}})

    assert got.unresolved == (
        "ffff: matches no running container",
        "network namespace 'green' does not exist",
    )


# --- Host and allContainers -------------------------------------------------------------------


def test_host_adds_the_host_to_the_selected_containers() -> None:
    got = selection({"host": True, "containers": {"names": ["api"]}})

    assert got.host is True
    assert names({"host": True, "containers": {"names": ["api"]}}) == ["api"]


def test_host_with_containers_and_namespaces_narrows_only_the_containers() -> None:
    selector = {
        "host": True,
        "containers": {"labels": {"app": "web"}},
        "namespaces": {"net": ["red"]},
    }

    assert selection(selector).host is True
    assert names(selector) == ["web-2"]


def test_all_containers_selects_every_container_in_order() -> None:
    assert names({"allContainers": True}) == [c.name for c in ALL]
    assert selection({"allContainers": True, "host": True}).host is True


def test_compile_passes_netns_names_through_to_selection() -> None:
    compiled = compile_policies(
        [policy({"namespaces": {"net": ["red"]}}, "red-only")], ALL, netns=NETNS
    )

    assert compiled.selections[0].container_ids == (WEB2.id,)
    assert compiled.maps.cgroup_sets[12] != abi.NO_SET
    assert {compiled.maps.cgroup_sets[cg] for cg in (11, 13, 14, 16)} == {abi.NO_SET}
    assert compiled.maps.host_set_id == abi.NO_SET


# --- What a user sees for a selector mistake -----------------------------------------------------

SOURCE = Path("policies/p.yaml")


def selector_problem(selector_yaml: str) -> tuple[int | None, str, str]:
    """(line, field, message) of the one problem a selector has; the selector starts on line 6."""
    text = (
        "apiVersion: enforcer/v1\n"
        "kind: ExecPolicy\n"
        "metadata: {name: p}\n"
        "spec:\n"
        "  rules: [{name: r, match: {names: [nc]}}]\n"
        "  selector:\n" + "".join(f"    {line}\n" for line in selector_yaml.splitlines())
    )
    result = load_policy_text(text, SOURCE)
    assert not result.policies
    [problem] = result.problems
    return problem.line, problem.field, problem.message


@pytest.mark.parametrize(
    ("selector_yaml", "field", "fragment"),
    [
        ("containers: {}", "spec.selector.containers", "at least one of ids, names, images"),
        ("containers: {names: []}", "spec.selector.containers.names", "or leave out 'names'"),
        ("containers: {names: ['']}", "spec.selector.containers.names[0]", "glob such as"),
        ("containers: {names: ['web 1']}", "spec.selector.containers.names[0]", "`docker ps`"),
        ("containers: {names: [a, a]}", "spec.selector.containers.names[1]", "more than once"),
        ("containers: {names: [1]}", "spec.selector.containers.names[0]", "put quotes"),
        ("containers: {images: []}", "spec.selector.containers.images", "leave out 'images'"),
        ("containers: {images: ['']}", "spec.selector.containers.images[0]", "'nginx:1.25'"),
        ("containers: {images: ['nginx:']}", "spec.selector.containers.images[0]", "every tag"),
        ("containers: {images: [':1.25']}", "spec.selector.containers.images[0]", "repository"),
        ("containers: {images: [nginx@sha256:ab]}", "spec.selector.containers.images[0]", "64"),
        (
            f"containers: {{images: ['ngin*@{DIGEST}']}}",
            "spec.selector.containers.images[0]",
            "drop the digest",
        ),
        ("containers: {labels: {}}", "spec.selector.containers.labels", "at least one label"),
        ("containers: {labels: [team=blue]}", "spec.selector.containers.labels", "a mapping"),
        ("containers: {labels: {team: 1}}", "spec.selector.containers.labels.team", "quotes"),
        ("containers: {labels: {1: blue}}", "spec.selector.containers.labels.1", "quotes"),
        ("containers: {labels: {'': blue}}", "spec.selector.containers.labels", "key is empty"),
        ("containers: {labels: {'a b': c}}", "spec.selector.containers.labels.a b", "no spaces"),
        ("containers: {label: {a: b}}", "spec.selector.containers.label", "mean 'labels'"),
        ("namespaces: {}", "spec.selector.namespaces", "needs pid or net"),
        ("namespace: {pid: [1]}", "spec.selector.namespace", "did you mean 'namespaces'"),
        ("namespaces: {netns: [a]}", "spec.selector.namespaces.netns", "mean 'net'"),
        ("namespaces: {pid: []}", "spec.selector.namespaces.pid", "leave out 'pid'"),
        ("namespaces: {pid: [0]}", "spec.selector.namespaces.pid[0]", "lsns -t pid"),
        ("namespaces: {pid: [true]}", "spec.selector.namespaces.pid[0]", "true is not a pid"),
        ("namespaces: {pid: ['4026532198']}", "spec.selector.namespaces.pid[0]", "without quotes"),
        ("namespaces: {pid: [7, 7]}", "spec.selector.namespaces.pid[1]", "more than once"),
        ("namespaces: {net: [-3]}", "spec.selector.namespaces.net[0]", "lsns -t net"),
        ("namespaces: {net: [a/b]}", "spec.selector.namespaces.net[0]", "ip netns list"),
        ("namespaces: {net: ['..']}", "spec.selector.namespaces.net[0]", "ip netns list"),
        ("namespaces: {net: [1.5]}", "spec.selector.namespaces.net[0]", "ip netns list"),
        ("namespaces: {net: [blue, blue]}", "spec.selector.namespaces.net[1]", "more than once"),
        (
            "allContainers: true\nnamespaces: {net: [blue]}",
            "spec.selector.allContainers",
            "remove either 'namespaces' or 'allContainers'",
        ),
        (
            "allContainers: true\ncontainers: {names: [web]}\nnamespaces: {net: [blue]}",
            "spec.selector.allContainers",
            "remove either 'containers' and 'namespaces' or 'allContainers'",
        ),
        (
            "host: true\nnamespaces: {net: [blue]}",
            "spec.selector.namespaces",
            "namespaces select containers, not host processes",
        ),
        ("host: false", "spec.selector", "selects nothing"),
    ],
)
def test_selector_mistakes_name_the_field(selector_yaml: str, field: str, fragment: str) -> None:
    _, got_field, message = selector_problem(selector_yaml)

    assert got_field == field
    assert fragment in message
    assert not message.startswith("Value error")


def test_selector_mistakes_point_at_their_line() -> None:
    selector = (
        "containers:\n"  # line 7
        "  names: [web-*]\n"
        "  images:\n"
        "    - nginx\n"
        "    - 'nginx:'\n"  # line 11
        "  labels: {team: blue}\n"
    )
    assert selector_problem(selector)[:2] == (11, "spec.selector.containers.images[1]")

    selector = "namespaces:\n  pid: [4026532198]\n  net:\n    - blue\n    - 'a b'\n"
    assert selector_problem(selector)[:2] == (11, "spec.selector.namespaces.net[1]")

    selector = "host: true\nnamespaces:\n  net: [blue]\n"
    assert selector_problem(selector)[:2] == (8, "spec.selector.namespaces")

    selector = "containers:\n  labels:\n    team: blue\n    tier: 3\n"
    assert selector_problem(selector)[:2] == (10, "spec.selector.containers.labels.tier")


def test_the_documented_selector_loads() -> None:
    selector = (
        "containers:\n"
        '  ids: ["4f1c2a9b3d7e"]\n'
        '  names: ["web-*"]\n'
        '  images: ["nginx", "registry.example.com/team/*:v1"]\n'
        "  labels: {team: blue, app.kubernetes.io/name: api}\n"
        "namespaces:\n"
        "  pid: [4026532198]\n"
        "  net: [blue, 4026531840]\n"
        "host: true\n"
    )
    text = (
        "apiVersion: enforcer/v1\nkind: ExecPolicy\nmetadata: {name: p}\nspec:\n"
        "  rules: [{name: r, match: {names: [nc]}}]\n  selector:\n"
        + "".join(f"    {line}\n" for line in selector.splitlines())
    )

    [loaded] = load_policy_text(text, SOURCE).policies

    got = loaded.policy.spec.selector
    assert got.containers is not None and got.namespaces is not None
    assert got.containers.names == ("web-*",)
    assert got.containers.images == ("nginx", "registry.example.com/team/*:v1")
    assert dict(got.containers.labels) == {"team": "blue", "app.kubernetes.io/name": "api"}
    assert got.namespaces.pid == (4026532198,)
    assert got.namespaces.net == ("blue", 4026531840)
    assert got.host


def test_model_errors_carry_the_path_below_the_selector() -> None:
    policy_data = {
        "apiVersion": "enforcer/v1",
        "kind": "ExecPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "selector": {"namespaces": {"net": ["blue", "no way"]}},
            "rules": [{"name": "r", "match": {"names": ["nc"]}}],
        },
    }
    with pytest.raises(ValidationError) as info:
        ExecPolicy.model_validate(policy_data)

    [error] = info.value.errors()
    assert error["loc"] == ("spec", "selector", "namespaces", "net", 1)
