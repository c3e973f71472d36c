"""The rule-based stand-in model on its own: parsing, tool selection and grounded answers."""

from __future__ import annotations

import json

import pytest

from agent_host.emulator.agents import FunctionToolSpec
from agent_host.emulator.intents import Balance, Clarify, Close, Transfer, parse_requests
from agent_host.emulator.items import FunctionCall, FunctionCallOutput, Item, Message
from agent_host.emulator.model import AgentProfile, Reply, ToolCall, respond
from agent_host.emulator.outcomes import describe_outcome

SCHEMAS = {
    "get_account_balance": {"properties": {"account_id": {"type": "string"}}, "required": ["account_id"]},
    "transfer_funds": {
        "properties": {
            "from_account": {"type": "string"},
            "to_account": {"type": "string"},
            "amount": {"type": "string"},
            "memo": {"type": "string"},
        },
        "required": ["from_account", "to_account", "amount"],
    },
    "close_account": {
        "properties": {"account_id": {"type": "string"}, "sweep_to": {"type": "string"}},
        "required": ["account_id"],
    },
}


def _profile(*tools: str, instructions: str | None = None, amount_type: str = "string") -> AgentProfile:
    specs = {}
    for name in tools:
        schema = json.loads(json.dumps(SCHEMAS[name]))
        if "amount" in schema["properties"]:
            schema["properties"]["amount"]["type"] = amount_type
        specs[name] = FunctionToolSpec(name, None, schema, None)
    return AgentProfile(instructions, specs)


BANK = _profile("get_account_balance", "transfer_funds", "close_account")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the balance of ACC-001?", [Balance("ACC-001")]),
        ("how much is in acc-007", [Balance("ACC-007")]),
        ("Transfer $500 from ACC-001 to ACC-002.", [Transfer("ACC-001", "ACC-002", "500")]),
        ("Transfer $1,250.50 from ACC-001 to ACC-002", [Transfer("ACC-001", "ACC-002", "1250.50")]),
        ("send 500 USD to ACC-002 from ACC-001", [Transfer("ACC-001", "ACC-002", "500")]),
        ("Move 500.00 dollars from ACC-001 to ACC-002", [Transfer("ACC-001", "ACC-002", "500.00")]),
        (
            'Pay 75 from ACC-001 to ACC-002 memo "March rent 2024"',
            [Transfer("ACC-001", "ACC-002", "75", "March rent 2024")],
        ),
        ("close ACC-003", [Close("ACC-003")]),
        ("close account ACC-003 and sweep to ACC-001", [Close("ACC-003", "ACC-001")]),
        ("balance of ACC-001 and ACC-002", [Balance("ACC-001"), Balance("ACC-002")]),
        (
            "Check the balance of ACC-001, then transfer $5 from ACC-001 to ACC-002 and close ACC-002.",
            [Balance("ACC-001"), Transfer("ACC-001", "ACC-002", "5"), Close("ACC-002")],
        ),
        ("Tell me a one-line story about an astronaut.", []),
    ],
)
def test_requests_are_recognised(text: str, expected: list[object]) -> None:
    assert parse_requests(text) == expected


@pytest.mark.parametrize(
    ("text", "asks_for"),
    [
        ("Transfer from ACC-001 to ACC-002", "how much"),
        ("Transfer $50 to ACC-002", "which account to transfer from"),
        ("Transfer $50", "which account to transfer from and which account to transfer to"),
        ("transfer $5 or $6 from ACC-001 to ACC-002", "which amount"),
        ("transfer 0 from ACC-001 to ACC-002", "greater than zero"),
        ("transfer $5 from ACC-001 to ACC-001", "to itself"),
        ("close my account", "Which account should I close"),
        ("what's my balance?", "Which account"),
    ],
)
def test_ambiguous_requests_become_questions(text: str, asks_for: str) -> None:
    [intent] = parse_requests(text)

    assert isinstance(intent, Clarify) and asks_for in intent.question


def test_questions_win_over_calls() -> None:
    planned = respond(BANK, [], [Message("user", "balance of ACC-001 and transfer $5 to ACC-002")])

    assert len(planned) == 1 and isinstance(planned[0], Reply) and "transfer from" in planned[0].text


