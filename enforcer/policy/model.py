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
from collections.abc import Hashable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from enforcer.bpf import abi
from enforcer.enforce.keys import MAX_DIR_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES, dir_path, utf8_len
from enforcer.policy.images import check_image_pattern

MAX_LABEL_LEN = 63
MAX_CONTAINER_ID_LEN = 128

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
# Namespace inode numbers are unsigned 32-bit in the kernel (struct ns_common.inum).
MAX_NAMESPACE_INODE = 0xFFFFFFFF

# The pydantic error type of `located_error`; its context carries "message" and "loc".
LOCATED_ERROR_TYPE = "enforcer_located"

_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# runc accepts arbitrary names such as "web-1"; docker and podman ids are 64 lowercase hex.
_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")
# What `ip netns add` names look like in practice; the name is a file in /run/netns.
_NETNS_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NETNS_NAME_BYTES = 255  # NAME_MAX


def located_error(message: str, *loc: str | int) -> PydanticCustomError:
    """An error whose location is `loc` below the field or model being validated."""
    # The message goes through the context, not the template, so braces in user input survive.
    return PydanticCustomError(LOCATED_ERROR_TYPE, "{message}", {"message": message, "loc": loc})


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


def _check_text(value: str) -> str:
    """Refuse what no kernel key, log line or metric label can carry: NULs and lone surrogates.

    A YAML file is read as UTF-8, but a double-quoted escape such as "\\ud800" makes a lone
    UTF-16 surrogate, which has no UTF-8 encoding.
    """
    if "\0" in value:
        raise ValueError(f"{value!r} contains a NUL character; remove it")
    surrogate = _first_surrogate(value)
    if surrogate is not None:
        raise ValueError(
            f"{value!r} contains {surrogate!r}, a lone UTF-16 surrogate, which has no UTF-8 "
            "encoding: write the character itself, or escape it whole as \\U0001F600 rather "
            "than as a pair of \\u escapes"
        )
    return value


def _first_surrogate(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return value[e.start]
    return None


def _check_label(value: str) -> str:
    if len(value) > MAX_LABEL_LEN or not _LABEL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-{MAX_LABEL_LEN} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (e.g. 'no-recon')"
        )
    return value


def _check_basename(value: str) -> str:
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} is not a program name: give the file name, e.g. 'nc'")
    if "/" in value:
        raise ValueError(
            f"{value!r} contains '/': names are basenames such as 'nc'; "
            "put a full path under 'paths' or a directory under 'dirs'"
        )
    if utf8_len(value) > MAX_NAME_BYTES:
        raise ValueError(
            f"{value!r} is {utf8_len(value)} bytes long: names may be at most {MAX_NAME_BYTES} "
            f"bytes of UTF-8 (the kernel keys basenames on {abi.NAME_LEN} bytes including the "
            "NUL); match it by 'paths' or 'dirs' instead"
        )
    return value


def _check_absolute(value: str, kind: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not absolute: {kind} must start with '/'")
    parts = value.rstrip("/").split("/")[1:]
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"{value!r} has a '.', '..' or empty ('//') component: write the path without "
            f"them, e.g. {_lexically_normal(value)!r} (symlinks in it are resolved in each "
            "container's root)"
        )


def _lexically_normal(value: str) -> str:
    kept: list[str] = []
    for part in value.split("/"):
        if part == "..":
            if kept:
                kept.pop()
        elif part not in ("", "."):
            kept.append(part)
    return "/" + "/".join(kept)


def _check_path(value: str) -> str:
    _check_absolute(value, "paths")
    if value.endswith("/"):
        raise ValueError(
            f"{value!r} ends with '/': a path names one file; "
            "to match everything below a directory put it under 'dirs'"
        )
    if utf8_len(value) > MAX_PATH_BYTES:
        raise ValueError(
            f"{value!r} is {utf8_len(value)} bytes long: paths may be at most {MAX_PATH_BYTES} "
            f"bytes of UTF-8 (the kernel keeps {abi.PATH_LEN} bytes of the path including the "
            "NUL); match a parent directory under 'dirs' instead"
        )
    return value


