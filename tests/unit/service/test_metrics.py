"""The metrics endpoint as Prometheus sees it: real HTTP on loopback, parsed by the library."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from enforcer.errors import EnforcerError
from enforcer.service.metrics import (
    MetricsAddressError,
    MetricsServer,
    MetricsSource,
    execs_by_container,
    parse_address,
    serve,
)
from enforcer.service.protocol import PolicyStates, ProtocolError, StatsReply, parse

SCRAPE_TIMEOUT_S = 5.0
CONTAINER = "3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e"


@dataclass
class StaticSource:
    """A MetricsSource holding its answers as JSON; tests change them between scrapes.

    Each reading parses them into the typed reports, as `enforcer stats` parses the daemon's.
    """

    tree: dict[str, object] = field(default_factory=lambda: {"policies": []})
    states: dict[str, int] = field(default_factory=dict)
    drops: int = 0
    full: dict[str, int] = field(default_factory=dict)

    def stats(self) -> StatsReply:
        return parse(StatsReply, self.tree)

    def policy_states(self) -> PolicyStates:
        return parse(PolicyStates, {"ok": 0, "stale": 0, "error": 0} | self.states)

    def event_drops(self) -> int:
        return self.drops

    def full_maps(self) -> Mapping[str, int]:
        return self.full


def container(cid: str, blocked: int, audited: int, cgroup_id: int = 1) -> dict[str, object]:
    return {
        "id": cid,
        "name": "web" if cid != "host" else "",
        "cgroup_id": cgroup_id,
        "blocked": blocked,
        "audited": audited,
        "programs": [{"program": "/usr/bin/id", "blocked": blocked, "audited": audited}],
    }


def stats_tree() -> dict[str, object]:
    """`enforcer stats --json`: two host cgroups, one container, a policy with no counts yet."""
    return {
        "policies": [
            {
                "name": "no-recon",
                "blocked": 9,
                "audited": 1,
                "rules": [
                    {
                        "name": "recon",
                        "blocked": 9,
                        "audited": 1,
                        "containers": [
                            container("host", 2, 0, cgroup_id=11),
                            container("host", 3, 1, cgroup_id=12),
                            container(CONTAINER, 4, 0, cgroup_id=13),
                        ],
                    }
                ],
            },
            {"name": "empty", "blocked": 0, "audited": 0, "rules": []},
        ]
    }


@pytest.fixture
def source() -> StaticSource:
    return StaticSource(tree=stats_tree(), states={"ok": 2, "error": 1}, drops=7)


@pytest.fixture
def server(source: StaticSource) -> Iterator[MetricsServer]:
    with serve("127.0.0.1:0", source) as running:
        yield running


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> sorted labels -> value."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def execs(policy: str, rule: str, container: str) -> tuple[tuple[str, str], ...]:
    return (("container", container), ("policy", policy), ("rule", rule))


def test_blocked_and_audited_by_policy_rule_and_container(server: MetricsServer) -> None:
    samples = scrape(server.url)

    # The host's cgroups add up to one "host" series; a container is its id.
    assert samples["enforcer_execs_blocked_total"] == {
        execs("no-recon", "recon", "host"): 5,
        execs("no-recon", "recon", CONTAINER): 4,
    }
    assert samples["enforcer_execs_audited_total"] == {
        execs("no-recon", "recon", "host"): 1,
        execs("no-recon", "recon", CONTAINER): 0,
    }


def test_policies_by_state_and_dropped_events(server: MetricsServer) -> None:
    samples = scrape(server.url)

    # "stale" is exported at 0 though the source has none: alerts need no absent().
    assert samples["enforcer_policies"] == {
        (("state", "error"),): 1,
        (("state", "ok"),): 2,
        (("state", "stale"),): 0,
    }
    assert samples["enforcer_events_dropped_total"] == {(): 7}


def test_values_are_read_at_each_scrape(server: MetricsServer, source: StaticSource) -> None:
    scrape(server.url)
    source.tree = {
        "policies": [
            {
                "name": "no-recon",
                "blocked": 12,
                "audited": 0,
                "rules": [
                    {
                        "name": "recon",
                        "blocked": 12,
                        "audited": 0,
                        "containers": [container("host", 12, 0)],
                    }
                ],
            }
        ]
    }
    source.states = {"ok": 3}
    source.drops = 8
    source.full = {"held_lost": 0, "cgroups_unplaced": 3}

    samples = scrape(server.url)

    assert samples["enforcer_execs_blocked_total"] == {execs("no-recon", "recon", "host"): 12}
    assert samples["enforcer_policies"][(("state", "ok"),)] == 3
    assert samples["enforcer_policies"][(("state", "error"),)] == 0
    assert samples["enforcer_events_dropped_total"] == {(): 8}
    assert samples["enforcer_map_full_total"] == {
        (("what", "cgroups_unplaced"),): 3,
        (("what", "held_lost"),): 0,
    }


def test_no_policies_still_exports_the_gauges() -> None:
    with serve("127.0.0.1:0", StaticSource()) as running:
        samples = scrape(running.url)

    assert "enforcer_execs_blocked_total" not in samples
    assert set(samples["enforcer_policies"].values()) == {0}
    assert samples["enforcer_events_dropped_total"] == {(): 0}


def test_own_registry_with_process_metrics_only(server: MetricsServer) -> None:
    names = set(scrape(server.url))

    assert "process_resident_memory_bytes" in names
    # The library's global registry (python_gc_*, python_info) is not served.
    assert not any(name.startswith("python_") for name in names)


def test_every_interface_takes_ipv4_and_ipv6(source: StaticSource) -> None:
    with serve(":0", source) as running:
        _host, port = running.address
        assert scrape(f"http://127.0.0.1:{port}/metrics")["enforcer_events_dropped_total"]
        if socket.has_ipv6 and _has_ipv6_loopback():
            assert scrape(f"http://[::1]:{port}/metrics")["enforcer_events_dropped_total"]


@pytest.mark.skipif(not socket.has_ipv6, reason="Python was built without IPv6")
def test_bracketed_ipv6_address(source: StaticSource) -> None:
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback address (::1) on this host")
    with serve("[::1]:0", source) as running:
        assert running.address[0] == "::1"
        assert running.url.startswith("http://[::1]:")
        assert scrape(running.url)["enforcer_events_dropped_total"] == {(): 7}


def test_close_stops_listening(source: StaticSource) -> None:
    running = serve("127.0.0.1:0", source)
    url = running.url
    scrape(url)

    running.close()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S)


def test_port_in_use_is_a_clear_error(server: MetricsServer, source: StaticSource) -> None:
    _host, port = server.address

    with pytest.raises(MetricsAddressError, match="another process listens there"):
        serve(f"127.0.0.1:{port}", source)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9477", ("127.0.0.1", 9477)),
        ("[::1]:9477", ("::1", 9477)),
        (":9477", ("", 9477)),
        ("localhost:0", ("localhost", 0)),
        ("[fe80::1%eth0]:9477", ("fe80::1%eth0", 9477)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("9477", "no port"),
        ("127.0.0.1", "no port"),
        ("[::1]", "no port"),
        ("::1:9477", "put an IPv6 address in brackets"),
        ("127.0.0.1:http", "expected HOST:PORT"),
        ("127.0.0.1:70000", "above 65535"),
        ("[]:9477", "empty brackets"),
        ("", "no port"),
    ],
)
def test_bad_address_says_what_to_write(address: str, reason: str) -> None:
    with pytest.raises(MetricsAddressError, match=reason) as caught:
        parse_address(address)

    assert isinstance(caught.value, EnforcerError)
    assert caught.value.address == address


def test_unresolvable_host_is_a_clear_error(source: StaticSource) -> None:
    with pytest.raises(MetricsAddressError, match="cannot resolve"):
        serve("no-such-host.invalid:0", source)


def test_static_source_is_a_metrics_source() -> None:
    # mypy checks the assignment: the test double is the real interface.
    checked: MetricsSource = StaticSource()
    assert checked.event_drops() == 0


def test_stats_are_summed_from_the_parsed_report() -> None:
    counts = execs_by_container(parse(StatsReply, stats_tree()))

    assert counts == {
        ("no-recon", "recon", "host"): (5, 1),
        ("no-recon", "recon", CONTAINER): (4, 0),
    }


def test_a_report_of_the_wrong_shape_is_refused() -> None:
    counted_as_text = container("host", 2, 0) | {"blocked": "2"}
    rule = {"name": "recon", "blocked": 2, "audited": 0, "containers": [counted_as_text]}
    tree = {"policies": [{"name": "no-recon", "blocked": 2, "audited": 0, "rules": [rule]}]}

    with pytest.raises(ProtocolError, match=r"policies\[0\]\.rules\[0\]\.containers\[0\]"):
        parse(StatsReply, tree)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
