"""The ExecPolicy model: what a policy file may say, checked before anything reaches the kernel.

Every model forbids unknown keys (a typo must be an error, not a silently ignored rule) and is
frozen, so the compiler can hash and compare policies. Python fields are snake_case; the YAML
keys are the camelCase aliases.

Validators that want to blame one item of a list (a duplicate, a repeated rule name) raise
`located_error`: pydantic only lets a validator blame the field it validates, so the extra path
travels in the error's context and the loader appends it (see `LOCATED_ERROR_TYPE`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Sizes the kernel side keys on (bpf/enforcer.h); all counted in UTF-8 bytes.
NAME_LEN = 64  # basename key, NUL included
PATH_LEN = 252  # path key, NUL included
MAX_NAME_BYTES = NAME_LEN - 1
MAX_PATH_BYTES = PATH_LEN - 2
# A directory is stored with a trailing '/' (so it matches what lies below) plus the NUL.
MAX_DIR_BYTES = PATH_LEN - 3

MAX_LABEL_LEN = 63
MAX_CONTAINER_ID_LEN = 128

# The pydantic error type of `located_error`; its context carries "message" and "loc".
LOCATED_ERROR_TYPE = "enforcer_located"

_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# runc accepts arbitrary names such as "web-1"; docker and podman ids are 64 lowercase hex.
_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")


def located_error(message: str, *loc: str | int) -> PydanticCustomError:
    """An error whose location is `loc` below the field or model being validated."""
    # The message goes through the context, not the template, so braces in user input survive.
    return PydanticCustomError(LOCATED_ERROR_TYPE, "{message}", {"message": message, "loc": loc})


class Mode(StrEnum):
    """Whether a policy's kill rules kill (enforce) or only count and log (audit)."""

    ENFORCE = "enforce"
    AUDIT = "audit"


class RuleAction(StrEnum):
    """What a matching rule does to the exec; audit never kills."""

    KILL = "kill"
    AUDIT = "audit"


def _check_label(value: str) -> str:
    if len(value) > MAX_LABEL_LEN or not _LABEL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-{MAX_LABEL_LEN} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (e.g. 'no-recon')"
        )
    return value


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", errors="surrogatepass"))


def _check_basename(value: str) -> str:
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} is not a program name: give the file name, e.g. 'nc'")
    if "/" in value:
        raise ValueError(
            f"{value!r} contains '/': names are basenames such as 'nc'; "
            "put a full path under 'paths' or a directory under 'dirs'"
        )
    if "\0" in value:
        raise ValueError("a name cannot contain a NUL character")
    if _utf8_len(value) > MAX_NAME_BYTES:
        raise ValueError(
            f"{value!r} is {_utf8_len(value)} bytes long: names may be at most {MAX_NAME_BYTES} "
            f"bytes of UTF-8 (the kernel keys basenames on {NAME_LEN} bytes including the NUL); "
            "match it by 'paths' or 'dirs' instead"
        )
    return value