def test_strict_schemas_get_every_property_and_numbers_stay_exact() -> None:
    strict = FunctionToolSpec("transfer_funds", None, SCHEMAS["transfer_funds"], True)
    numeric = _profile("transfer_funds", amount_type="number")

    [call] = respond(
        AgentProfile(None, {"transfer_funds": strict}), [], [Message("user", "send $12.50 from ACC-1 to ACC-2")]
    )
    [whole] = respond(numeric, [], [Message("user", "send $1,000 from ACC-1 to ACC-2")])

    assert call == ToolCall(
        "transfer_funds", {"from_account": "ACC-1", "to_account": "ACC-2", "amount": "12.50", "memo": None}
    )
    assert isinstance(whole, ToolCall) and whole.arguments["amount"] == 1000


def test_only_defined_tools_are_called() -> None:
    planned = respond(
        _profile("get_account_balance"),
        [],
        [Message("user", "balance of ACC-001 and close ACC-002")],
    )

    assert planned == [
        Reply("This agent version has no close_account tool, so I can't close accounts here."),
        ToolCall("get_account_balance", {"account_id": "ACC-001"}),
    ]


def test_reply_prefix_directive_marks_every_text_reply() -> None:
    profile = _profile(instructions="Be brief.\nReply prefix: [v2]")

    [reply] = respond(profile, [], [Message("user", "hello")])

    assert isinstance(reply, Reply) and reply.text.startswith("[v2] I am the emulator's rule-based stand-in")
    assert "no banking tools" in reply.text


def test_tool_outputs_are_reported_per_call() -> None:
    history: list[Item] = [
        Message("user", "..."),
        FunctionCall("call_a", "get_account_balance", '{"account_id": "ACC-001"}'),
        FunctionCall("call_b", "transfer_funds", '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5"}'),
    ]
    outputs = [
        FunctionCallOutput("call_a", '{"account_id": "ACC-001", "balance": "10.00", "currency": "EUR"}'),
        FunctionCallOutput("call_b", '{"status": "denied", "message": "Over the daily limit."}'),
    ]

    [reply] = respond(BANK, history, outputs)

    assert reply == Reply(
        "ACC-001 has a balance of 10.00 EUR.\n"
        "The transfer of 5 from ACC-001 to ACC-002 was denied by policy; nothing was done. Over the daily limit."
    )


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"status": "executed"}', "Done: the transfer of 5 from A to B is complete."),
        (
            '{"status": "cancelled", "message": "Operator cancelled."}',
            "was cancelled; nothing was done. Operator cancelled.",
        ),
        ('{"error": "boom"}', "The transfer of 5 from A to B failed: boom"),
        ('{"error": {"code": "insufficient_funds"}}', "failed: no reason given (insufficient_funds)"),
        (
            '{"status": "pending_approval", "message": "Waiting."}',
            "The transfer of 5 from A to B is pending_approval. Waiting.",
        ),
        ('{"reference": "T-1", "fee": "0.00"}', "The transfer of 5 from A to B returned reference: T-1, fee: 0.00."),
        ('{"message": "Queued."}', "The transfer of 5 from A to B returned: Queued."),
        ("plain text", "The transfer of 5 from A to B returned: plain text"),
    ],
)
def test_outcomes_are_grounded_in_whatever_the_output_holds(output: str, expected: str) -> None:
    call = FunctionCall("call_x", "transfer_funds", '{"from_account": "A", "to_account": "B", "amount": "5"}')

    assert expected in describe_outcome(call, output)


def test_stories_and_continuations() -> None:
    [story] = respond(BANK, [], [Message("user", "Tell me a one-line story about an astronaut.")])
    assert isinstance(story, Reply)
    [more] = respond(
        BANK,
        [Message("user", "Tell me a one-line story about an astronaut."), Message("assistant", story.text)],
        [Message("user", "Continue the story in one more line.")],
    )
    [lighthouse] = respond(BANK, [], [Message("user", "Tell me a three-sentence story about a lighthouse.")])

    assert isinstance(more, Reply) and "astronaut" in more.text and more.text != story.text
    assert isinstance(lighthouse, Reply) and lighthouse.text.count(". ") == 2