def _normalise_dir(value: str) -> str:
    _check_absolute(value, "dirs")
    normalised = dir_path(value)
    if utf8_len(normalised) > MAX_DIR_BYTES:
        raise ValueError(
            f"{normalised!r} is {utf8_len(normalised)} bytes long: dirs may be at most "
            f"{MAX_DIR_BYTES} bytes of UTF-8 (the kernel keeps {abi.PATH_LEN} bytes of the path "
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


def _check_container_name(value: str) -> str:
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(
            f"{value!r} is not a container name pattern: give a name as `docker ps` or "
            "`podman ps` shows it, or a glob such as 'web-*'"
        )
    return value


def _check_pid_namespace(value: object) -> int:
    return _check_namespace_inode(value, "pid")


def _check_namespace_inode(value: object, kind: str) -> int:
    # bool is an int to Python, and pydantic's lax int would take "12": both are mistakes here.
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 < value <= MAX_NAMESPACE_INODE
    ):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        unquote = " without quotes" if isinstance(value, str) and value.isdigit() else ""
        raise ValueError(
            f"{shown} is not a {kind} namespace: give its inode number{unquote}, an integer "
            f"from 1 to {MAX_NAMESPACE_INODE} such as 4026532198, as `lsns -t {kind}` or "
            f"`ls -Li /proc/PID/ns/{kind}` shows it"
        )
    return value


