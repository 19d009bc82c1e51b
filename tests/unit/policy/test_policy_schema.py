"""`enforcer schema`: the JSON Schema editors check policies with, from the pydantic model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "bad-policies"
# Corpus cases the schema alone can tell: a wrong type, key, value or shape.
# The rest need `enforcer check` (YAML bounds, path forms, names across files).
STRUCTURAL = [
    "action-capitalised", "action-invalid", "all-containers-string", "api-version-missing",
    "api-version-wrong", "containers-typo", "dirs-number", "document-is-a-list",
    "document-is-text", "host-number", "host-quoted-true", "host-quoted-yes", "ids-not-a-list",
    "ids-number", "kind-lowercase", "kind-wrong", "labels-value-number", "match-missing",
    "match-typo", "metadata-missing", "metadata-name-missing", "metadata-name-number",
    "metadata-not-a-mapping", "metadata-unknown-key", "mode-boolean", "mode-capitalised",
    "mode-invalid", "names-boolean", "names-not-a-list", "names-null", "names-number",
    "namespaces-typo", "rule-name-missing", "rule-not-a-mapping",
    "rule-typo", "rules-missing", "rules-not-a-list", "selector-missing", "selector-typo",
    "spec-missing", "spec-typo", "top-level-typo", "top-level-unknown-key",
]  # fmt: skip


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    printed = subprocess.run([sys.executable, "-m", "enforcer", "schema"],
                             capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    loaded: dict[str, Any] = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def documents(path: Path) -> list[Any]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", sorted(REPO.glob("policies/*.yaml*")), ids=lambda p: p.name)
def test_every_example_policy_passes_the_schema(schema: dict[str, Any], path: Path) -> None:
    for document in documents(path):
        jsonschema.validate(document, schema)


@pytest.mark.parametrize("case", STRUCTURAL)
def test_the_schema_refuses_the_malformed_examples(schema: dict[str, Any], case: str) -> None:
    docs = documents(CORPUS / f"{case}.yaml")
    with pytest.raises(jsonschema.ValidationError):
        for document in docs or [None]:
            jsonschema.validate(document, schema)
