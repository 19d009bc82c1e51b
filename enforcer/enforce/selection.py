"""Which of the containers that exist one policy's selector picks.

The checks each key of `enforcer.policy.selectors.Selector` asks for, made
against the container inventory and the named network namespaces of /run/netns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import MappingProxyType

from enforcer.containers.model import Container
from enforcer.policy.images import image_matches
from enforcer.policy.model import ExecPolicy
from enforcer.policy.selectors import ContainerSelector, NamespaceSelector, Selector

# Named network namespaces (`ip netns list`) -> inode number; the caller reads /run/netns.
NO_NETNS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class Selection:
    """Which containers a policy selects, and why a reference selected none."""

    policy: str
    container_ids: tuple[str, ...]
    host: bool
    unresolved: tuple[str, ...]


def select(
    policy: ExecPolicy, containers: Sequence[Container], netns: Mapping[str, int] = NO_NETNS
) -> Selection:
    """The containers one policy's selector picks out of those that exist, in their order.

    A container is picked when it passes every check the selector's keys ask for (see
    `enforcer.policy.selectors.Selector`). `netns` maps network namespace names to inode numbers,
    as the caller found them in /run/netns. An id that resolves to no single container and a
    network namespace name missing from `netns` select nothing and are listed as unresolved.
    """
    selector = policy.spec.selector
    if selector.all_containers:
        return Selection(policy.name, _distinct(c.id for c in containers), selector.host, ())
    checks, unresolved = _checks(selector, containers, netns)
    chosen = (c.id for c in containers if checks and all(check(c) for check in checks))
    return Selection(policy.name, _distinct(chosen), selector.host, tuple(unresolved))


ContainerCheck = Callable[[Container], bool]


def _checks(
    selector: Selector, containers: Sequence[Container], netns: Mapping[str, int]
) -> tuple[list[ContainerCheck], list[str]]:
    """One check per container or namespace key the selector gives, and what did not resolve."""
    checks: list[ContainerCheck] = []
    unresolved: list[str] = []
    if selector.containers is not None:
        checks.extend(_container_checks(selector.containers, containers, unresolved))
    if selector.namespaces is not None:
        checks.extend(_namespace_checks(selector.namespaces, netns, unresolved))
    return checks, unresolved


def _container_checks(
    by: ContainerSelector, containers: Sequence[Container], unresolved: list[str]
) -> Iterable[ContainerCheck]:
    if by.ids:
        ids = _resolve_ids(by.ids, containers, unresolved)
        yield lambda c: c.id in ids
    if by.names:
        # A container without a name matches no pattern, not even '*'.
        yield lambda c: bool(c.name) and any(fnmatchcase(c.name, p) for p in by.names)
    if by.images:
        yield lambda c: any(image_matches(pattern, c.image) for pattern in by.images)
    if by.labels:
        yield lambda c: all(c.labels.get(key) == value for key, value in by.labels.items())


def _namespace_checks(
    by: NamespaceSelector, netns: Mapping[str, int], unresolved: list[str]
) -> Iterable[ContainerCheck]:
    if by.pid:
        pid_inodes = frozenset(by.pid)
        yield lambda c: c.pid_ns is not None and c.pid_ns in pid_inodes
    if by.net:
        net_inodes = _resolve_net(by.net, netns, unresolved)
        yield lambda c: c.net_ns is not None and c.net_ns in net_inodes


def _resolve_ids(
    refs: Iterable[str], containers: Sequence[Container], unresolved: list[str]
) -> frozenset[str]:
    """The container ids that full ids or unique prefixes name; the others go to `unresolved`."""
    chosen: set[str] = set()
    for ref in refs:
        matches = [c.id for c in containers if c.id.startswith(ref)]
        if ref in matches:  # a full id, even if it is also a prefix of another id
            chosen.add(ref)
        elif len(matches) == 1:
            chosen.add(matches[0])
        else:
            why = "matches no running container" if not matches else "matches several containers"
            unresolved.append(f"{ref}: {why}")
    return frozenset(chosen)


def _resolve_net(
    refs: Iterable[int | str], netns: Mapping[str, int], unresolved: list[str]
) -> frozenset[int]:
    inodes: set[int] = set()
    for ref in refs:
        if isinstance(ref, int):
            inodes.add(ref)
        elif ref in netns:
            inodes.add(netns[ref])
        else:
            unresolved.append(f"network namespace {ref!r} does not exist")
    return frozenset(inodes)


def _distinct(container_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(container_ids))
