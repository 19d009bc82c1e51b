"""Reading ExecPolicy YAML files and directories into validated policies.

Loading never stops at the first mistake: every problem found is collected, each naming the
file, the line and the field path as the user wrote it (`spec.rules[0].match.names[1]`), so one
run of `enforcer check` lists everything to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from enforcer.errors import PolicyError
from enforcer.policy.model import LOCATED_ERROR_TYPE, ExecPolicy
from enforcer.policy.permissions import unsafe_reason

POLICY_SUFFIXES = (".yaml", ".yml")

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
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it came from."""

    policy: ExecPolicy
    source: Path
    line: int  # 1-based line where the policy's document starts


@dataclass(frozen=True)
class LoadResult:
    """Every valid policy found, and every problem found; policies with problems are left out."""

    policies: tuple[LoadedPolicy, ...]
    problems: tuple[PolicyProblem, ...]

    @property
    def ok(self) -> bool:
        """True when nothing was wrong, i.e. `policies` is the complete policy set."""
        return not self.problems


def load_policies(paths: Iterable[Path]) -> LoadResult:
    """Load policy files, and the `*.yaml`/`*.yml` files directly inside policy directories."""
    loader = _Loader()
    for path in paths:
        loader.add_path(Path(path))
    return loader.result()


def load_policy_text(text: str, source: Path) -> LoadResult:
    """Load policies from YAML text; `source` is the name problems are reported against."""
    loader = _Loader()
    loader.add_text(text, source)
    return loader.result()


def load_policies_or_raise(paths: Iterable[Path]) -> tuple[LoadedPolicy, ...]:
    """Like `load_policies`, but raise `PolicyError` listing every problem if there is any."""
    result = load_policies(paths)
    if not result.ok:
        problems: list[object] = list(result.problems)
        raise PolicyError(problems)
    return result.policies


def is_policy_file_name(name: str) -> bool:
    """Whether a directory entry with this name is read as a policy file.

    Hidden entries are skipped, so a Kubernetes ConfigMap volume (whose files also appear under
    `..data/` and `..<timestamp>/`) is read once; so are editor leftovers (`x.yaml~`, `#x#`,
    `.x.yaml.swp`).
    """
    if name.startswith(".") or name.endswith("~") or (name.startswith("#") and name.endswith("#")):
        return False
    return name.lower().endswith(POLICY_SUFFIXES)


@dataclass
class _Loader:
    """Accumulates policies and problems across files; checks names are unique across all."""

    policies: list[LoadedPolicy] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    first_defined: dict[str, tuple[Path, int | None]] = field(default_factory=dict)
    files_read: set[Path] = field(default_factory=set)

    def result(self) -> LoadResult:
        return LoadResult(tuple(self.policies), tuple(self.problems))

    def add_path(self, path: Path) -> None:
        try:
            if path.is_dir():
                if (reason := unsafe_reason(path)) is not None:
                    self._problem(path, None, reason)
                    return
                for file in self._policy_files_in(path):
                    self.add_file(file)
            elif path.exists():
                self.add_file(path)
            else:
                self._problem(path, None, "no such file or directory")
        except OSError as e:
            self._problem(path, None, f"cannot read: {e.strerror or e}")

    def _policy_files_in(self, directory: Path) -> Iterator[Path]:
        # Not recursive: a policy directory is flat, and ConfigMap volumes nest copies in it.
        for entry in sorted(directory.iterdir()):
            if is_policy_file_name(entry.name) and entry.is_file():
                yield entry

    def add_file(self, file: Path) -> None:
        # The same file named twice (directly and through its directory) is read once;
        # reading it again would report each of its policies as a duplicate of itself.
        resolved = file.resolve()
        if resolved in self.files_read:
            return
        self.files_read.add(resolved)
        try:
            if (reason := unsafe_reason(file)) is not None:
                self._problem(file, None, reason)
                return
            data = file.read_bytes()
        except OSError as e:
            self._problem(file, None, f"cannot read: {e.strerror or e}")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self._problem(file, line, f"not valid UTF-8 (byte {e.start}); save the file as UTF-8")
            return
        self.add_text(text, file)

    def add_text(self, text: str, source: Path) -> None:
        yaml = YAML(typ="rt")  # round-trip mode keeps the line of every key and item
        try:
            # load_all is lazy: documents before a syntax error are still checked.
            for document in yaml.load_all(text):
                self._add_document(document, source)
        except YAMLError as e:
            self.problems.append(_yaml_problem(e, source, text))

    def _add_document(self, document: object, source: Path) -> None:
        if document is None:  # an empty document, e.g. a trailing '---'
            return
        if not isinstance(document, CommentedMap):
            line = document.lc.line + 1 if isinstance(document, CommentedSeq) else None
            self._problem(
                source,
                line,
                f"a policy document must be a mapping with apiVersion, kind, metadata and spec, "
                f"not {_yaml_type_name(document)}",
            )
            return
        try:
            policy = ExecPolicy.model_validate(_plain(document))
        except ValidationError as e:
            found = [_validation_problem(err, document, source) for err in e.errors()]
            self.problems.extend(sorted(found, key=lambda p: p.line or 0))
            return
        if self._is_duplicate_name(policy, document, source):
            return
        self.policies.append(LoadedPolicy(policy, source, document.lc.line + 1))

    def _is_duplicate_name(self, policy: ExecPolicy, document: CommentedMap, source: Path) -> bool:
        line, path = _locate(document, ("metadata", "name"))
        first = self.first_defined.get(policy.name)
        if first is None:
            self.first_defined[policy.name] = (source, line)
            return False
        first_file, first_line = first
        where = str(first_file) if first_line is None else f"{first_file}:{first_line}"
        self._problem(
            source,
            line,
            f"policy name {policy.name!r} is already defined at {where}; "
            "policy names must be unique across all policy files",
            path,
        )
        return True

    def _problem(self, file: Path, line: int | None, message: str, path: str = "") -> None:
        self.problems.append(PolicyProblem(file, line, path, message))


