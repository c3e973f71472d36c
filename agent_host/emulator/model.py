"""The deterministic, rule-based stand-in for the LLM (not an LLM).

Given an agent version's instructions and function tools and the conversation so far, it either
issues function calls for the banking requests in the latest user message, reports the results of
the calls it made, asks a clarifying question, or answers with fixed text. The same input always
produces the same output.

Instructions can carry one directive: a line `Reply prefix: <text>` makes every text reply start
with `<text>`, so which agent version answered is visible in the output.

`tool_choice` is honoured as the service does: `none` means no calls (the model says what it
would have called), `required` (or one named function) means at least one call: after tool
outputs the model calls again what the latest user message asks for, as a model forced to call
would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agent_host.emulator.agents import FunctionToolSpec
from agent_host.emulator.intents import Balance, Clarify, Close, ToolRequest, Transfer, join_phrases, parse_requests
from agent_host.emulator.items import FunctionCall, FunctionCallOutput, Item, Message
from agent_host.emulator.outcomes import describe_outcome

_PREFIX_DIRECTIVE = re.compile(r"^\s*reply prefix:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class _Story:
    topic: str
    text: str
    continuation: str


_STORIES = (
    _Story(
        topic="astronaut",
        text=(
            "Alone on the far side of the Moon, the astronaut planted a single basil seed in a coffee cup, "
            "and by morning the whole station smelled like home."
        ),
        continuation=(
            "Weeks later that basil had outgrown its coffee cup, so the astronaut named it Mission Control "
            "and started taking its advice."
        ),
    ),
    _Story(
        topic="lighthouse",
        text=(
            "The old lighthouse on the point had been automated for years, yet its lamp still waited for "
            "the keeper's footsteps every evening. One stormy night the footsteps came back, slow and "
            "familiar, climbing all one hundred and twelve steps. In the morning the fishermen swore the "
            "beam had never shone so warm."
        ),
        continuation=(
            "Long after the storm, the lighthouse kept that warmer beam, as if the keeper had left a little "
            "of himself in the lamp."
        ),
    ),
)


_ABILITIES = {
    Balance.tool: "check balances",
    Transfer.tool: "transfer funds",
    Close.tool: "close accounts",
}
_EXAMPLES = {
    Balance.tool: 'check a balance ("What is the balance of ACC-001?")',
    Transfer.tool: 'transfer funds ("Transfer $500 from ACC-001 to ACC-002.")',
    Close.tool: 'close an account ("Close ACC-003 and sweep to ACC-001.")',
}


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


Planned = Reply | ToolCall
ToolChoice = str
"""`"auto"`, `"none"`, `"required"`, or the name of the one function the model must call."""


class NoCallPossible(Exception):
    """`tool_choice` demands a call and the stand-in model finds none to make (an emulator limit)."""


@dataclass(frozen=True)
class AgentProfile:
    """What the model knows about the agent version it runs as."""

    instructions: str | None = None
    tools: Mapping[str, FunctionToolSpec] = field(default_factory=dict)

    @property
    def reply_prefix(self) -> str:
        match = _PREFIX_DIRECTIVE.search(self.instructions or "")
        return match.group(1) + " " if match else ""


def respond(
    agent: AgentProfile, history: Sequence[Item], new_input: Sequence[Item], tool_choice: ToolChoice = "auto"
) -> list[Planned]:
    """The model's output for `new_input` following `history` (earlier turns, oldest first).

    Input carrying `function_call_output`s is answered with a report of those results only, as a
    model's turn after tool calls would be; otherwise the latest user message decides. Then
    `tool_choice` has its say (see the module docstring).
    """
    planned = _plan(agent, history, new_input)
    if tool_choice == "auto":
        return planned
    if tool_choice == "none":
        return _without_calls(agent, planned)
    wanted = None if tool_choice == "required" else tool_choice
    calls = [p for p in planned if isinstance(p, ToolCall) and wanted in (None, p.name)]
    if not calls:
        asked = _latest_user_text((*history, *new_input))
        calls = [p for p in _banking(agent, asked) if isinstance(p, ToolCall) and wanted in (None, p.name)]
    if not calls:
        raise NoCallPossible(f"tool_choice {tool_choice!r} demands a call, and the latest user message asks for none")
    return list(calls)


def _plan(agent: AgentProfile, history: Sequence[Item], new_input: Sequence[Item]) -> list[Planned]:
    conversation = (*history, *new_input)
    outputs = [item for item in new_input if isinstance(item, FunctionCallOutput)]
    planned: list[Planned]
    if outputs:
        calls = {item.call_id: item for item in conversation if isinstance(item, FunctionCall)}
        planned = [Reply("\n".join(describe_outcome(calls.get(out.call_id), out.output) for out in outputs))]
    else:
        user_text = _latest_user_text(new_input)
        planned = _banking(agent, user_text) or [Reply(_chat(agent, user_text, conversation))]
    return [Reply(agent.reply_prefix + p.text) if isinstance(p, Reply) else p for p in planned]


def _latest_user_text(items: Sequence[Item]) -> str:
    return next((i.text for i in reversed(items) if isinstance(i, Message) and i.role == "user"), "")


def _without_calls(agent: AgentProfile, planned: list[Planned]) -> list[Planned]:
    """`planned` with its calls replaced by a sentence naming them (`tool_choice: "none"`)."""
    names = list(dict.fromkeys(p.name for p in planned if isinstance(p, ToolCall)))
    if not names:
        return planned
    said = [p for p in planned if isinstance(p, Reply)]
    note = f"Tool calls are switched off for this request, so I did not call {join_phrases(names)}."
    return [*said, Reply(agent.reply_prefix + note)]


def _banking(agent: AgentProfile, text: str) -> list[Planned]:
    """Function calls for the banking requests in `text`, or text saying why there are none."""
    intents = parse_requests(text)
    questions = [intent.question for intent in intents if isinstance(intent, Clarify)]
    if questions:
        return [Reply(" ".join(questions))]
    requests = [intent for intent in intents if not isinstance(intent, Clarify)]
    calls: list[Planned] = [
        ToolCall(request.tool, _arguments(agent.tools[request.tool], request))
        for request in requests
        if request.tool in agent.tools
    ]
    missing = list(dict.fromkeys(request.tool for request in requests if request.tool not in agent.tools))
    if not missing:
        return calls
    note = " ".join(f"This agent version has no {tool} tool, so I can't {_ABILITIES[tool]} here." for tool in missing)
    return [Reply(note), *calls]


def _arguments(tool: FunctionToolSpec, request: ToolRequest) -> dict[str, Any]:
    """The call's arguments shaped by the tool's schema.

    Unknown properties are left out, absent optional values too unless the schema requires them
    (strict schemas require every property, passed as `null`), and amounts become JSON numbers
    when the schema types them as numbers.
    """
    values = request.arguments()
    properties = tool.parameters.get("properties")
    if not isinstance(properties, Mapping):
        return {key: value for key, value in values.items() if value is not None}
    required = set(tool.parameters.get("required") or ())
    arguments: dict[str, Any] = {}
    for key, value in values.items():
        if key not in properties:
            continue
        if value is None:
            if key in required or tool.strict:
                arguments[key] = None
            continue
        arguments[key] = _typed(value, properties[key])
    return arguments


def _typed(value: str, schema: object) -> Any:
    declared = schema.get("type") if isinstance(schema, Mapping) else None
    types = set(declared) if isinstance(declared, list) else {declared}
    if "string" in types or not types & {"number", "integer"}:
        return value
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def _chat(agent: AgentProfile, text: str, conversation: Sequence[Item]) -> str:
    """Fixed replies for everything that is not a banking request."""
    lowered = text.lower()
    if "story" in lowered and "continue" in lowered:
        told = [i.text for i in conversation if isinstance(i, Message) and i.role == "assistant"]
        for said in reversed(told):
            story = next((s for s in _STORIES if s.text in said), None)
            if story:
                return story.continuation
        return "There is no story to continue yet; ask me for a one-line story about an astronaut first."
    if "story" in lowered:
        story = next((s for s in _STORIES if s.topic in lowered), None)
        if story:
            return story.text
    abilities = [_EXAMPLES[tool] for tool in _EXAMPLES if tool in agent.tools]
    banking = f"I can {join_phrases(abilities)}, and " if abilities else "This agent has no banking tools, but "
    return (
        "I am the emulator's rule-based stand-in model, not an LLM. "
        f"{banking}I can tell a one-line story about an astronaut or a three-sentence story about a lighthouse."
    )
