"""PolicyProblem: one thing wrong with a policy file, and where, in the words of the file.

A validation error of pydantic's is located on the YAML document it came from: its line, and
its field path as the user spells it (`spec.rules[0].match.names[1]`, camelCase keys), with a
message in YAML terms (a list, a mapping) rather than Python's, and a guess at the key meant
for an unknown one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from enforcer.policy.fields import LOCATED_ERROR_TYPE
from enforcer.policy.model import ExecPolicy

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, located as precisely as the YAML allows."""

    file: Path
    line: int | None  # 1-based; None when the problem has no line (e.g. a missing file)
    field: str  # path such as "spec.rules[0].match.names[1]"; empty for whole-file problems
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.line is None else f"{self.file}:{self.line}"
        text = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        return printable(text)


def printable(text: str) -> str:
    """`text` with any lone surrogate (from a YAML escape, or a file name that is not UTF-8)
    written as a backslash escape, so that printing it cannot fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def spelled(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def validation_problem(error: ErrorDetails, document: CommentedMap, source: Path) -> PolicyProblem:
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == LOCATED_ERROR_TYPE:
        # fields.located_error: the validator blames an item below the field it validated.
        loc += tuple(ctx["loc"])
        return problem_at(document, source, loc, str(ctx["message"]))
    if error["type"] == "missing":
        # Blame the mapping that lacks the key: the key itself has no line.
        line, path = locate(document, loc[:-1])
        return PolicyProblem(source, line, path, f"required key '{loc[-1]}' is missing")
    if error["type"] == "extra_forbidden":
        return problem_at(document, source, loc, _unknown_key_message(loc))
    return problem_at(document, source, loc, _friendly_message(error))


def problem_at(document: CommentedMap, source: Path, loc: Loc, message: str) -> PolicyProblem:
    line, path = locate(document, loc)
    return PolicyProblem(source, line, path, message)


def locate(document: CommentedMap, loc: Loc) -> tuple[int, str]:
    """The 1-based line of the deepest YAML node on `loc`, and `loc` as the user spells it."""
    line: int = document.lc.line + 1
    parts: list[str] = []
    node: object = document
    for part in loc:
        child, child_line, spelled = _step(node, part)
        parts.append(spelled)
        node = child
        if child_line is not None:
            line = child_line
    return line, "".join(parts).lstrip(".")


_ABSENT = object()


def _step(node: object, part: str | int) -> tuple[object, int | None, str]:
    """Go from `node` to its child `part`: (child or _ABSENT, 1-based line or None, path part)."""
    if isinstance(node, CommentedMap):
        key = _find_key(node, part)
        if key is not _ABSENT:
            return node[key], _lc_line(node.lc.key, key), f".{key}"
    elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
        return node[part], _lc_line(node.lc.item, part), f"[{part}]"
    return _ABSENT, None, f"[{part}]" if isinstance(part, int) else f".{part}"


def _lc_line(position_of: Any, key: object) -> int | None:
    # Keys pulled in by a YAML merge ('<<: *anchor') have no position of their own.
    try:
        line: int = position_of(key)[0]
    except (KeyError, IndexError, TypeError):
        return None
    return line + 1


def _find_key(mapping: CommentedMap, part: str | int) -> object:
    """The key of `mapping` that pydantic calls `part` (its camelCase alias or the snake name)."""
    if part in mapping:
        return part
    if isinstance(part, str):
        snake = re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower()
        if snake in mapping:
            return snake
    return _ABSENT


def _unknown_key_message(loc: Loc) -> str:
    key = str(loc[-1])
    known = _known_keys(loc[:-1])
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}'; did you mean '{by_lower[close[0]]}'?"
    if known:
        return f"unknown key '{key}'; allowed keys here: {', '.join(known)}"
    return f"unknown key '{key}'"


def _known_keys(loc: Loc) -> list[str]:
    """The YAML keys the model at `loc` accepts, found by walking the ExecPolicy annotations."""
    target: object = ExecPolicy
    for part in loc:
        target = _child_annotation(_unwrap_optional(target), part)
    target = _unwrap_optional(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [info.alias or name for name, info in target.model_fields.items()]
    return []


def _child_annotation(target: object, part: str | int) -> object:
    if isinstance(part, int):
        args = get_args(target)
        return args[0] if get_origin(target) is tuple and args else None
    if isinstance(target, type) and issubclass(target, BaseModel):
        for name, info in target.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    return None


def _unwrap_optional(target: object) -> object:
    if get_origin(target) in (Union, UnionType):
        args = [arg for arg in get_args(target) if arg is not NoneType]
        if len(args) == 1:
            return args[0]
    return target


# pydantic's wording for a few common mistakes, rewritten in YAML terms.
_TYPE_MESSAGES = {
    "tuple_type": "must be a list such as [a, b], not {input}",
    "list_type": "must be a list such as [a, b], not {input}",
    "string_type": "must be a string, not {input}; put quotes around it",
    "model_type": "must be a mapping of keys to values, not {input}",
    "model_attributes_type": "must be a mapping of keys to values, not {input}",
    "dict_type": "must be a mapping of keys to values, not {input}",
    # Booleans are strict (selectors.Selector): "yes", "on", 1 or "true" are not read as true.
    "bool_type": "must be true or false, not {shown}: write true or false, without quotes",
}


def _friendly_message(error: ErrorDetails) -> str:
    template = _TYPE_MESSAGES.get(error["type"])
    if template is not None:
        value = error["input"]
        shown = yaml_type_name(value)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            shown += f" ({value!r})"
        return template.format(input=yaml_type_name(value), shown=shown)
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    return message


# Checked in order: bool before int, since bool is an int.
_YAML_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (NoneType, "an empty value"),
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (dict, "a mapping"),
    ((list, tuple), "a list"),
)


def yaml_type_name(value: object) -> str:
    for types, name in _YAML_TYPE_NAMES:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"
