"""Reading ExecPolicy YAML files and directories into validated policies.

Loading never stops at the first mistake: every problem found is collected, each naming the
file, the line and the field path as the user wrote it (`spec.rules[0].match.names[1]`), so one
run of `enforcer check` lists everything to fix.

What one file may cost to read is bounded, so that neither `enforcer check` nor a reload of the
daemon can be made to run for long or run out of memory: at most `MAX_FILE_BYTES` of YAML,
nested at most `MAX_YAML_DEPTH` deep, making at most `MAX_YAML_NODES` nodes once every alias
(`*name`) is counted as the nodes it repeats (a "billion laughs" file of a few hundred bytes
would make hundreds of millions).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from enforcer.errors import PolicyError
from enforcer.policy.fields import LOCATED_ERROR_TYPE
from enforcer.policy.model import ExecPolicy
from enforcer.policy.permissions import unsafe_reason

POLICY_SUFFIXES = (".yaml", ".yml")

# What one policy file may cost to read. A policy that fills the kernel's name map (32768
# names in one rule, see match.MAX_NAMES_PER_RULE) is about 330 KiB of YAML and 33000 nodes:
# the bounds leave room for that and refuse what only an attack or an accident makes.
MAX_FILE_BYTES = 1 << 20  # 1 MiB
MAX_YAML_NODES = 1 << 17  # 131072, in all the documents of one file, aliases expanded
MAX_YAML_DEPTH = 32  # a policy nests 7 deep (spec.rules[0].match.names[0])

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


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it came from."""

    policy: ExecPolicy
    source: Path
    line: int  # 1-based line where the policy's document starts
    name_line: int | None = None  # 1-based line of metadata.name, where a reused name is blamed