def _check_absolute(value: str, kind: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not absolute: {kind} must start with '/'")
    if "\0" in value:
        raise ValueError(f"{kind} cannot contain a NUL character")


def _check_path(value: str) -> str:
    _check_absolute(value, "paths")
    if value.endswith("/"):
        raise ValueError(
            f"{value!r} ends with '/': a path names one file; "
            "to match everything below a directory put it under 'dirs'"
        )
    if _utf8_len(value) > MAX_PATH_BYTES:
        raise ValueError(
            f"{value!r} is {_utf8_len(value)} bytes long: paths may be at most {MAX_PATH_BYTES} "
            f"bytes of UTF-8 (the kernel keeps {PATH_LEN} bytes of the path including the NUL); "
            "match a parent directory under 'dirs' instead"
        )
    return value


def _normalise_dir(value: str) -> str:
    _check_absolute(value, "dirs")
    normalised = value.rstrip("/") or "/"
    if any(part in (".", "..") for part in normalised.split("/")):
        raise ValueError(
            f"{value!r} contains a '.' or '..' component: directories are matched textually "
            "against the executed path, so write the directory without them"
        )
    if _utf8_len(normalised) > MAX_DIR_BYTES:
        raise ValueError(
            f"{normalised!r} is {_utf8_len(normalised)} bytes long: dirs may be at most "
            f"{MAX_DIR_BYTES} bytes of UTF-8 (the kernel keeps {PATH_LEN} bytes of the path "
            "including the trailing '/' and the NUL); use a shorter parent directory"
        )
    return normalised


def _check_container_id(value: str) -> str:
    if len(value) > MAX_CONTAINER_ID_LEN or not _CONTAINER_ID_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a container id or id prefix: use 1-{MAX_CONTAINER_ID_LEN} "
            "letters, digits, '_', '.' or '-' (docker and podman ids are 64 hex characters; "
            "a unique prefix such as docker's 12-character short id also works)"
        )
    return value


def _reject_duplicates(items: tuple[str, ...], what: str) -> None:
    """Blame the first item that repeats an earlier one (after normalisation)."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise located_error(f"{item!r} is listed more than once in {what}; remove one", index)
        seen.add(item)


PolicyName = Annotated[str, AfterValidator(_check_label)]
ProgramName = Annotated[str, AfterValidator(_check_basename)]
ProgramPath = Annotated[str, AfterValidator(_check_path)]
ProgramDir = Annotated[str, AfterValidator(_normalise_dir)]
ContainerId = Annotated[str, AfterValidator(_check_container_id)]


class Match(BaseModel):
    """Which executed files a rule applies to; any one entry matching is a match."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    names: tuple[ProgramName, ...] = ()
    paths: tuple[ProgramPath, ...] = ()
    dirs: tuple[ProgramDir, ...] = ()

    @field_validator("names", "paths", "dirs")
    @classmethod
    def _unique(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        _reject_duplicates(value, info.field_name or "the list")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.is_empty:
            raise ValueError(
                "a match needs at least one entry in names, paths or dirs, "
                "e.g. names: [nc] or dirs: [/tmp]"
            )
        return self

    @property
    def is_empty(self) -> bool:
        """True when no names, paths or dirs are given, so the match could never hit."""
        return not (self.names or self.paths or self.dirs)


class Rule(BaseModel):
    """One named rule: what to match and what to do when it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: PolicyName
    action: RuleAction = RuleAction.KILL
    match: Match


class ContainerSelector(BaseModel):
    """Containers chosen by full id or unique id prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ids: tuple[ContainerId, ...]

    @field_validator("ids")
    @classmethod
    def _ids_listed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "list at least one container id or prefix, or use allContainers: true instead"
            )
        _reject_duplicates(value, "ids")
        return value


class Selector(BaseModel):
    """Where a policy applies: some containers, every container, and/or the host."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    containers: ContainerSelector | None = None
    host: bool = False
    all_containers: bool = Field(default=False, alias="allContainers")

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        if self.all_containers and self.containers is not None:
            raise located_error(
                "allContainers: true already selects every container; "
                "remove either 'containers' or 'allContainers'",
                "allContainers",
            )
        if self.containers is None and not (self.host or self.all_containers):
            raise ValueError(
                "the selector selects nothing: set containers.ids, host: true "
                "or allContainers: true"
            )
        return self


class Spec(BaseModel):
    """The body of a policy: its mode, where it applies, and its rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mode: Mode = Mode.ENFORCE
    selector: Selector
    rules: tuple[Rule, ...]

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


class ExecPolicy(BaseModel):
    """One policy document: `apiVersion: enforcer/v1`, `kind: ExecPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["enforcer/v1"] = Field(alias="apiVersion")
    kind: Literal["ExecPolicy"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        """The policy's name (metadata.name)."""
        return self.metadata.name
