"""The JSON Schema of an ExecPolicy, generated from the pydantic model (`enforcer schema`).

Editors check policy files against it as they are typed (yaml-language-server's
`# yaml-language-server: $schema=...` modeline). It says what the model
says about each field; `enforcer check` says more (YAML bounds, file
permissions, names reused across files, what the kernel maps can hold).
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic.json_schema import PydanticJsonSchemaWarning

from enforcer.policy.model import ExecPolicy

SCHEMA_ID = "https://enforcer.invalid/schemas/execpolicy-v1.json"


def policy_schema() -> dict[str, Any]:
    with warnings.catch_warnings():
        # An empty label map, the default, has no JSON form: the schema leaves it out.
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema = ExecPolicy.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
