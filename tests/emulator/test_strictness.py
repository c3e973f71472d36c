"""The emulator refuses what the service refuses: strict schemas it cannot take, and it stores the
normal form of a definition."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import FunctionTool, PromptAgentDefinition
from azure.core.exceptions import HttpResponseError

from agent_host.emulator.strict_schema import SUPPORTED
from agent_host.foundry.function_tools import _ANNOTATIONS, _STRICT_KEYWORDS, function_tool

from .helpers import MODEL

CLOSED: dict[str, Any] = {
    "type": "object",
    "properties": {"memo": {"type": "string"}},
    "required": ["memo"],
    "additionalProperties": False,
}


def _create(project: AIProjectClient, parameters: dict[str, Any], strict: bool | None) -> dict[str, Any]:
    # The SDK types `strict` as a required bool, but drops a None (the definition goes without it), which
    # is how these tests send a tool that leaves strictness to the service.
    tool = FunctionTool(name="note", parameters=parameters, strict=strict)  # type: ignore[arg-type]
    definition = PromptAgentDefinition(model=MODEL, instructions="x", tools=[tool])
    version = project.agents.create_version(agent_name="strict", definition=definition)
    stored: dict[str, Any] = version.as_dict()["definition"]["tools"][0]
    return stored


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({**CLOSED, "properties": {"memo": {"type": "string", "maxLength": 140}}}, "'maxLength' is not permitted"),
        ({**CLOSED, "properties": {"memo": {"oneOf": [{"type": "string"}]}}}, "'oneOf' is not permitted"),
        ({k: v for k, v in CLOSED.items() if k != "additionalProperties"}, "'additionalProperties' is required"),
        ({**CLOSED, "required": []}, "Missing 'memo'"),
        ({"anyOf": [CLOSED]}, "must be a JSON Schema of 'type: \"object\"'"),
    ],
)
def test_strict_schemas_strict_mode_cannot_take_are_refused(
    project: AIProjectClient, parameters: dict[str, Any], problem: str
) -> None:
    with pytest.raises(HttpResponseError) as refused:
        _create(project, parameters, strict=True)
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "invalid_function_parameters"
    assert problem in str(refused.value.error.message) and "Invalid schema for function 'note'" in str(
        refused.value.error.message
    )


def test_a_definition_is_stored_in_the_services_normal_form(project: AIProjectClient) -> None:
    open_schema = {"type": "object", "properties": {"memo": {"type": "string"}}}
    assert _create(project, open_schema, strict=None) == {
        "type": "function",
        "name": "note",
        "parameters": CLOSED,
        "strict": True,
    }, "strict omitted: made strict when it can be"
    free_form = {"type": "object", "additionalProperties": True}
    assert _create(project, free_form, strict=None)["strict"] is False
    assert _create(project, {**CLOSED, "properties": {"memo": {"maxLength": 3}}}, strict=False)["strict"] is False


def test_the_hosts_strict_keywords_are_ones_the_service_takes() -> None:
    assert _STRICT_KEYWORDS <= SUPPORTED
    assert not _ANNOTATIONS & SUPPORTED, "annotations the host drops are ones strict mode refuses"
    limited = mcp_types.Tool(
        name="note",
        input_schema={"type": "object", "properties": {"memo": {"type": "string", "maxLength": 140}}},
    )
    assert function_tool(limited).strict is False, "a schema strict mode refuses is sent as non-strict"
