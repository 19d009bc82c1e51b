"""The field types of a policy: every string checked, then names, paths, dirs, ids, namespaces.

A policy's strings are `Text` first (no NUL, no lone surrogate), so the checks after it may
count UTF-8 bytes against the kernel's keys (`enforcer.enforce.keys`). Each type says what is
wrong in the words of the policy file, and what to write instead.

Validators that want to blame one item of a list (a duplicate, a repeated rule name) raise
`located_error`: pydantic only lets a validator blame the field it validates, so the extra path
travels in the error's context and the loader appends it (see `LOCATED_ERROR_TYPE`).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Mapping
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

from enforcer.bpf import abi
from enforcer.enforce.keys import MAX_DIR_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES, dir_path, utf8_len
from enforcer.policy.images import check_image_pattern

MAX_LABEL_LEN = 63
MAX_CONTAINER_ID_LEN = 128
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


def check_text(value: str) -> str:
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


def reject_duplicates(items: tuple[Hashable, ...], what: str) -> None:
    """Blame the first item that repeats an earlier one (after normalisation)."""
    seen: set[Hashable] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise located_error(f"{item!r} is listed more than once in {what}; remove one", index)
        seen.add(item)


# Every string of a policy is a Text first: the checks below may then count UTF-8 bytes.
Text = Annotated[str, AfterValidator(check_text)]
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
