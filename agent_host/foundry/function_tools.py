"""The function tools: the MCP server's tools as the agent sees them, and the model's calls run through MCP.

Left to itself, the Responses API may normalise a schema to strict mode (every property required,
no extra properties), which silently turns optional MCP arguments into required ones. So each tool
is sent either as a strict-compatible schema, with `strict: true`, or as written, with
`strict: false`. Strict mode makes optional properties required-but-nullable; the model then
sends `null` for "not given", and `FunctionTool.mcp_arguments` drops those `null` values
again so the MCP server sees exactly the call an MCP client would make.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import mcp_types

from agent_host.approvers import ApprovalDesk
from agent_host.foundry.pending_keys import PendingKeys
from agent_host.json_keys import KeyGivenTwice, unique_keys
from agent_host.mcp_link import McpLink, ToolResult, failed_output

_ANNOTATIONS = frozenset({"title", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment", "$schema"})
"""Keywords that describe rather than constrain: dropped from strict schemas, which reject them."""

_STRICT_KEYWORDS = frozenset(
    {
        "type",
        "description",
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
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)
"""Constraining keywords strict mode accepts (not `minLength`/`maxLength`: see
docs/foundry-wire-notes.md); any other one makes the tool non-strict."""


class NotStrictCompatible(ValueError):
    """The schema uses something strict mode cannot express (e.g. free-form objects, `oneOf`)."""


@dataclass(frozen=True)
class FunctionTool:
    """One MCP tool as the agent definition carries it."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool
    input_schema: dict[str, Any]
    """The MCP tool's own schema, kept to undo strict-mode `null`s."""

    def definition(self) -> dict[str, Any]:
        """The `{"type": "function", ...}` tool of a `PromptAgentDefinition`."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": self.strict,
        }

    def mcp_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The model's arguments as the MCP call takes them (strict `null` for optional means absent)."""
        result = _without_optional_nulls(arguments, self.input_schema) if self.strict else arguments
        return dict(result)


def function_tool(tool: mcp_types.Tool, *, strict: bool = True) -> FunctionTool:
    """Convert `tool`; strict when asked for and its schema allows it, otherwise as written."""
    schema = dict(tool.input_schema)
    parameters = schema
    is_strict = strict
    if strict:
        try:
            parameters = strict_schema(schema)
        except NotStrictCompatible:
            is_strict = False
    return FunctionTool(tool.name, tool.description, parameters, is_strict, schema)


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` rewritten for strict mode, or `NotStrictCompatible`."""
    unsupported = set(schema) - _STRICT_KEYWORDS - _ANNOTATIONS
    if unsupported:
        raise NotStrictCompatible(f"unsupported keywords {sorted(unsupported)}")
    result: dict[str, Any] = {key: value for key, value in schema.items() if key not in _ANNOTATIONS}
    if "anyOf" in result:
        result["anyOf"] = [strict_schema(option) for option in result["anyOf"]]
    if "items" in result:
        result["items"] = strict_schema(result["items"])
    for defs in ("$defs", "definitions"):
        if defs in result:
            result[defs] = {name: strict_schema(sub) for name, sub in result[defs].items()}
    if _is_object(result):
        properties = result.get("properties")
        if not isinstance(properties, Mapping) or result.get("additionalProperties", False) is not False:
            raise NotStrictCompatible("objects need fixed properties")
        required = set(result.get("required", ()))
        result["properties"] = {
            name: strict_schema(sub) if name in required else _nullable(strict_schema(sub))
            for name, sub in properties.items()
        }
        result["required"] = list(properties)
        result["additionalProperties"] = False
    return result


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` that also accepts `null` (how strict mode expresses "optional")."""
    if "anyOf" in schema:
        options = schema["anyOf"]
        return schema if {"type": "null"} in options else {**schema, "anyOf": [*options, {"type": "null"}]}
    kind = schema.get("type")
    if kind is None or "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = kind if isinstance(kind, list) else [kind]
    result = {**schema, "type": kinds if "null" in kinds else [*kinds, "null"]}
    if "enum" in result and None not in result["enum"]:
        result["enum"] = [*result["enum"], None]
    return result


def _without_optional_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` minus the `null` properties the original `schema` did not require, recursively."""
    properties = schema.get("properties")
    if not isinstance(value, Mapping) or not isinstance(properties, Mapping):
        return value
    required = set(schema.get("required", ()))
    return {
        key: _without_optional_nulls(item, properties.get(key, {}))
        for key, item in value.items()
        if item is not None or key in required
    }


@dataclass(frozen=True)
class FunctionCall:
    """A `function_call` output item: what the model asked to run."""

    call_id: str
    name: str
    arguments: str


class Relisting(NamedTuple):
    """A server's tool list, and its function tools by name."""

    listed: list[mcp_types.Tool]
    tools: dict[str, FunctionTool]