def _check_net_namespace(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_namespace_inode(value, "net")
    if (
        isinstance(value, str)
        and _NETNS_NAME_RE.fullmatch(value)
        and value not in (".", "..")
        and len(value) <= MAX_NETNS_NAME_BYTES
    ):
        return value
    raise ValueError(
        f"{value!r} is not a network namespace: give its name as `ip netns list` shows it "
        f"(1-{MAX_NETNS_NAME_BYTES} letters, digits, '_', '.' or '-'), or its inode number as "
        "`lsns -t net` shows it, such as 4026531840"
    )


def _reject_duplicates(items: tuple[Hashable, ...], what: str) -> None:
    """Blame the first item that repeats an earlier one (after normalisation)."""
    seen: set[Hashable] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise located_error(f"{item!r} is listed more than once in {what}; remove one", index)
        seen.add(item)


# Every string of a policy is a Text first: the checks below may then count UTF-8 bytes.
Text = Annotated[str, AfterValidator(_check_text)]
PolicyName = Annotated[Text, AfterValidator(_check_label)]
ProgramName = Annotated[Text, AfterValidator(_check_basename)]
ProgramPath = Annotated[Text, AfterValidator(_check_path)]
ProgramDir = Annotated[Text, AfterValidator(_normalise_dir)]
ContainerId = Annotated[Text, AfterValidator(_check_container_id)]
ContainerNamePattern = Annotated[Text, AfterValidator(_check_container_name)]
ImagePattern = Annotated[Text, AfterValidator(check_image_pattern)]
PidNamespace = Annotated[int, PlainValidator(_check_pid_namespace)]
# An int is an inode number, a string a name from /run/netns (so a quoted number is a name).
NetNamespace = Annotated[int | str, PlainValidator(_check_net_namespace)]


class Labels(Mapping[str, str]):
    """A read-only, hashable label map, so that frozen models holding one stay hashable."""

    __slots__ = ("_labels",)

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self._labels = dict(labels or {})

    def __getitem__(self, key: str) -> str:
        return self._labels[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __hash__(self) -> int:
        return hash(frozenset(self._labels.items()))

    def __repr__(self) -> str:
        return f"Labels({self._labels!r})"


LabelMap = Annotated[
    Mapping[Text, Text], AfterValidator(Labels), PlainSerializer(dict, return_type=dict[str, str])
]


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
        _reject_duplicates(value, info.field_name or "the list")
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
        _reject_duplicates(value, "anyOf")
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


class Rule(BaseModel):
    """One named rule: what to match and what to do when it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: PolicyName
    action: RuleAction = RuleAction.KILL
    match: Match


class ContainerSelector(BaseModel):
    """Containers chosen by what `docker ps`, `podman ps` or `runc list` show about them.

    A container matches when every key given matches it, and a key matches when any one of its
    entries does (`labels` excepted: every label given must be present with that value):

    - `ids`: a full id, or a prefix matching exactly one container (docker's 12-character
      short id); a prefix matching none or several is reported, not guessed.
    - `names`: a glob (`fnmatch`, case-sensitive) on the container's name; a container without
      a name matches none.
    - `images`: a glob on `repository[:tag]`, see `enforcer.policy.images.image_matches`.
      `nginx` matches every tag of `nginx`, recorded as `nginx` or `docker.io/library/nginx`;
      a pattern with `@sha256:...` matches that digest exactly.
    - `labels`: exact values, e.g. `{team: blue}`; extra labels on the container do not matter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ids: tuple[ContainerId, ...] = ()
    names: tuple[ContainerNamePattern, ...] = ()
    images: tuple[ImagePattern, ...] = ()
    labels: LabelMap = Labels()

    @field_validator("ids", "names", "images")
    @classmethod
    def _listed(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Runs only for keys that are given: an absent key is no condition, an empty list is
        # a condition nothing meets, most likely a mistake.
        field = info.field_name or "the list"
        if not value:
            raise ValueError(_EMPTY_CONTAINER_LIST[field])
        _reject_duplicates(value, field)
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_are_strings(cls, value: object) -> object:
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str):
                    raise located_error(
                        f"label key {key!r} must be a string; put quotes around it", key
                    )
                try:
                    _check_text(key)
                except ValueError as e:
                    raise located_error(f"label key {e}", key) from None
        return value

    @field_validator("labels")
    @classmethod
    def _labels_given(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        if not value:
            raise ValueError(
                "give at least one label, e.g. labels: {team: blue}, or leave out 'labels'"
            )
        for key in value:
            if not key:
                raise ValueError("a label key is empty: give keys such as 'team'")
            if any(c.isspace() or not c.isprintable() for c in key):
                raise located_error(
                    f"{key!r} is not a label key: label keys have no spaces, "
                    "e.g. 'team' or 'app.kubernetes.io/name'",
                    key,
                )
        return value

    @model_validator(mode="after")
    def _selects_by_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "containers needs at least one of ids, names, images or labels, e.g. "
                "names: [web-*]; to select every container use allContainers: true instead"
            )
        return self


_EMPTY_CONTAINER_LIST = {
    "ids": "list at least one container id or prefix, or use allContainers: true instead",
    "names": "list at least one container name or glob such as 'web-*', or leave out 'names'",
    "images": "list at least one image such as 'nginx' or 'nginx:1.25', or leave out 'images'",
}


class NamespaceSelector(BaseModel):
    """Containers chosen by the namespaces their init process (`Container.pid`) runs in.

    Like `ContainerSelector`, every key given must match and any entry of a key may:

    - `pid`: pid namespace inode numbers (`lsns -t pid`, `ls -Li /proc/PID/ns/pid`).
    - `net`: network namespaces, by name as `ip netns list` shows them or by inode number
      (`lsns -t net`). A name that does not exist when the policy is compiled matches nothing
      and is reported.

    Namespaces only ever select containers, never host processes: a container whose init
    process is unknown matches no namespace key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pid: tuple[PidNamespace, ...] = ()
    net: tuple[NetNamespace, ...] = ()

    @field_validator("pid", "net")
    @classmethod
    def _listed(cls, value: tuple[int | str, ...], info: ValidationInfo) -> tuple[int | str, ...]:
        field = info.field_name or "the list"
        if not value:
            raise ValueError(
                f"list at least one {field} namespace, e.g. {field}: [4026532198], "
                f"or leave out '{field}'"
            )
        _reject_duplicates(value, field)
        return value

    @model_validator(mode="after")
    def _selects_by_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "namespaces needs pid or net, e.g. net: [blue]; or leave out 'namespaces'"
            )
        return self


class Selector(BaseModel):
    """Where a policy applies: some containers, every container, and/or the host.

    - `containers` and `namespaces` select the containers that match every key they give
      (AND across keys, OR within one key's list): `containers: {images: [nginx]}` with
      `namespaces: {net: [blue]}` selects the nginx containers in network namespace blue.
    - `allContainers: true` selects every container. It cannot be combined with `containers`
      or `namespaces`, which it would make pointless.
    - `host: true` adds the processes outside any container to whatever containers are
      selected. Namespace keys never apply to host processes, so `host` with `namespaces` and
      no `containers` is refused: it would read as "host processes in these namespaces".
    - A selector must select something.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    containers: ContainerSelector | None = None
    namespaces: NamespaceSelector | None = None
    # Strict: pydantic would otherwise take "yes", "on", 1 or "true" (quoted) for true.
    host: StrictBool = False
    all_containers: StrictBool = Field(default=False, alias="allContainers")

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        narrowed = [
            key
            for key, value in (("containers", self.containers), ("namespaces", self.namespaces))
            if value is not None
        ]
        if self.all_containers and narrowed:
            raise located_error(
                "allContainers: true already selects every container; remove either "
                + " and ".join(f"'{key}'" for key in narrowed)
                + " or 'allContainers'",
                "allContainers",
            )
        if self.host and self.namespaces is not None and self.containers is None:
            raise located_error(
                "namespaces select containers, not host processes: host: true selects every "
                "process outside a container whatever its namespaces. Remove 'namespaces', or "
                "put the containers in these namespaces in a policy of their own",
                "namespaces",
            )
        if not (narrowed or self.host or self.all_containers):
            raise ValueError(
                "the selector selects nothing: set containers.ids, host: true or "
                "allContainers: true (containers can also be chosen by names, images, labels "
                "or namespaces)"
            )
        return self


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
                    _check_text(key)
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
