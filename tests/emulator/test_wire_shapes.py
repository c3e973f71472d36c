"""Every wire shape the emulator can send parses under the openai SDK's strict validation, as sent."""

from __future__ import annotations

from typing import get_args

import pytest
from openai import OpenAI
from openai.types.responses import ResponseFunctionToolCall

from agent_host.emulator import Emulator, FaultConfig
from agent_host.emulator.faults import WireShape

from .helpers import agent

TWO_CALLS = "What is the balance of ACC-001 and ACC-002?"


def _streamed(openai_client: OpenAI, teller: str) -> list[tuple[str, dict[str, object]]]:
    events = openai_client.responses.create(input=TWO_CALLS, stream=True, extra_body=agent(teller))
    return [(event.type, event.model_dump(mode="json")) for event in events]


@pytest.mark.parametrize("shape", get_args(WireShape))
def test_each_shape_is_a_valid_stream(openai_client: OpenAI, teller: str, emulator: Emulator, shape: WireShape) -> None:
    emulator.faults.arm(FaultConfig(shape=shape))
    events = _streamed(openai_client, teller)
    kinds = [kind for kind, _ in events]
    final = events[-1][1]["response"]
    assert isinstance(final, dict)
    final_calls = [item for item in final["output"] if item["type"] == "function_call"]
    item_done = [data["item"] for kind, data in events if kind == "response.output_item.done"]
    deltas = [data for kind, data in events if kind == "response.function_call_arguments.delta"]

    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    if shape == "calls_in_item_done_only":
        assert not final_calls and len(item_done) == 2 and "response.output_item.added" not in kinds
    elif shape == "calls_in_completed_only":
        assert len(final_calls) == 2 and not item_done and not deltas
    elif shape == "arguments_in_done_only":
        assert not deltas and kinds.count("response.function_call_arguments.done") == 2
    elif shape == "calls_without_id":
        assert all("id" not in item or item["id"] is None for item in [*final_calls, *item_done])
        assert {data["item_id"] for data in deltas} == {""}
    elif shape == "interleaved_calls":
        indexes = [data["output_index"] for data in deltas]
        assert indexes[:2] == [0, 1], "the two calls' deltas take turns"
    else:
        assert len(final_calls) == len(item_done) == 2 and deltas


def test_calls_without_id_in_a_plain_response(openai_client: OpenAI, teller: str, emulator: Emulator) -> None:
    emulator.faults.arm(FaultConfig(shape="calls_without_id"))
    response = openai_client.responses.create(input=TWO_CALLS, extra_body=agent(teller))
    calls = [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]
    assert len(calls) == 2 and all(call.id is None and call.call_id.startswith("call_") for call in calls)
