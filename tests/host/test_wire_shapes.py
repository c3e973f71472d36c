"""The host against every legal shape of function calls, on both wire paths, streamed and not.

The emulator sends each shape (see ``FaultConfig.shape``); the host must run exactly the calls the
response made, with their arguments, and answer each, or the emulator refuses the next request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import pytest

from agent_host.emulator import Emulator, FaultConfig
from agent_host.emulator.faults import WireShape
from agent_host.errors import ServiceFailed
from agent_host.foundry.response_reader import assemble_stream

from .helpers import host_for, scripted

TWO_CALLS = "Transfer $9,999 from ACC-002 to ACC-001 and check the balance of ACC-003."


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["sdk", "rest"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_every_shape_runs_each_call_once_and_answers_it(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: str, stream: bool
) -> None:
    async with host_for(emulator, tmp_path, scripted(), agent_name, transport=transport, stream=stream) as host:
        conversation = host.conversation()
        for shape in get_args(WireShape):
            emulator.faults.arm(FaultConfig(shape=shape))
            turn = await conversation.send(TWO_CALLS)

            calls = [(call.name, call.arguments) for call, _ in turn.results]
            assert calls == [
                (
                    "transfer_funds",
                    '{"from_account": "ACC-002", "to_account": "ACC-001", "amount": "9999", "memo": null}',
                ),
                ("get_account_balance", '{"account_id": "ACC-003"}'),
            ], shape
            [(_, refused), (_, read)] = turn.results
            assert refused.output["error"]["code"] == "insufficient_funds", shape
            assert read.output["status"] == "executed", shape
            # The service took both answers: its report names both outcomes.
            assert "(insufficient_funds)" in turn.text and "ACC-003 has a balance of $120.00." in turn.text, shape
            assert turn.rounds == 1 and not host.desk.records, shape


async def _events(*events: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event


def _completed(output: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": output}}


@pytest.mark.anyio
async def test_an_empty_item_does_not_erase_arguments_already_streamed() -> None:
    call = {"type": "function_call", "call_id": "call_1", "name": "get_account_balance", "arguments": ""}
    reply = await assemble_stream(
        _events(
            {"type": "response.output_item.added", "output_index": 0, "item": call},
            {"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "", "arguments": "{}"},
            {"type": "response.output_item.done", "output_index": 0, "item": call},
            _completed([call]),
        ),
        lambda _: None,
    )
    assert [(c.call_id, c.arguments) for c in reply.calls] == [("call_1", "{}")]


@pytest.mark.anyio
async def test_a_call_without_call_id_is_a_clear_error() -> None:
    done = {"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc_1", "arguments": "{}"}
    with pytest.raises(ServiceFailed, match="function call without a call_id"):
        await assemble_stream(_events(done, _completed([])), lambda _: None)
