"""Runs that expire while a human decides: the user learns what ran, and the conversation goes on.

Each test runs its own emulator with a run lifetime of about a second; the approver takes longer
than that over two approval-gated calls, as a person reading two questions would over ten minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from agent_host.approvers import Answer, Question, ScriptedApprover, parse_script
from agent_host.emulator import Emulator, EmulatorConfig, FaultConfig
from agent_host.errors import RateLimited

from .helpers import balance, host_for

LIFETIME_S = 1.0
TWO_TRANSFERS = "Transfer $10 from ACC-001 to ACC-002 and transfer $20 from ACC-001 to ACC-003."
WIRE = [("sdk", False), ("sdk", True), ("rest", False), ("rest", True)]


@pytest.fixture
def short_lived() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(run_lifetime=LIFETIME_S)) as emulator:
        yield emulator


class SlowApprover:
    """Answers from a script, each after ``delay`` seconds of reading."""

    name = "slow"

    def __init__(self, script: str, delay: float) -> None:
        self.script = ScriptedApprover(parse_script(script))
        self.delay = delay

    async def answer(self, question: Question) -> Answer:
        await anyio.sleep(self.delay)
        return await self.script.answer(question)


def stored(emulator: Emulator, response_id: str) -> dict[str, Any]:
    """A response as the emulator stored it."""
    url = f"{emulator.endpoint}/openai/v1/responses/{response_id}"
    body: dict[str, Any] = httpx2.get(url, headers={"Authorization": f"Bearer {emulator.token}"}).json()
    return body


@pytest.mark.anyio
@pytest.mark.parametrize(("transport", "stream"), WIRE)
async def test_a_run_that_expires_during_approvals(
    short_lived: Emulator, tmp_path: Path, agent_name: str, transport: str, stream: bool
) -> None:
    approver = SlowApprover("approve\nreject", delay=LIFETIME_S * 0.7)
    async with host_for(short_lived, tmp_path, approver, agent_name, transport=transport, stream=stream) as host:
        conversation = host.conversation()
        expired = await conversation.send(TWO_TRANSFERS)
        later = await conversation.send("What is the balance of ACC-001?")
        last = await conversation.send("What is the balance of ACC-003?")

        # Both calls were decided by the human; one ran, one did not, and the user is told which.
        assert expired.ended_lost and expired.lost is not None
        assert [answer.fate for answer in expired.lost.answers] == ["ran", "not run"]
        assert "Ran: transfer_funds" in expired.text and "Did not run: transfer_funds" in expired.text
        assert "response_expired" in expired.text
        assert len(host.desk.records) == 2
        # Later turns work without /new, on a new chain that opens with the facts, and nothing re-ran.
        assert later.lost is None and later.text == "ACC-001 has a balance of $4,990.00."
        assert last.text == "ACC-003 has a balance of $120.00."
        first_of_new_chain = stored(short_lived, later.replies[0].response_id)
        assert first_of_new_chain["previous_response_id"] is None
        assert await balance(host, "ACC-001") == Decimal("4990.00")
        assert len(host.desk.records) == 2, "no question was asked again"
    shown = host.display.text  # type: ignore[attr-defined]
    assert "can no longer continue" in shown and "new response chain" in shown


class ThrottleAfterSlowApproval:
    """Approves slowly, then makes the emulator throttle, so the answers cannot be sent in time."""

    name = "throttle-after-slow-approval"

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def answer(self, question: Question) -> Answer:
        await anyio.sleep(LIFETIME_S * 1.2)
        self.emulator.faults.arm(FaultConfig(rate_limited=100, retry_after=0.01, target="responses"))
        return Answer("accept", True, confirmation=question.confirmation_value)


@pytest.mark.anyio
@pytest.mark.parametrize(("transport", "stream"), WIRE)
async def test_answers_kept_for_an_expired_run_never_cost_the_next_message(
    short_lived: Emulator, tmp_path: Path, agent_name: str, transport: str, stream: bool
) -> None:
    approver = ThrottleAfterSlowApproval(short_lived)
    async with host_for(
        short_lived, tmp_path, approver, agent_name, transport=transport, stream=stream, max_retries=0
    ) as host:
        conversation = host.conversation()
        with pytest.raises(RateLimited):
            await conversation.send("Transfer $15 from ACC-001 to ACC-002.")
        short_lived.faults.arm(FaultConfig())
        recovered = await conversation.send("What is the balance of ACC-001?")

        assert recovered.lost is not None and not recovered.ended_lost
        assert [answer.fate for answer in recovered.lost.answers] == ["ran"]
        assert recovered.text == "ACC-001 has a balance of $4,985.00."
        opening = stored(short_lived, recovered.replies[0].response_id)
        assert opening["previous_response_id"] is None
        assert await balance(host, "ACC-001") == Decimal("4985.00")
        assert len(host.desk.records) == 1


def test_the_context_item_states_the_outcomes() -> None:
    from agent_host.expiry import Answer as CallAnswer
    from agent_host.expiry import LostChain
    from agent_host.foundry.function_tools import FunctionCall

    lost = LostChain(
        [
            CallAnswer(FunctionCall("call_1", "transfer_funds", "{}"), {"status": "executed", "message": "Moved."}),
            CallAnswer(
                FunctionCall("call_2", "close_account", "{}"),
                {"status": "failed", "error": {"code": "tool_unavailable", "message": "timed out"}},
            ),
        ],
        "expired",
        asked="Move it, then close it.",
    )
    item = lost.context_item()
    assert item["role"] == "developer" and 'The user had asked: "Move it, then close it."' in item["content"]
    assert "transfer_funds {}: ran (executed: Moved.)" in item["content"]
    assert "close_account {}: unknown (failed: timed out)" in item["content"]
    assert "Outcome unknown (not retried" in lost.report()
    assert json.loads(CallAnswer(FunctionCall("c", "n", "{}"), {"status": "x"}).item()["output"]) == {"status": "x"}
