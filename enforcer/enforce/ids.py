"""Stable small integers for what hits name: policies, (policy, rule) pairs and targets.

Ids are stable across recompiles: `Ids` hands out the same number for the same
policy, rule and target name, so counters keep their meaning over a reload, and
`describe` turns a hit's or a counter's ids back into those names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from enforcer.bpf import abi
from enforcer.errors import CompileError

K = TypeVar("K")

# The rule name of a policy's default in counters, events and metrics.
DEFAULT_RULE = "(default)"
# What a default hit names, where a rule hit names its target.
DEFAULT_TARGET = "(any program no rule names)"


class TargetKind(StrEnum):
    NAME = "name"
    PATH = "path"
    DIR = "dir"


@dataclass(frozen=True, order=True)
class Target:
    """One entry of a rule's match lists."""

    kind: TargetKind
    value: str

    def __str__(self) -> str:
        return self.value if self.kind is not TargetKind.DIR else f"{self.value.rstrip('/')}/*"


class Numbering(Generic[K]):
    """Hands out 1, 2, 3... to keys, the same number for the same key, and back."""

    def __init__(self) -> None:
        self._numbers: dict[K, int] = {}
        self._keys: dict[int, K] = {}

    def number(self, key: K) -> int:
        if key not in self._numbers:
            if len(self._numbers) >= abi.MAX_ID16:
                raise CompileError(
                    f"more than {abi.MAX_ID16} distinct names were numbered; restart the daemon"
                )
            self._numbers[key] = len(self._numbers) + 1
            self._keys[self._numbers[key]] = key
        return self._numbers[key]

    def key(self, number: int) -> K | None:
        return self._keys.get(number)

    def items(self) -> list[tuple[K, int]]:
        return list(self._numbers.items())

    def restore(self, items: Iterable[tuple[K, int]]) -> None:
        """Takes back numbers handed out earlier (by a previous run of the daemon)."""
        for key, number in items:
            self._numbers[key] = number
            self._keys[number] = key

    def __len__(self) -> int:
        return len(self._numbers)


@dataclass
class Ids:
    """Stable small integers for policy names, (policy, rule) names and targets."""

    policies: Numbering[str] = field(default_factory=Numbering)
    rules: Numbering[tuple[str, str]] = field(default_factory=Numbering)
    targets: Numbering[Target] = field(default_factory=Numbering)


class IdsOf(Protocol):
    """Anything carrying the ids of a hit: hits, counter keys."""

    @property
    def policy_id(self) -> int: ...
    @property
    def rule_id(self) -> int: ...
    @property
    def target_id(self) -> int: ...
    @property
    def caller_id(self) -> int: ...


@dataclass(frozen=True)
class CounterName:
    policy: str
    rule: str
    target: Target | str
    caller: Target | str | None = None  # a calledBy rule's: the entry that named the caller


def describe(ids: Ids, item: IdsOf) -> CounterName:
    """The names behind a hit's ids ("?" for an id this daemon never handed out)."""
    rule = ids.rules.key(item.rule_id)
    default = rule is not None and rule[1] == DEFAULT_RULE
    return CounterName(
        policy=ids.policies.key(item.policy_id) or f"?{item.policy_id}",
        rule=rule[1] if rule else f"?{item.rule_id}",
        target=DEFAULT_TARGET
        if default
        else ids.targets.key(item.target_id) or f"?{item.target_id}",
        caller=(ids.targets.key(item.caller_id) or f"?{item.caller_id}")
        if item.caller_id
        else None,
    )
