"""ExecPolicy YAML for tests: a selector and rules in, the file's text out.

The text keeps the layout people write (block mappings, flow lists), with
`spec` last and its keys indented by two, so a test can append a line to spec.
Strings are quoted (JSON is YAML): a container id such as 1e50 stays a string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

HOST: Mapping[str, object] = {"host": True}
ALL_CONTAINERS: Mapping[str, object] = {"allContainers": True}


def container_ids(*ids: str) -> Mapping[str, object]:
    """The selector of the containers whose ids (or id prefixes) are given."""
    return {"containers": {"ids": list(ids)}}


def rule(name: str, action: str | None = None, **match: object) -> dict[str, object]:
    """One rule: `match` as keyword arguments, e.g. names=[...], dirs=[...]."""
    return {"name": name, **({"action": action} if action else {}), "match": match}


def exec_policy(
    name: str,
    selector: Mapping[str, object],
    rules: Sequence[Mapping[str, object]],
    mode: str | None = None,
) -> str:
    """The YAML of one ExecPolicy; without `mode`, the policy's default applies."""
    spec: dict[str, object] = {"mode": mode} if mode else {}
    spec |= {"selector": selector, "rules": list(rules)}
    document = {
        "apiVersion": "enforcer/v1",
        "kind": "ExecPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    return "".join(_lines(document, 0))


def write_policy(directory: Path, filename: str, text: str) -> Path:
    """Writes `text` to DIRECTORY/FILENAME (making the directory), and returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(text)
    return path


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping) or _is_list_of_mappings(item):
                lines += [f"{pad}{key}:\n", *_lines(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}\n")
        return lines
    assert isinstance(value, list)
    lines = []
    for item in value:
        first, *rest = _lines(item, indent + 2)
        lines += [f"{pad}- {first.lstrip()}", *rest]
    return lines


def _is_list_of_mappings(value: object) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)


def _scalar(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
