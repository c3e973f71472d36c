"""Every published tool schema passes MCP Inspector's tool-schema portability lint without a finding.

The rules are those of Inspector's `core/json/schemaLint.ts` (modelcontextprotocol/inspector PR
#2121, "flag unportable tool schemas"; the `type-union` rule's severity and `anyOf` suggestion
restated in PR #2395): an `inputSchema` root is `type: "object"`; no bare `true`/`false`
subschema (Claude Code refuses the tool); no `$ref`; and, the one warning, no array-valued
`type` (`type-union`). `inspector --cli --strict` needs Node >= 22, so the rules run here instead,
on the schemas exactly as a client fetches them with `list_tools`.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.harness import Harness

pytestmark = pytest.mark.anyio

_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def findings(schema: Any, path: str) -> Iterator[str]:
    """One line per rule broken anywhere in `schema` (`path` names where it sits)."""
    if isinstance(schema, bool):
        yield f"{path}: bare boolean subschema"
        return
    if not isinstance(schema, dict):
        yield f"{path}: not a schema object"
        return
    if "$ref" in schema:
        yield f"{path}: $ref"
    if isinstance(schema.get("type"), list):
        yield f"{path}: type-union"
    for key in _ONE:
        if key in schema:
            yield from findings(schema[key], f"{path}/{key}")
    for key in _MANY:
        for i, sub in enumerate(schema.get(key, ())):
            yield from findings(sub, f"{path}/{key}/{i}")
    for key in _NAMED:
        for name, sub in schema.get(key, {}).items():
            yield from findings(sub, f"{path}/{key}/{name}")


def test_the_rules_catch_what_they_name() -> None:
    unportable = {
        "type": "object",
        "properties": {"a": {"type": ["string", "null"]}, "b": True, "c": {"$ref": "#/$defs/C"}},
        "additionalProperties": {"anyOf": [{"type": ["integer", "null"]}]},
    }
    assert sorted(findings(unportable, "#")) == [
        "#/additionalProperties/anyOf/0: type-union",
        "#/properties/a: type-union",
        "#/properties/b: bare boolean subschema",
        "#/properties/c: $ref",
    ]


async def test_every_published_schema_passes_the_inspector_lint(tmp_path: Path) -> None:
    harness = Harness("memory", f"sqlite:///{tmp_path}/ledger.db")
    async with harness.client() as client:
        tools = (await client.list_tools()).tools

    assert tools
    for tool in tools:
        assert tool.input_schema.get("type") == "object", tool.name
        assert tool.output_schema is not None, tool.name
        found = [*findings(tool.input_schema, f"{tool.name} inputSchema")]
        found += findings(tool.output_schema, f"{tool.name} outputSchema")
        assert found == []