class Toolbox:
    """Function tools built from the link's MCP tools; runs calls by name through the link.

    With the `desk` that answers the link's questions, a call whose question a person
    interrupted stops the host once its result (the server's record of the cancel) is back.
    `tools` are those a model is given from now on (replaced by `adopt`, which takes up what a server reconnected
    to lists, never changed in place: a turn holding them keeps them as they were). A call is checked against the
    tools the model that made it was given (`run`'s `given`, its conversation's turn's, not those another
    conversation has taken up since) and sent only while the server lists its tool with the same input schema.
    """

    def __init__(self, link: McpLink, *, strict: bool = True, desk: ApprovalDesk | None = None) -> None:
        self.link = link
        self.desk = desk
        self.strict = strict
        self._listed = list(link.tools)
        self.tools = {tool.name: function_tool(tool, strict=strict) for tool in self._listed}
        self.called: set[str] = set()
        """The `call_id` of every call its conversations made: each is an idempotency key of the link's one principal,
        shared by them all (the web chat's threads), so a call reusing one, in whichever conversation, is answered,
        not run (`agent_host.conversation`). Kept for the host's life, about 120 bytes a call."""

    def definitions(self) -> list[dict[str, Any]]:
        return [tool.definition() for tool in self.tools.values()]

    def relisted(self) -> Relisting | None:
        """The tools the link's server lists now, if not those the model was given (a session reopened on a
        server that lists others)."""
        listed = list(self.link.tools)
        if listed == self._listed:
            return None
        return Relisting(listed, {tool.name: function_tool(tool, strict=self.strict) for tool in listed})

    def adopt(self, relisting: Relisting, *, given: bool = True) -> None:
        """Take up `relisting`, giving the model its tools from now on unless not `given` (an agent used as it is
        keeps those it has: its calls are checked against them, so one for a tool since changed is not sent)."""
        self._listed = relisting.listed
        if given:
            self.tools = relisting.tools

    async def run(self, call: FunctionCall, given: Mapping[str, FunctionTool], pending: PendingKeys) -> ToolResult:
        """Execute `call`, made by a model `given` these tools, with its `call_id` as the idempotency key (or,
        continuing an approval its conversation left `pending`, the key that was asked under); malformed calls are
        answered, not run."""
        if not _is_unicode(call.call_id):  # it goes to the MCP server as the idempotency key
            return _refused("invalid_call_id", "The call_id is not valid Unicode (a lone surrogate); nothing was run.")
        tool = given.get(call.name)
        if tool is None:
            return _refused("unknown_tool", f"There is no tool named {call.name!r}; use one of {sorted(given)}.")
        try:
            arguments = read_arguments(call.arguments)
        except BadArguments as error:
            return _refused("invalid_arguments", str(error))
        mcp_arguments = tool.mcp_arguments(arguments)
        key = pending.key(call.call_id, mcp_arguments.get("approval_ref"))
        schema = tool.input_schema
        result = await self.link.call(call.name, mcp_arguments, idempotency_key=key, schema=schema)
        if self.desk is not None:
            # A server that could ask nobody answers `pending_approval` with a desk link: once the link was
            # shown, the call is made again with its `approval_ref` (which runs it at most once) until it
            # settles, under the same key: the key is part of what the approver signed, so another is refused.
            while (ref := await self.desk.pending_link(result.output)) is not None:
                continued = {**mcp_arguments, "approval_ref": ref}
                result = await self.link.call(call.name, continued, idempotency_key=key, schema=schema)
            self.desk.stop_if_interrupted(call.name, result.output)
        pending.note(key, result.output)
        return result


class BadArguments(ValueError):
    """A call's arguments the host does not pass on; the message tells the model what is wrong."""


def read_arguments(text: str) -> dict[str, Any]:
    """The model's arguments as a JSON object, exactly as JSON defines one, or `BadArguments`.

    Python's reader takes more than JSON, and none of it survives the way to the MCP server faithfully:
    `NaN`, `Infinity` and numbers out of range would arrive as `null` (so the server says "required"), a
    lone surrogate (`"\\ud800"`) cannot be encoded for it at all (over stdio that broke the session), and
    a key given twice is read as its last value where another reader may take the first.
    """
    try:
        arguments = json.loads(
            text or "{}", parse_constant=_not_a_number, parse_float=_finite, object_pairs_hook=unique_keys
        )
        json.dumps(arguments, ensure_ascii=False).encode()
    except BadArguments:
        raise
    except KeyGivenTwice as twice:
        raise BadArguments(
            f"The arguments give the key {_short(repr(twice.key))} more than once in one object."
        ) from None
    except UnicodeEncodeError:
        raise BadArguments("The arguments hold text that is not valid Unicode (a lone surrogate).") from None
    except ValueError as error:
        raise BadArguments(f"The arguments are not valid JSON: {error}.") from None
    except RecursionError:  # the model's JSON decides how deep the parser recurses
        raise BadArguments("The arguments are nested too deeply.") from None
    if not isinstance(arguments, dict):
        raise BadArguments("The arguments must be a JSON object.")
    return arguments


def _not_a_number(word: str) -> float:
    raise BadArguments(f"The arguments hold {word}, which is not a JSON value.")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadArguments(f"The arguments hold a number out of range: {_short(text)}.")
    return number


def _is_unicode(text: str) -> bool:
    """Whether `text` can be encoded at all (not if it holds a lone surrogate, which JSON can escape)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _short(text: str, limit: int = 40) -> str:
    """`text` quoted back to the model, not a megabyte of it."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def _refused(code: str, message: str) -> ToolResult:
    return ToolResult(failed_output(code, message), True)
