"""The terminal host and bankgate's approval desk, end to end: a transfer the policy sends to the desk
shows the link (only), waits, and completes with the decision an approver signs at the desk."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from agent_host.approvers import DenyApprover
from agent_host.conversation import Conversation
from agent_host.emulator import Emulator
from agent_host.host import Host
from agent_host.settings import McpProtocol, Transport

from .conftest import Cli
from .desk_lab import DeskLab
from .helpers import CapturedDisplay, HostileModel, balance, call_item, host_for, scripted, settings_for
from .test_cli import lab_env, read_balance

pytestmark = pytest.mark.anyio


async def _link_shown(host: Host, count: int) -> str:
    """The reference of the `count`-th desk link the host has shown (waits for it)."""
    display = host.display
    assert isinstance(display, CapturedDisplay)
    with anyio.fail_after(60):
        while len(found := re.findall(r"^(http://localhost:\d+/desk/approvals/(\S+))$", display.text, re.M)) < count:
            await anyio.sleep(0.1)
    return str(found[count - 1][1])


@pytest.mark.parametrize(
    ("transport", "protocol"), [("sdk", "auto"), ("rest", "legacy")], ids=["2026-07-28", "2025-11-25"]
)
async def test_a_desk_decision_completes_the_call(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, protocol: McpProtocol
) -> None:
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name))
    approver = scripted("reject note='the script is never asked'")
    async with (
        host_for(emulator, tmp_path, approver, agent_name, target, transport=transport, mcp_protocol=protocol) as host,
        lab.approver() as (desk, passkey),
    ):
        conversation = host.conversation()
        turns = []
        async with anyio.create_task_group() as tasks:

            async def send(text: str) -> None:
                turns.append(await conversation.send(text))

            tasks.start_soon(send, "Transfer $100 from ACC-001 to ACC-002.")
            ref = await _link_shown(host, 1)
            await anyio.sleep(1.5)  # a few rounds while the desk has not decided
            assert await balance(host, "ACC-001") == Decimal("5000.00"), "nothing runs before the desk decides"
            reply = await desk.decide(ref, "approved", passkey, note="rent")
            assert reply.status_code == 200, reply.text
        (approved,) = turns
        assert approved.results[0][1].output["status"] == "executed"
        assert approved.results[0][1].output["approval_ref"] == ref

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send, "Transfer $200 from ACC-002 to ACC-003.")
            ref = await _link_shown(host, 2)
            reply = await desk.decide(ref, "rejected", passkey, note="not expected")
            assert reply.status_code == 200, reply.text
        assert turns[1].results[0][1].output["status"] == "rejected"

        assert [await balance(host, a) for a in ("ACC-001", "ACC-002", "ACC-003")] == [
            Decimal("4900.00"),
            Decimal("350.00"),
            Decimal("120.00"),
        ]
        assert [answer.label for _, answer in host.desk.records] == ["sent to the desk", "sent to the desk"]
        assert approver._answers, "the script was not used for desk approvals"
        shown = host.display.text  # type: ignore[attr-defined]
        assert "Approval at the desk — this host only shows the link" in shown
        assert "Waiting for the desk to decide (until " in shown


def test_ask_without_a_terminal_shows_the_desk_link_and_leaves_it_pending(
    emulator: Emulator, tmp_path: Path, cli: Cli
) -> None:
    lab = DeskLab.create(tmp_path)
    env = lab_env(emulator, tmp_path, "cli-desk-link", **lab.env)
    result = cli("ask", "Transfer $100 from ACC-001 to ACC-002.", env=env)

    assert result.returncode == 0, result.stderr
    found = re.search(rf"^{re.escape(lab.origin)}/desk/approvals/(APR-\S+)$", result.stdout, re.M)
    assert found is not None, result.stdout
    assert "Approval at the desk — this host only shows the link" in result.stdout
    assert "the host does not wait for the desk" in result.stdout
    assert "Waiting for the desk" not in result.stdout, "it said it waited, then that it does not"
    assert "← pending_approval" in result.stdout
    assert read_balance(tmp_path, "ACC-001") == Decimal("5000.00")


async def test_the_model_continues_a_pending_approval_under_the_key_it_was_asked_with(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """A host that waits for nobody hands `pending_approval` to the model, which repeats the call with the
    `approval_ref` once the desk decided, as the result tells it to: in a new function call, with its own
    `call_id`. The host sends it under the key the approval was asked with, else the server refuses it as
    another call's and the signed approval can never run; a settled ref is not continued again."""
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name))
    transfer = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "100", "memo": None}
    model = HostileModel([call_item("call_1", "transfer_funds", json.dumps(transfer))])
    async with (
        host_for(emulator, tmp_path, DenyApprover(), agent_name, target) as host,
        lab.approver() as (desk, passkey),
    ):
        conversation = Conversation(model, host.toolbox, host.agent.reference(), host.display)
        pending = (await conversation.send("Transfer $100 from ACC-001 to ACC-002.")).results[0][1].output
        assert pending["status"] == "pending_approval"
        ref = pending["approval_ref"]
        assert (await desk.decide(ref, "approved", passkey)).status_code == 200
        again = json.dumps({**transfer, "approval_ref": ref})
        model = HostileModel(
            [call_item("call_2", "transfer_funds", again)], [call_item("call_3", "transfer_funds", again)]
        )
        conversation.transport = model
        turn = await conversation.send("Approved at the desk; continue.")
        assert await balance(host, "ACC-001") == Decimal("4900.00")

    (_, continued), (_, repeated) = turn.results
    assert continued.output["status"] == "executed" and continued.output["approval_ref"] == ref
    assert repeated.output["error"]["code"] == "approval_mismatch", "a settled approval is not reported run again"


async def test_a_pending_approval_is_continued_under_its_key_only_by_the_conversation_that_asked(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """Conversations share one host (the web chat's threads: one toolbox, one MCP principal). Conversation A's
    transfer waits at the desk, and is approved there; conversation B's model repeats it with A's `approval_ref`
    (told the reference, the words the same). B's call goes under B's own `call_id`, so the server refuses it
    as another call's and nothing runs: only the conversation that asked continues its approval."""
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name))
    transfer = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "100", "memo": None}
    async with (
        host_for(emulator, tmp_path, DenyApprover(), agent_name, target) as host,
        lab.approver() as (desk, passkey),
    ):
        asked = HostileModel([call_item("call_a1", "transfer_funds", json.dumps(transfer))])
        a = Conversation(asked, host.toolbox, host.agent.reference(), host.display)
        pending = (await a.send("Transfer $100 from ACC-001 to ACC-002.")).results[0][1].output
        ref = pending["approval_ref"]
        assert (await desk.decide(ref, "approved", passkey)).status_code == 200
        again = json.dumps({**transfer, "approval_ref": ref})

        other = HostileModel([call_item("call_b1", "transfer_funds", again)])
        b = Conversation(other, host.toolbox, host.agent.reference(), host.display)
        borrowed = (await b.send(f"Continue {ref}.")).results[0][1].output
        assert borrowed.get("error", {}).get("code") == "approval_mismatch", borrowed
        assert await balance(host, "ACC-001") == Decimal("5000.00")

        a.transport = HostileModel([call_item("call_a2", "transfer_funds", again)])
        continued = (await a.send("Approved at the desk; continue.")).results[0][1].output
        assert await balance(host, "ACC-001") == Decimal("4900.00")
    assert continued["status"] == "executed" and continued["approval_ref"] == ref
