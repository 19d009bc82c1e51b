"""The ExecPolicy model: what a policy file may say, checked before anything reaches the kernel.

Every model forbids unknown keys (a typo must be an error, not a silently ignored rule) and is
frozen, so the compiler can hash and compare policies. Python fields are snake_case; the YAML
keys are the camelCase aliases.

The parts live beside it: the field types in `enforcer.policy.fields`, what a rule matches in
`enforcer.policy.match`, where a policy applies in `enforcer.policy.selectors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from enforcer.policy.fields import PolicyName, check_text, located_error
from enforcer.policy.match import Match
from enforcer.policy.selectors import Selector


class Mode(StrEnum):
    """Whether a policy's kill rules kill (enforce) or only count and log (audit)."""

    ENFORCE = "enforce"
    AUDIT = "audit"


class RuleAction(StrEnum):
    """What a matching rule does to the exec; audit never kills.

    `deny` makes execve fail with EPERM before anything of the program runs, on
    the lsm backend; where the kernel offers no BPF LSM it kills instead (and
    the daemon logs a warning).
    """

    KILL = "kill"
    DENY = "deny"
    AUDIT = "audit"
    # Names the program for its policy's `default`, and does nothing else.
    ALLOW = "allow"


class DefaultAction(StrEnum):
    """What a policy does to an exec that none of its rules names (`spec.default`).

    `allow` (the default) leaves it alone; the others act as a rule with that
    action would. With `kill` or `deny`, the policy is an allowlist: only what
    its rules name may run.
    """

    KILL = "kill"
    DENY = "deny"
    AUDIT = "audit"
    ALLOW = "allow"


class Rule(BaseModel):
    """One named rule: what to match and what to do when it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: PolicyName
    action: RuleAction = RuleAction.KILL
    match: Match


class Spec(BaseModel):
    """The body of a policy: its mode, where it applies, and its rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mode: Mode = Mode.ENFORCE
    selector: Selector
    default: DefaultAction = DefaultAction.ALLOW
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _no_host_allowlist(self) -> Spec:
        stops = self.default in (DefaultAction.KILL, DefaultAction.DENY)
        if stops and self.mode is Mode.ENFORCE and self.selector.host:
            raise located_error(
                f"default: {self.default} with host: true would stop every host program that "
                "no rule names, the system's own among them; select containers, or use "
                "default: audit (or mode: audit) to see what the host runs",
                "default",
            )
        return self

    @field_validator("rules")
    @classmethod
    def _rules_valid(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not value:
            raise ValueError("a policy needs at least one rule")
        first_seen: dict[str, int] = {}
        for index, rule in enumerate(value):
            if rule.name in first_seen:
                raise located_error(
                    f"rule name {rule.name!r} is already used by rules[{first_seen[rule.name]}]; "
                    "rule names must be unique within a policy",
                    index,
                    "name",
                )
            first_seen[rule.name] = index
        return value


class Metadata(BaseModel):
    """Identifies a policy; the name must be unique across all loaded policies."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: PolicyName


Loc = tuple[str | int, ...]


def _bad_key(data: object, loc: Loc) -> tuple[Loc, str] | None:
    """The location of the first mapping key, at any depth, that is not valid text, and why."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not isinstance(key, str | int):
                continue  # reported by the field, if anywhere (e.g. a label key)
            if isinstance(key, str):
                try:
                    check_text(key)
                except ValueError as e:
                    return (*loc, key), f"key {e}"
            if (found := _bad_key(value, (*loc, key))) is not None:
                return found
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            if (found := _bad_key(item, (*loc, index))) is not None:
                return found
    return None


class ExecPolicy(BaseModel):
    """One policy document: `apiVersion: enforcer/v1`, `kind: ExecPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["enforcer/v1"] = Field(alias="apiVersion")
    kind: Literal["ExecPolicy"]
    metadata: Metadata
    spec: Spec

    @model_validator(mode="before")
    @classmethod
    def _keys_are_text(cls, data: object) -> object:
        # Values are checked by their fields; a key that is no field would only be reported as
        # unknown, but pydantic cannot even name one holding a lone surrogate.
        if (found := _bad_key(data, ())) is not None:
            loc, message = found
            raise located_error(message, *loc)
        return data

    @property
    def name(self) -> str:
        """The policy's name (metadata.name)."""
        return self.metadata.name
