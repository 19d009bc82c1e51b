"""The Prometheus endpoint: off unless `enforcer run --metrics ADDR` asks for it.

Nothing is counted twice: at each scrape the collector reads the kernel's
counters through a `MetricsSource` (the daemon's `Reports`), so the values are
those `enforcer stats` shows. The kernel's counters only grow, as Prometheus
expects of a counter; should they start again from zero (new maps), rate()
sees an ordinary counter reset.

Metrics, all on a registry of this module's own (never the library's global one):

    enforcer_execs_blocked_total{policy,rule,container}   counter
    enforcer_execs_audited_total{policy,rule,container}   counter
    enforcer_policies{state}                               gauge: ok, stale, error
    enforcer_events_dropped_total                          counter
    process_*                                              the daemon's CPU, memory, fds

`container` is the container id, or "host" for processes in no container.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from enforcer.errors import EnforcerError
from enforcer.service.protocol import PolicyStates, StatsReply

log = logging.getLogger(__name__)

HOST = "host"
# A scraper that stops sending mid-request loses its connection after this long.
REQUEST_TIMEOUT_SECONDS = 10.0

_ADDRESS = re.compile(r"^(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")


class MetricsAddressError(EnforcerError):
    """Raised when the `--metrics` address cannot be parsed or listened on.

    `address` is the text as given; `reason` says what is wrong with it.
    """

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"metrics address {address!r}: {reason}")


class MetricsSource(Protocol):
    """What the collector reads at each scrape (the daemon's `service.reports.Reports`)."""

    def stats(self) -> StatsReply:
        """The counts `enforcer stats` shows: policy -> rule -> container -> program."""
        ...

    def policy_states(self) -> PolicyStates:
        """How many policies are in each state."""
        ...

    def event_drops(self) -> int:
        """Events the kernel could not hand to the daemon (ring buffer full)."""
        ...

    def full_maps(self) -> Mapping[str, int]:
        """Writes that found a BPF map full, by what was lost (bpf.counters.Counters.full_maps)."""
        ...


class EnforcerCollector:
    """Turns one `MetricsSource` reading into Prometheus metric families."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry check for clashes without reading the source.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        blocked, audited, policies, dropped, full = self._families()
        for (policy, rule, container), (n_blocked, n_audited) in sorted(
            execs_by_container(self._source.stats()).items()
        ):
            blocked.add_metric([policy, rule, container], n_blocked)
            audited.add_metric([policy, rule, container], n_audited)
        # Every state, at 0 too, so alerts need no absent().
        states = self._source.policy_states()
        by_state = {"ok": states.ok, "stale": states.stale, "error": states.error}
        for state, count in sorted(by_state.items()):
            policies.add_metric([state], count)
        dropped.add_metric([], self._source.event_drops())
        for what, count in sorted(self._source.full_maps().items()):
            full.add_metric([what], count)
        return [blocked, audited, policies, dropped, full]

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        labels = ["policy", "rule", "container"]
        return (
            CounterMetricFamily("enforcer_execs_blocked", "Execs a rule killed.", labels=labels),
            CounterMetricFamily(
                "enforcer_execs_audited", "Execs a rule matched and let run (audit).", labels=labels
            ),
            GaugeMetricFamily(
                "enforcer_policies",
                "Policies by state: ok (enforced as written), stale (the last good version "
                "enforced, its file now failing validation), error (files failing validation).",
                labels=["state"],
            ),
            CounterMetricFamily(
                "enforcer_events_dropped",
                "Kernel events lost because the ring buffer was full.",
            ),
            CounterMetricFamily(
                "enforcer_map_full",
                "Writes that found a BPF map full, by what it cost: cgroups_unplaced (a new "
                "cgroup takes its nearest ancestor's policies), held_unstored (a held exec "
                "known from its event only), held_lost (an exec that could not be held ran), "
                "uncounted_hits (hits decided but not counted).",
                labels=["what"],
            ),
        )


def execs_by_container(stats: StatsReply) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(policy, rule, container id or "host") -> (blocked, audited), from a stats report.

    The host's many cgroups are one "host" container; programs are summed.
    """
    counts: dict[tuple[str, str, str], tuple[int, int]] = {}
    for policy in stats.policies:
        for rule in policy.rules:
            for container in rule.containers:
                key = (policy.name, rule.name, container.id or HOST)
                blocked, audited = counts.get(key, (0, 0))
                counts[key] = (blocked + container.blocked, audited + container.audited)
    return counts


def make_registry(source: MetricsSource) -> CollectorRegistry:
    """A registry of its own with the enforcer's metrics and the process's."""
    registry = CollectorRegistry()
    registry.register(EnforcerCollector(source))
    ProcessCollector(registry=registry)
    return registry


def parse_address(address: str) -> tuple[str, int]:
    """Splits "127.0.0.1:9477", "[::1]:9477" or ":9477" into (host, port).

    The host comes without brackets; "" (from ":9477") means every interface,
    IPv6 and IPv4. A host name is allowed and resolved when binding; port 0
    means any free port.
    """
    match = _ADDRESS.match(address.strip())
    if match is None:
        if address.count(":") > 1 and not address.startswith("["):
            reason = "put an IPv6 address in brackets, e.g. [::1]:9477"
        elif ":" not in address.rpartition("]")[2]:
            reason = "no port: write HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:9477"
        else:
            reason = "expected HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:9477"
        raise MetricsAddressError(address, reason)
    port = int(match["port"])
    if port > 65535:
        raise MetricsAddressError(address, f"port {port} is above 65535")
    if match["ipv6"] is not None:
        if not match["ipv6"]:
            raise MetricsAddressError(
                address, "empty brackets: write [::]:PORT for every interface"
            )
        return match["ipv6"], port
    return match["host"], port


class _QuietHandler(WSGIRequestHandler):
    """Scrapes are not logged (wsgiref writes each request to stderr)."""

    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics request: " + format, *args)


class _HTTPServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        super().__init__(address, _QuietHandler)

    def server_bind(self) -> None:
        # IPv6 sockets take IPv4 too ("::" is every interface of both families),
        # whatever net.ipv6.bindv6only says.
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: it resolves the host's FQDN, a DNS query at startup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class MetricsServer:
    """The HTTP endpoint serving one registry on a thread of its own; `close()` stops it."""

    def __init__(self, httpd: _HTTPServer) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="enforcer-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: the port is known even when 0 was asked for."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def serve(address: str, source: MetricsSource) -> MetricsServer:
    """Starts serving `source`'s metrics on `address` (see `parse_address`).

    Raises MetricsAddressError when the address is malformed or cannot be bound.
    """
    host, port = parse_address(address)
    httpd = _bind(address, host, port)
    httpd.set_app(make_wsgi_app(make_registry(source)))
    server = MetricsServer(httpd)
    log.info("metrics on %s", server.url)
    return server


def _bind(address: str, host: str, port: int) -> _HTTPServer:
    candidates = (
        [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
        if not host
        else _resolve(address, host, port)
    )
    error: OSError | None = None
    for family, ip in candidates:
        try:
            return _HTTPServer((ip, port), family)
        except OSError as e:
            error = e
            # Every interface on a host without IPv6: fall back to IPv4 only.
            if not host and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue
            break
    assert error is not None
    hint = {
        errno.EADDRINUSE: "; another process listens there: choose another port",
        errno.EACCES: "; ports below 1024 need CAP_NET_BIND_SERVICE: choose a higher port",
        errno.EADDRNOTAVAIL: "; no interface of this host has that address",
    }.get(error.errno or 0, "")
    raise MetricsAddressError(address, f"cannot listen: {error.strerror or error}{hint}") from error


def _resolve(address: str, host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise MetricsAddressError(address, f"cannot resolve {host!r}: {e.strerror}") from e
    family, _type, _proto, _name, sockaddr = infos[0]
    return [(family, str(sockaddr[0]))]