def _plain(node: object) -> object:
    """Plain Python data from ruamel's round-trip types, so models never hold ruamel objects."""
    if isinstance(node, dict):
        return {_plain(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    for plain_type in (bool, str, int, float):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node


def _yaml_problem(error: YAMLError, source: Path, text: str) -> PolicyProblem:
    if isinstance(error, MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        if isinstance(error, DuplicateKeyError):
            message = f"YAML error: {error.problem}; a key may appear only once in a mapping"
        else:
            message = f"YAML syntax error: {error.problem or error.context}"
            if error.problem and error.context and error.context_mark is not None:
                message += f" ({error.context} started at line {error.context_mark.line + 1})"
        return PolicyProblem(source, line, "", message)
    if isinstance(error, ReaderError):
        line = text.count("\n", 0, error.position) + 1
        character = chr(error.character) if isinstance(error.character, int) else error.character
        message = f"YAML error: character {character!r} is not allowed ({error.reason})"
        return PolicyProblem(source, line, "", message)
    return PolicyProblem(source, None, "", f"YAML error: {error}")


def _validation_problem(error: ErrorDetails, document: CommentedMap, source: Path) -> PolicyProblem:
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == LOCATED_ERROR_TYPE:
        # model.located_error: the validator blames an item below the field it validated.
        loc += tuple(ctx["loc"])
        return _problem_at(document, source, loc, str(ctx["message"]))
    if error["type"] == "missing":
        # Blame the mapping that lacks the key: the key itself has no line.
        line, path = _locate(document, loc[:-1])
        return PolicyProblem(source, line, path, f"required key '{loc[-1]}' is missing")
    if error["type"] == "extra_forbidden":
        return _problem_at(document, source, loc, _unknown_key_message(loc))
    return _problem_at(document, source, loc, _friendly_message(error))


def _problem_at(document: CommentedMap, source: Path, loc: Loc, message: str) -> PolicyProblem:
    line, path = _locate(document, loc)
    return PolicyProblem(source, line, path, message)


def _locate(document: CommentedMap, loc: Loc) -> tuple[int, str]:
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
    "bool_type": "must be true or false, not {input}",
    "bool_parsing": "must be true or false",
}


def _friendly_message(error: ErrorDetails) -> str:
    template = _TYPE_MESSAGES.get(error["type"])
    if template is not None:
        return template.format(input=_yaml_type_name(error["input"]))
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


def _yaml_type_name(value: object) -> str:
    for types, name in _YAML_TYPE_NAMES:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"
