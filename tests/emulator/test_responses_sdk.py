"""The Responses API through ``project.get_openai_client()`` with strict response validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.aio import AIProjectClient as AsyncAIProjectClient
from azure.ai.projects.models import PromptAgentDefinition
from openai import OpenAI
from openai.types.responses import (
    Response,
    ResponseFunctionToolCall,
    ResponseInputItemParam,
    ResponseOutputMessage,
)

from agent_host.emulator import Emulator
from agent_host.foundry.dev_token import AsyncDevTokenCredential, AsyncLoopbackBearerTokenPolicy

from .helpers import BALANCE_TOOL, MODEL, agent

ASTRONAUT = "Tell me a one-line story about an astronaut."


def _calls(response: Response) -> list[ResponseFunctionToolCall]:
    return [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]


def _answer(response: Response, outputs: dict[str, Any]) -> list[ResponseInputItemParam]:
    """``function_call_output`` items answering each call with ``outputs[tool name]``."""
    return [
        {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(outputs[call.name])}
        for call in _calls(response)
    ]


def test_plain_text_response(openai_client: OpenAI, teller: str) -> None:
    response = openai_client.responses.create(input=ASTRONAUT, extra_body=agent(teller))

    assert response.id.startswith("resp_") and response.object == "response"
    assert response.model == MODEL and response.status == "completed"
    assert response.instructions == "You are a careful bank teller."
    assert [tool.name for tool in response.tools if tool.type == "function"] == [
        "get_account_balance",
        "transfer_funds",
        "close_account",
    ]
    [message] = response.output
    assert isinstance(message, ResponseOutputMessage) and message.role == "assistant"
    assert "astronaut" in response.output_text and "\n" not in response.output_text
    usage = response.usage
    assert usage is not None
    instructions = "You are a careful bank teller."
    assert usage.input_tokens == len(instructions.split()) + len(ASTRONAUT.split())
    assert usage.output_tokens == len(response.output_text.split())
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0


def test_stored_response_can_be_retrieved(openai_client: OpenAI, teller: str) -> None:
    created = openai_client.responses.create(input=ASTRONAUT, extra_body=agent(teller))

    assert openai_client.responses.retrieve(created.id) == created


def test_the_same_prompt_gives_the_same_text(openai_client: OpenAI, teller: str) -> None:
    first, second = (openai_client.responses.create(input=ASTRONAUT, extra_body=agent(teller)) for _ in range(2))

    assert first.output_text == second.output_text and first.id != second.id


def test_continuation_uses_the_stored_conversation(openai_client: OpenAI, teller: str) -> None:
    first = openai_client.responses.create(input=ASTRONAUT, extra_body=agent(teller))
    second = openai_client.responses.create(
        input="Continue the story in one more line.", previous_response_id=first.id, extra_body=agent(teller)
    )
    fresh = openai_client.responses.create(input="Continue the story in one more line.", extra_body=agent(teller))

    assert second.previous_response_id == first.id
    assert "astronaut" in second.output_text and second.output_text != first.output_text
    assert second.usage is not None and second.usage.input_tokens_details.cached_tokens > 0
    assert "no story to continue" in fresh.output_text


def test_three_sentence_lighthouse_story(openai_client: OpenAI, teller: str) -> None:
    response = openai_client.responses.create(
        input=[{"role": "user", "content": "Tell me a three-sentence story about a lighthouse."}],
        extra_body=agent(teller),
    )

    assert "lighthouse" in response.output_text
    assert response.output_text.count(". ") == 2 and response.output_text.endswith(".")


def test_function_call_round_trip(openai_client: OpenAI, teller: str) -> None:
    first = openai_client.responses.create(input="What is the balance of ACC-001?", extra_body=agent(teller))
    [call] = _calls(first)
    assert (call.name, json.loads(call.arguments), call.status) == (
        "get_account_balance",
        {"account_id": "ACC-001"},
        "completed",
    )
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")

    balance = {"account_id": "ACC-001", "balance": "5000.00", "currency": "USD", "formatted": "$5,000.00"}
    second = openai_client.responses.create(
        input=_answer(first, {"get_account_balance": balance}),
        previous_response_id=first.id,
        extra_body=agent(teller),
    )

    assert second.output_text == "ACC-001 has a balance of $5,000.00."


def test_parallel_function_calls_in_one_response(openai_client: OpenAI, teller: str) -> None:
    response = openai_client.responses.create(
        input=[{"role": "user", "content": [{"type": "input_text", "text": "balance of ACC-001 and ACC-002"}]}],
        extra_body=agent(teller),
    )

    assert [json.loads(call.arguments) for call in _calls(response)] == [
        {"account_id": "ACC-001"},
        {"account_id": "ACC-002"},
    ]
    assert response.parallel_tool_calls is True


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            {"status": "executed", "message": "Transferred $1,250.50 from ACC-001 to ACC-002."},
            "Done: the transfer of 1250.50 from ACC-001 to ACC-002 is complete. Transferred $1,250.50",
        ),
        (
            {"status": "rejected", "message": "Action 'transfer_funds' was rejected by the operator."},
            "was rejected by the operator",
        ),
        (
            {"error": {"code": "insufficient_funds", "message": "ACC-001 has only $20.00 available."}},
            "failed: ACC-001 has only $20.00 available. (insufficient_funds)",
        ),
        ({"status": "expired", "message": "No operator answered in time."}, "expired before it was approved"),
    ],
)
def test_transfer_outcomes_are_reported_from_the_tool_output(
    openai_client: OpenAI, teller: str, output: dict[str, Any], expected: str
) -> None:
    first = openai_client.responses.create(
        input="Transfer $1,250.50 from ACC-001 to ACC-002.", extra_body=agent(teller)
    )
    [call] = _calls(first)
    assert json.loads(call.arguments) == {
        "from_account": "ACC-001",
        "to_account": "ACC-002",
        "amount": "1250.50",
        "memo": None,
    }

    second = openai_client.responses.create(
        input=_answer(first, {"transfer_funds": output}), previous_response_id=first.id, extra_body=agent(teller)
    )

    assert expected in second.output_text


def test_ambiguous_transfer_asks_instead_of_calling(openai_client: OpenAI, teller: str) -> None:
    response = openai_client.responses.create(input="Transfer money to ACC-002.", extra_body=agent(teller))

    assert not _calls(response)
    assert "how much" in response.output_text and "from" in response.output_text


def test_pinned_version_keeps_its_tools_and_instructions(
    project: AIProjectClient, openai_client: OpenAI, teller: str
) -> None:
    project.agents.create_version(
        agent_name=teller,
        definition=PromptAgentDefinition(model=MODEL, instructions="Reply prefix: [teller v2]", tools=[BALANCE_TOOL]),
    )
    transfer = "Transfer $5 from ACC-001 to ACC-002."

    latest = openai_client.responses.create(input=transfer, extra_body=agent(teller))
    pinned = openai_client.responses.create(input=transfer, extra_body=agent(teller, "1"))
    latest_story = openai_client.responses.create(input=ASTRONAUT, extra_body=agent(teller))

    assert not _calls(latest)
    assert latest.output_text.startswith("[teller v2] ") and "no transfer_funds tool" in latest.output_text
    assert [call.name for call in _calls(pinned)] == ["transfer_funds"]
    assert latest_story.output_text.startswith("[teller v2] ")
    assert (pinned.model_extra or {})["agent_reference"] == {"type": "agent_reference", "name": teller, "version": "1"}


def test_streamed_text(openai_client: OpenAI, teller: str) -> None:
    events = list(openai_client.responses.create(input=ASTRONAUT, stream=True, extra_body=agent(teller)))

    types = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert len(deltas) > 2
    completed = events[-1]
    assert completed.type == "response.completed"
    assert "".join(deltas) == completed.response.output_text
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert openai_client.responses.retrieve(completed.response.id) == completed.response


def test_streamed_function_calls(openai_client: OpenAI, teller: str) -> None:
    events = list(
        openai_client.responses.create(
            input="What is the balance of ACC-001 and ACC-002?", stream=True, extra_body=agent(teller)
        )
    )

    per_item: dict[str, list[str]] = {}
    for event in events:
        if event.type == "response.function_call_arguments.delta":
            per_item.setdefault(event.item_id, []).append(event.delta)
    done = {e.item_id: e.arguments for e in events if e.type == "response.function_call_arguments.done"}
    assert len(per_item) == 2 and all(len(deltas) > 1 for deltas in per_item.values())
    assert {item: "".join(deltas) for item, deltas in per_item.items()} == done
    added = [e for e in events if e.type == "response.output_item.added"]
    assert all(e.item.type == "function_call" and e.item.arguments == "" for e in added)
    assert [e.output_index for e in added] == [0, 1]
    completed = events[-1]
    assert completed.type == "response.completed" and len(_calls(completed.response)) == 2


@pytest.mark.anyio
async def test_async_openai_client_streams_and_chains(emulator: Emulator) -> None:
    credential = AsyncDevTokenCredential(emulator.token)
    policy = AsyncLoopbackBearerTokenPolicy(credential)
    async with AsyncAIProjectClient(emulator.endpoint, credential, authentication_policy=policy) as project:
        await project.agents.create_version(
            agent_name="teller", definition=PromptAgentDefinition(model=MODEL, tools=[BALANCE_TOOL])
        )
        async with project.get_openai_client(_strict_response_validation=True) as client:
            stream = await client.responses.create(input=ASTRONAUT, stream=True, extra_body=agent("teller"))
            events = [event async for event in stream]
            assert events[-1].type == "response.completed"
            follow_up = await client.responses.create(
                input="Continue the story in one more line.",
                previous_response_id=events[-1].response.id,
                extra_body=agent("teller"),
            )

    assert "astronaut" in follow_up.output_text
