"""Function tool schemas as strict mode takes them: what it rejects, and the form the service stores.

Strict mode (Structured Outputs) supports a subset of JSON Schema: the root is an object; every
object lists all its properties in `required` and sets `additionalProperties: false`; the
keywords below and nothing else (`minLength`, `maxLength`, `oneOf`, `allOf`, `not`,
`if`/`then`/`else`, `patternProperties`, `uniqueItems`, `default`, … are rejected). A
function tool sent without `strict` is normalised to strict mode when it can be; the stored
definition is that normal form (see docs/foundry-wire-notes.md for the sources).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_host.emulator.errors import ApiError

SUPPORTED = frozenset(
    {
        # structure
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "description",
        # strings
        "pattern",
        "format",
        # numbers
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        # arrays
        "minItems",
        "maxItems",
    }
)
MAX_DEPTH = 10


def invalid_schema(tool: str, context: tuple[str, ...], problem: str, param: str) -> ApiError:
    """The 400 the service answers a schema strict mode cannot take with (OpenAI's wording)."""
    return ApiError(
        400,
        f"Invalid schema for function '{tool}': In context={context!r}, {problem}.",
        type="invalid_request_error",
        param=param,
        code="invalid_function_parameters",
    )


def check_strict(tool: str, schema: Mapping[str, Any], param: str) -> None:
    """Reject `schema` unless strict mode supports it as it stands."""
    if schema.get("type") != "object" or "anyOf" in schema:
        raise invalid_schema(
            tool, (), "schema must be a JSON Schema of 'type: \"object\"', got 'anyOf' or another type", param
        )
    _check(tool, schema, (), param, 0)


def _check(tool: str, schema: Mapping[str, Any], context: tuple[str, ...], param: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise invalid_schema(tool, context, f"the schema nests deeper than {MAX_DEPTH} levels", param)
    for keyword in schema:
        if keyword not in SUPPORTED:
            raise invalid_schema(tool, context, f"'{keyword}' is not permitted", param)
    properties = schema.get("properties")
    if isinstance(properties, Mapping) or schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            raise invalid_schema(
                tool, context, "'additionalProperties' is required to be supplied and to be false", param
            )
        names = list(properties or {})
        missing = [name for name in names if name not in (schema.get("required") or [])]
        if missing:
            raise invalid_schema(
                tool,
                context,
                "'required' is required to be supplied and to be an array including every key in properties. "
                f"Missing '{missing[0]}'",
                param,
            )
        for name, sub in (properties or {}).items():
            _check(tool, sub, (*context, "properties", name), param, depth + 1)
    for index, option in enumerate(schema.get("anyOf") or []):
        _check(tool, option, (*context, "anyOf", str(index)), param, depth + 1)
    if isinstance(schema.get("items"), Mapping):
        _check(tool, schema["items"], (*context, "items"), param, depth + 1)
    for defs in ("$defs", "definitions"):
        for name, sub in (schema.get(defs) or {}).items():
            _check(tool, sub, (*context, defs, name), param, depth + 1)


def normal_form(tool: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A function tool as the service stores it: no `null` fields, and an explicit `strict`.

    A tool without `strict` whose schema can be made strict (every property required, no extra
    properties) is stored strict in that form; otherwise it is stored with `strict: false`.
    """
    stored = {key: value for key, value in tool.items() if value is not None}
    parameters = stored.get("parameters") or {}
    if stored.get("strict") is True:
        check_strict(stored["name"], parameters, param)
    elif "strict" not in stored:
        strict = _strictened(parameters)
        try:
            check_strict(stored["name"], strict, param)
        except ApiError:
            stored["strict"] = False
        else:
            stored |= {"parameters": strict, "strict": True}
    return stored


def _strictened(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with every object closed and all its properties required (nothing else changed)."""
    result = dict(schema)
    properties = result.get("properties")
    if isinstance(properties, Mapping) or result.get("type") == "object":
        result["properties"] = {name: _strictened(sub) for name, sub in (properties or {}).items()}
        result["required"] = list(properties or {})
        result.setdefault("additionalProperties", False)
    if isinstance(result.get("items"), Mapping):
        result["items"] = _strictened(result["items"])
    if isinstance(result.get("anyOf"), list):
        result["anyOf"] = [_strictened(option) for option in result["anyOf"]]
    return result