@dataclass(frozen=True)
class LoadResult:
    """Every valid policy found, and every problem found; policies with problems are left out.

    A policy name used by several policies is kept by the first one read; every other one is
    left out with a problem naming both files. `keeping_names_in_force` decides again for a
    daemon, whose policies in force keep their names against newcomers.
    """

    policies: tuple[LoadedPolicy, ...]
    problems: tuple[PolicyProblem, ...]
    # What `keeping_names_in_force` decides from: every valid policy read, in load order (those
    # left out for a reused name too), and the problems other than reused names. None when the
    # result was not made by the loader.
    candidates: tuple[LoadedPolicy, ...] | None = field(default=None, repr=False, compare=False)
    file_problems: tuple[PolicyProblem, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong, i.e. `policies` is the complete policy set."""
        return not self.problems

    def keeping_names_in_force(self, in_force: Iterable[LoadedPolicy]) -> LoadResult:
        """This result, with each reused policy name left to the file that holds it in force.

        `in_force` are the policies enforced now. When a file read now defines a name that
        another file holds in force, the newcomer is refused, whichever file sorts first; so is
        a newcomer taking the name of a policy whose file now has problems, since the daemon
        keeps that policy's last good version (see `Engine.reload`). A name no longer defined
        by the file that held it is free for the first file that defines it.
        """
        if self.candidates is None:
            return self
        holders = {loaded.policy.name: loaded.source for loaded in in_force}
        return _decide_names(self.candidates, self.file_problems, holders)


@dataclass(frozen=True)
class SetProblem:
    """Something wrong with a set of valid policies together, blamed on one of them.

    `index` is the blamed policy's position in the sequence checked, `loc` the field in it
    (pydantic's location, e.g. ("spec", "rules", 3, "match", "names")).
    """

    index: int
    loc: Loc
    message: str


# Checks a set of valid policies as a whole, e.g. enforcer.policy.capacity.set_problems.
SetCheck = Callable[[Sequence[ExecPolicy]], Iterable[SetProblem]]


def load_policies(paths: Iterable[Path], *, check_set: SetCheck | None = None) -> LoadResult:
    """Load policy files, and the `*.yaml`/`*.yml` files directly inside policy directories.

    `check_set`, if given, checks the valid policies together once they are read; a policy it
    blames is left out, with a problem on its file.
    """
    loader = _Loader()
    for path in paths:
        loader.add_path(Path(path))
    return loader.result(check_set)


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
    """Accumulates policies and problems across files; decides reused names once all are read."""

    # Valid policies in load order, each with its YAML document (to locate set problems).
    candidates: list[LoadedPolicy] = field(default_factory=list)
    documents: list[CommentedMap] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    files_read: set[Path] = field(default_factory=set)

    def result(self, check_set: SetCheck | None = None) -> LoadResult:
        decided = _decide_names(tuple(self.candidates), tuple(self.problems), {})
        if check_set is None:
            return decided
        pairs = zip(self.candidates, self.documents, strict=True)
        documents = {id(loaded): document for loaded, document in pairs}
        blamed: set[int] = set()
        set_problems = []
        for found in check_set([loaded.policy for loaded in decided.policies]):
            loaded = decided.policies[found.index]
            blamed.add(id(loaded))
            document = documents[id(loaded)]
            set_problems.append(_problem_at(document, loaded.source, found.loc, found.message))
        # The names stay decided as they were: a policy refused here gives its name to no one.
        return LoadResult(
            policies=tuple(p for p in decided.policies if id(p) not in blamed),
            problems=(*decided.problems, *set_problems),
            candidates=tuple(c for c in self.candidates if id(c) not in blamed),
            file_problems=(*self.problems, *set_problems),
        )

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
            if not stat.S_ISREG(os.stat(file).st_mode):
                # A FIFO or a device would block or never end: only regular files are read.
                self._problem(file, None, "not a regular file: name a policy file or directory")
                return
            if (reason := unsafe_reason(file)) is not None:
                self._problem(file, None, reason)
                return
            with file.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            self._problem(file, None, f"cannot read: {e.strerror or e}")
            return
        if len(data) > MAX_FILE_BYTES:
            self._problem(file, None, _TOO_LARGE)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self._problem(file, line, f"not valid UTF-8 (byte {e.start}); save the file as UTF-8")
            return
        self.add_text(text, file)

    def add_text(self, text: str, source: Path) -> None:
        if len(text) > MAX_FILE_BYTES:  # characters: never more than the file's bytes
            self._problem(source, None, _TOO_LARGE)
            return
        yaml = YAML(typ="rt")  # round-trip mode keeps the line of every key and item
        yaml.max_depth = MAX_YAML_DEPTH
        nodes_left = MAX_YAML_NODES
        try:
            # Composing is lazy and linear in the text: documents before a syntax error are
            # still checked, and each is counted before it is built (aliases expanded).
            for node in yaml.compose_all(text):
                nodes_left -= _checked_size(node, nodes_left)
                document = yaml.constructor.construct_document(node)
                self._add_document(document, node, source)
        except _BadNodeError as e:
            self.problems.append(e.problem(source))
        except YAMLError as e:
            self.problems.append(_yaml_problem(e, source, text))

    def _add_document(self, document: object, node: Node, source: Path) -> None:
        if document is None:  # an empty document, e.g. a trailing '---'
            return
        if not isinstance(document, CommentedMap):
            self._problem(
                source,
                node.start_mark.line + 1,
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
        name_line, _ = _locate(document, ("metadata", "name"))
        self.candidates.append(LoadedPolicy(policy, source, document.lc.line + 1, name_line))
        self.documents.append(document)

    def _problem(self, file: Path, line: int | None, message: str, path: str = "") -> None:
        self.problems.append(PolicyProblem(file, line, path, message))


_TOO_LARGE = (
    f"larger than {MAX_FILE_BYTES} bytes (1 MiB), the most a policy file may hold; "
    "split its policies into several files"
)


def _decide_names(
    candidates: tuple[LoadedPolicy, ...],
    file_problems: tuple[PolicyProblem, ...],
    holders: Mapping[str, Path],
) -> LoadResult:
    """The result where each policy name is kept by one policy and reused names are problems.

    The name goes to the policy from `holders[name]` (the file holding it in force) if that file
    still defines it, else to no one if that file now has problems (its last good version stays
    in force), else to the first policy read that defines it.
    """
    broken = {problem.file for problem in file_problems}
    by_name: dict[str, list[LoadedPolicy]] = {}
    for loaded in candidates:
        by_name.setdefault(loaded.policy.name, []).append(loaded)
    winners: set[int] = set()
    clashes: list[PolicyProblem] = []
    for name, contenders in by_name.items():
        holder = holders.get(name)
        winner = next((c for c in contenders if c.source == holder), None)
        held_elsewhere = holder is not None and (holder in broken or holder.parent in broken)
        if winner is None and not held_elsewhere:
            winner = contenders[0]
        if winner is not None:
            winners.add(id(winner))
        for loser in contenders:
            if loser is not winner:
                clashes.append(_reused_name(loser, winner, holder))
    return LoadResult(
        policies=tuple(c for c in candidates if id(c) in winners),
        problems=(*file_problems, *clashes),
        candidates=candidates,
        file_problems=file_problems,
    )


def _reused_name(
    loser: LoadedPolicy, winner: LoadedPolicy | None, holder: Path | None
) -> PolicyProblem:
    name = loser.policy.name
    rule = "policy names must be unique across all policy files: rename one of them"
    if winner is None:
        message = (
            f"policy name {name!r} is held by the policy in force from {holder}, kept while "
            f"that file has problems; {rule}, or fix {holder} first"
        )
    else:
        where = f"{winner.source}:{winner.name_line or winner.line}"
        in_force = " (the one in force)" if winner.source == holder else ""
        message = f"policy name {name!r} is already defined at {where}{in_force}; {rule}"
    return PolicyProblem(loser.source, loser.name_line, "metadata.name", message)


# The tags YAML's core schema resolves plain values to, and the merge key '<<'. Any other tag
# (`!!python/object`, `!!binary`, `!custom`) would be dropped silently: the value under it
# would be read as if the tag were not there.
_KNOWN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
)


class _BadNodeError(Exception):
    """A node that makes a document too large, endless, or tagged with what means nothing."""

    def __init__(self, node: Node, path: Loc, message: str) -> None:
        super().__init__(message)
        self.node, self.path, self.message = node, path, message

    def problem(self, source: Path) -> PolicyProblem:
        line = self.node.start_mark.line + 1
        return PolicyProblem(source, line, _spelled(self.path), f"YAML error: {self.message}")


def _checked_size(root: Node, budget: int) -> int:
    """How many nodes constructing `root` makes, an alias counting as all the nodes it repeats.

    The composer gives an alias the very node its anchor names, so sizes are computed once per
    distinct node: linear in the text even when the result is astronomical. Raises `_BadNodeError`
    for the first node (children before parents) larger than `budget`, for a node containing
    itself (`&a [*a]`), and for a tag that is not YAML's own.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    path: list[str | int] = []

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _BadNodeError(node, tuple(path), f"{_named(node)} {_RECURSIVE}")
        if node.tag not in _KNOWN_TAGS:
            written = str(node.tag).replace("tag:yaml.org,2002:", "!!", 1)
            raise _BadNodeError(node, tuple(path), f"the tag {written!r} {_UNKNOWN_TAG}")
        open_nodes.add(key)
        total = 1
        for part, child in _children(node):
            path.append(part)
            total += size(child)
            path.pop()
        open_nodes.discard(key)
        if total > budget:
            if budget < MAX_YAML_NODES and total <= MAX_YAML_NODES:  # earlier documents used it
                raise _BadNodeError(node, tuple(path), _FILE_TOO_MANY_NODES)
            raise _BadNodeError(
                node, tuple(path), f"{_named(node)} makes {total} {_TOO_MANY_NODES}"
            )
        sizes[key] = total
        return total

    return size(root)


def _named(node: Node) -> str:
    anchor = getattr(node, "anchor", None)
    return f"'&{anchor}'" if anchor else "this value"


_RECURSIVE = (
    "contains an alias of itself, which would make it endless; a policy holds no recursive "
    "data: write the value out"
)
_UNKNOWN_TAG = (
    "means nothing in a policy and would be ignored; remove it (quote a value to make it a string)"
)
_TOO_MANY_NODES = (
    f"YAML nodes once every alias in it is counted as the nodes it repeats; a policy file may "
    f"hold at most {MAX_YAML_NODES} nodes and {MAX_FILE_BYTES} bytes (1 MiB): write the lists "
    "out rather than nesting aliases (*name) of aliases"
)
_FILE_TOO_MANY_NODES = (
    f"with the documents before it, this file holds more than {MAX_YAML_NODES} YAML nodes, the "
    "most a policy file may (an alias counts as every node it repeats); split it into several "
    "files"
)


def _children(node: Node) -> Iterator[tuple[str | int, Node]]:
    if isinstance(node, SequenceNode):
        yield from enumerate(node.value)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            part = key.value if isinstance(key, ScalarNode) and isinstance(key.value, str) else "?"
            yield part, key
            yield part, value


def _spelled(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _plain(node: object) -> object:
    """Plain Python data from ruamel's round-trip types, so models never hold ruamel objects."""
    if isinstance(node, dict):
        return {_plain(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, TaggedScalar):  # a scalar with an explicit tag, e.g. !!str 123
        return str(node.value)
    for plain_type in (bool, str, int, float):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node


def _yaml_problem(error: YAMLError, source: Path, text: str) -> PolicyProblem:
    if isinstance(error, MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        if isinstance(error, MaxDepthExceededError):
            message = (
                f"YAML error: nested more than {MAX_YAML_DEPTH} levels deep, the most a policy "
                "file may be (a policy needs 7); remove the extra brackets or indentation"
            )
        elif isinstance(error, DuplicateKeyError):
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
        # fields.located_error: the validator blames an item below the field it validated.
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
    # Booleans are strict (selectors.Selector): "yes", "on", 1 or "true" are not read as true.
    "bool_type": "must be true or false, not {shown}: write true or false, without quotes",
}


def _friendly_message(error: ErrorDetails) -> str:
    template = _TYPE_MESSAGES.get(error["type"])
    if template is not None:
        value = error["input"]
        shown = _yaml_type_name(value)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            shown += f" ({value!r})"
        return template.format(input=_yaml_type_name(value), shown=shown)
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
