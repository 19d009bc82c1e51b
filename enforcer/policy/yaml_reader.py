"""Reading the YAML of one policy file: bounded, and keeping the line of every node.

What one file may cost to read is bounded, so that neither `enforcer check` nor a reload of the
daemon can be made to run for long or run out of memory: at most `MAX_FILE_BYTES` of YAML,
nested at most `MAX_YAML_DEPTH` deep, making at most `MAX_YAML_NODES` nodes once every alias
(`*name`) is counted as the nodes it repeats (a "billion laughs" file of a few hundred bytes
would make hundreds of millions).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from enforcer.errors import EnforcerError
from enforcer.policy.problems import Loc, PolicyProblem, spelled

# What one policy file may cost to read. A policy that fills the kernel's name map (32768
# names in one rule, see match.MAX_NAMES_PER_RULE) is about 330 KiB of YAML and 33000 nodes:
# the bounds leave room for that and refuse what only an attack or an accident makes.
MAX_FILE_BYTES = 1 << 20  # 1 MiB
MAX_YAML_NODES = 1 << 17  # 131072, in all the documents of one file, aliases expanded
MAX_YAML_DEPTH = 32  # a policy nests 7 deep (spec.rules[0].match.names[0])


def read_documents(text: str) -> Iterator[tuple[object, Node]]:
    """Each YAML document of `text`, built, with its node (which holds its line).

    Raises `BadNodeError` or ruamel's `YAMLError` at the first document too large, endless,
    oddly tagged or not YAML; the documents before it are still given.
    """
    yaml = YAML(typ="rt")  # round-trip mode keeps the line of every key and item
    yaml.max_depth = MAX_YAML_DEPTH
    nodes_left = MAX_YAML_NODES
    # Composing is lazy and linear in the text: documents before a syntax error are
    # still checked, and each is counted before it is built (aliases expanded).
    for node in yaml.compose_all(text):
        nodes_left -= _checked_size(node, nodes_left)
        yield yaml.constructor.construct_document(node), node


# The tags YAML's core schema resolves plain values to, and the merge key '<<'. Any other tag
# (`!!python/object`, `!!binary`, `!custom`) would be dropped silently: the value under it
# would be read as if the tag were not there.
_KNOWN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")
)


class BadNodeError(EnforcerError):
    """A node that makes a document too large, endless, or tagged with what means nothing.

    The loader turns it into a PolicyProblem naming the file and line.
    """

    def __init__(self, node: Node, path: Loc, message: str) -> None:
        super().__init__(message)
        self.node, self.path, self.message = node, path, message

    def problem(self, source: Path) -> PolicyProblem:
        line = self.node.start_mark.line + 1
        return PolicyProblem(source, line, spelled(self.path), f"YAML error: {self.message}")


def _checked_size(root: Node, budget: int) -> int:
    """How many nodes constructing `root` makes, an alias counting as all the nodes it repeats.

    The composer gives an alias the very node its anchor names, so sizes are computed once per
    distinct node: linear in the text even when the result is astronomical. Raises `BadNodeError`
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
            raise BadNodeError(node, tuple(path), f"{_named(node)} {_RECURSIVE}")
        if node.tag not in _KNOWN_TAGS:
            written = str(node.tag).replace("tag:yaml.org,2002:", "!!", 1)
            raise BadNodeError(node, tuple(path), f"the tag {written!r} {_UNKNOWN_TAG}")
        open_nodes.add(key)
        total = 1
        for part, child in _children(node):
            path.append(part)
            total += size(child)
            path.pop()
        open_nodes.discard(key)
        if total > budget:
            if budget < MAX_YAML_NODES and total <= MAX_YAML_NODES:  # earlier documents used it
                raise BadNodeError(node, tuple(path), _FILE_TOO_MANY_NODES)
            raise BadNodeError(node, tuple(path), f"{_named(node)} makes {total} {_TOO_MANY_NODES}")
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


def plain(node: object) -> object:
    """Plain Python data from ruamel's round-trip types, so models never hold ruamel objects."""
    if isinstance(node, dict):
        return {plain(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, TaggedScalar):  # a scalar with an explicit tag, e.g. !!str 123
        return str(node.value)
    for plain_type in (bool, str, int, float):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node


def yaml_problem(error: YAMLError, source: Path, text: str) -> PolicyProblem:
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
