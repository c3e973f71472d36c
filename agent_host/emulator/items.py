"""Conversation items: the Responses input parsed into plain values, and output items rendered back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from agent_host.emulator.errors import invalid_request

Role = Literal["user", "assistant", "system", "developer"]
_ROLES: tuple[Role, ...] = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


@dataclass(frozen=True)
class Message:
    role: Role
    text: str


@dataclass(frozen=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class FunctionCallOutput:
    call_id: str
    output: str


Item = Message | FunctionCall | FunctionCallOutput


def new_id(prefix: str) -> str:
    """A fresh id in the service's style (`resp_…`, `msg_…`, `fc_…`, `call_…`)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def parse_input(raw: object) -> list[Item]:
    """Parse the request's `input`: a string (one user message) or a list of input items."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message("user", raw)]
    if not isinstance(raw, list):
        raise invalid_request("Invalid type for 'input': expected a string or an array of input items.", "input")
    return [_parse_item(item, f"input[{index}]") for index, item in enumerate(raw)]


def _parse_item(item: object, param: str) -> Item:
    if not isinstance(item, dict):
        raise invalid_request(f"Invalid type for '{param}': expected an object.", param)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise invalid_request(
                f"Invalid value for '{param}.role': {role!r}. Supported values are: {', '.join(_ROLES)}.",
                f"{param}.role",
            )
        return Message(role, _content_text(item.get("content"), f"{param}.content"))
    if kind == "function_call_output":
        return FunctionCallOutput(_string(item, "call_id", param), _string(item, "output", param, allow_empty=True))
    if kind == "function_call":
        return FunctionCall(
            _string(item, "call_id", param),
            _string(item, "name", param),
            _string(item, "arguments", param, allow_empty=True),
        )
    raise invalid_request(
        f"Invalid value for '{param}.type': {kind!r}. Supported values are: "
        "'message', 'function_call' and 'function_call_output'.",
        f"{param}.type",
    )


def _content_text(content: object, param: str) -> str:
    """The text of a message's content; non-text parts (images, files) carry nothing the model reads."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array of content parts.", param)
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(f"Invalid content part at '{param}[{index}]'.", f"{param}[{index}]")
        if part["type"] in _TEXT_PARTS:
            texts.append(_string(part, "text", f"{param}[{index}]", allow_empty=True))
    return "\n".join(texts)


def _string(obj: dict[str, Any], key: str, param: str, *, allow_empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        message = (
            f"Missing required parameter: '{param}.{key}'."
            if value is None
            else f"Invalid value for '{param}.{key}': expected a {'' if allow_empty else 'non-empty '}string."
        )
        raise invalid_request(message, f"{param}.{key}")
    return value


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """An assistant message output item."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text_part(text)] if status == "completed" else [],
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id: str | None, call: FunctionCall, status: str = "completed") -> dict[str, Any]:
    """A function call output item; in progress it carries empty `arguments`, as streamed.

    `id` is optional in the service's item type: `None` leaves it out.
    """
    return ({"id": item_id} if item_id is not None else {}) | {
        "type": "function_call",
        "status": status,
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments if status == "completed" else "",
    }
