"""What a rule matches: the files an exec runs, and the conditions given with them.

`match` names files by basename, path or directory; `calledBy` names the program doing the
exec the same way, and `args` the arguments. How many entries one rule may list is bounded by
the kernel maps they go in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from enforcer.bpf import abi
from enforcer.enforce.keys import utf8_len
from enforcer.policy.fields import ProgramDir, ProgramName, ProgramPath, Text, reject_duplicates

# Entries one rule may list, bounded by the kernel maps: rule entries get half of each map, the
# other half holds the old set while the kernel switches to a new one (see
# `enforcer.enforce.map_contents.check_capacity`). Paths and dirs share one map. What all
# policies together need is checked by `enforcer check` (enforcer.policy.capacity).
MAX_NAMES_PER_RULE = abi.MAX_NAME_ENTRIES // 2
MAX_PATHS_PER_RULE = abi.MAX_PATH_ENTRIES // 2
# An argument value is compared whole, within the kernel's key: an argument that fills the
# key (ARG_KEY_LEN - 1 bytes and the NUL) may have been cut, and never matches.
MAX_ARG_BYTES = abi.ARG_KEY_LEN - 2
MAX_ARG_VALUES_PER_RULE = 256


class _Files(BaseModel):
    """Files named by basename, path or directory; any one entry matching is a match."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    names: tuple[ProgramName, ...] = ()
    paths: tuple[ProgramPath, ...] = ()
    dirs: tuple[ProgramDir, ...] = ()

    @field_validator("names", "paths", "dirs", mode="before")
    @classmethod
    def _within_the_maps(cls, value: object, info: ValidationInfo) -> object:
        # Before the items are validated: a list far too long is refused at once.
        field = info.field_name or "the list"
        limit = MAX_NAMES_PER_RULE if field == "names" else MAX_PATHS_PER_RULE
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > limit:
            raise ValueError(_too_many(len(value), field, limit))
        return value

    @field_validator("names", "paths", "dirs")
    @classmethod
    def _unique(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        reject_duplicates(value, info.field_name or "the list")
        return value

    @model_validator(mode="after")
    def _paths_and_dirs_fit(self) -> Self:
        if len(self.paths) + len(self.dirs) > MAX_PATHS_PER_RULE:
            # Both go in the kernel's path map.
            count = len(self.paths) + len(self.dirs)
            raise ValueError(_too_many(count, "paths and dirs together", MAX_PATHS_PER_RULE))
        return self

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


class CalledBy(_Files):
    """The program doing the exec: the file of the image being replaced (`match.calledBy`).

    It is the calling process's executable as the kernel holds it (its mm's exe_file), read
    before the new program replaces it, and named as `match` names files: `paths` and `dirs`
    as they resolve in the container's root, `names` by the file's own basename (after every
    symlink; never the name it was invoked by, which the caller chooses). For a script, the
    calling program is its interpreter.
    """


def _check_arg_value(value: str) -> str:
    if utf8_len(value) > MAX_ARG_BYTES:
        raise ValueError(
            f"{value!r} is {utf8_len(value)} bytes long: the kernel compares each of the first "
            f"{abi.MATCH_ARGS} arguments after argv[0] whole, and only those of at most "
            f"{MAX_ARG_BYTES} bytes of UTF-8 (it reads {abi.ARG_KEY_LEN} bytes, NUL included), "
            "so no argument could ever equal this value; match the program alone, or a "
            "shorter argument such as the option itself"
        )
    return value


ArgValue = Annotated[Text, AfterValidator(_check_arg_value)]


class Args(BaseModel):
    """The exec's arguments after argv[0] (`match.args`): a match when any one equals a value.

    Bounded: the first `abi.MATCH_ARGS` arguments after argv[0] are compared, each whole and
    exactly (`-o` is not `-ofile`, `--output=x` or `-so`), and only those of at most
    MAX_ARG_BYTES bytes: a longer argument never matches. A rule never matches on
    what lies past that bound, so an argument placed after it is not seen.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    any_of: tuple[ArgValue, ...] = Field(alias="anyOf")

    @field_validator("any_of", mode="before")
    @classmethod
    def _within_the_map(cls, value: object) -> object:
        if isinstance(value, Sequence) and not isinstance(value, str):
            if not value:
                raise ValueError("list at least one argument, e.g. anyOf: ['-o']")
            if len(value) > MAX_ARG_VALUES_PER_RULE:
                raise ValueError(
                    f"{len(value)} arguments in one rule: a rule may list at most "
                    f"{MAX_ARG_VALUES_PER_RULE}"
                )
        return value

    @field_validator("any_of")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        reject_duplicates(value, "anyOf")
        return value


class Match(_Files):
    """Which execs a rule applies to: a file it names, and the conditions given with it.

    `calledBy` and `args` narrow the match: with them, the rule applies only where the
    calling program and the arguments match too.
    """

    called_by: CalledBy | None = Field(default=None, alias="calledBy")
    args: Args | None = None


def _too_many(count: int, what: str, limit: int) -> str:
    instead = (
        "match the programs by the directories they are in, under 'dirs'"
        if what == "names"
        else "match a common parent under 'dirs' instead"
    )
    return (
        f"{count} {what} in one rule: a rule may list at most {limit}, half of the kernel map "
        f"they go in (the other half holds the old entries while a new policy set takes over); "
        + instead
    )
