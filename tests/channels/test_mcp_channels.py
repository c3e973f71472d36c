"""The desk reached from MCP clients (in memory, both protocol revisions, real ledger and desk):
URL-mode elicitation, `pending_approval` + `approval_ref` for a client without elicitation, and a
form client held to the desk by its rule."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import ClientRequestContext
from mcp_types import ElicitCompleteNotification, ElicitRequestParams, ElicitResult

from policy.question import deadline_text
from tests.channels.support import ChannelWorld, body, desk_policy, opens_the_link
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.support import keyed

pytestmark = pytest.mark.anyio
MODES = ["auto", "legacy"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("verdict", ["approved", "rejected"])
async def test_a_url_mode_client_is_sent_to_the_desk_and_the_call_settles(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str, verdict: str, tmp_path: Path
) -> None:
    """channel = "desk": a client that could show a form gets the desk link instead (URL mode)."""
    world.configure(policy=desk_policy(tmp_path))
    seen: list[str] = []
    received: list[object] = []
    async with world.client(opens_the_link(dora, passkey, verdict, seen), mode=mode, received=received) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer("250.00")))

    completed = [m.params.elicitation_id for m in received if isinstance(m, ElicitCompleteNotification)]
    assert completed == ([result["approval_ref"]] if mode == "legacy" else []), received
    assert seen == ["url"], (result, "never a form: the rule requires the desk")
    ref = result["approval_ref"]
    if verdict == "approved":
        assert result["status"] == "executed", result
        assert world.balance(world.target) == 25_000
        assert world.events(ref) == ["requested", "desk_approved", "approved", "executed"]
        approved_rows = "SELECT reason, note FROM audit_log WHERE event = 'approved' AND approval_ref = :r"
        [approved] = world.rows(approved_rows, r=ref)
        assert "approver:dora" in approved.reason and approved.note == "approved at the desk"
    else:
        assert result["status"] == "rejected" and "approver:dora" in result["message"]
        assert world.balance(world.target) == 0
        assert world.events(ref) == ["requested", "desk_rejected", "rejected"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_gets_a_link_and_continues_with_approval_ref(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    async with world.client(mode=mode) as client:
        first = body(await client.call_tool("transfer_funds", world.transfer("250.00")))
        assert first["status"] == "pending_approval", first
        ref = first["approval_ref"]
        assert first["approval_url"] == f"http://localhost:8766/desk/approvals/{ref}"
        assert first["expires_at"].endswith("Z") and first["approval_url"] in first["message"]
        assert "continue" in first["message"]

        early = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))
        assert early["status"] == "pending_approval" and early["approval_ref"] == ref
        assert world.balance(world.target) == 0

        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        done = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))
        again = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))

    assert done["status"] == "executed" and done["approval_ref"] == ref
    assert again == done, "a later retry reads the stored outcome"
    assert world.balance(world.target) == 25_000, "executed once"
    assert world.events(ref) == ["requested", "desk_approved", "approved", "executed"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_desk_yes_not_continued_within_its_window_expires_and_nothing_runs(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    """A signed yes stayed executable for ever: continued days later it ran. The link states the window (the
    approval timeout, counted from the decision); continued past it, the call ends `expired`, saying who approved
    when and by when it had to be continued, and nothing runs."""
    async with world.client(mode=mode) as client:
        first = body(await client.call_tool("transfer_funds", world.transfer("250.00")))
        ref = first["approval_ref"]
        assert "continue within 5 min 00 s of the approval" in first["message"], first
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        [decision] = world.rows("SELECT decided_at FROM desk_decisions WHERE approval_ref = :r", r=ref)
        decided = float(decision.decided_at)
        world.state.gate.clock = lambda: decided + 300 + 1
        late = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))
        again = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))

    assert late["status"] == "expired" and late["approval_ref"] == ref, late
    assert f"Approved at the desk by approver:dora at {deadline_text(decided)}" in late["message"], late
    assert f"not continued by {deadline_text(decided + 300)}; nothing ran" in late["message"], late
    assert again == late
    assert world.balance(world.target) == 0 and world.status(ref) == "expired"
    assert world.events(ref) == ["requested", "desk_approved", "expired"]


async def test_the_link_states_the_deadline_with_its_date(world: ChannelWorld) -> None:
    """A deadline days away read 'decide before 06:39:16 UTC': a person reads that as today's, already past
    or hours off. The message states the date, the same instant as `expires_at`."""
    world.configure(approval_timeout=3 * 24 * 3600)
    async with world.client() as client:
        first = body(await client.call_tool("transfer_funds", world.transfer("250.00")))
    deadline = first["expires_at"].removesuffix("Z").replace("T", " ")
    assert f"decide before {deadline} UTC," in first["message"], first


@pytest.mark.parametrize("mode", MODES)
async def test_a_rejection_at_the_desk_is_final(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    async with world.client(mode=mode) as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer()))["approval_ref"]
        assert (await dora.decide(ref, "rejected", passkey, note="not today")).status_code == 200
        rejected = body(await client.call_tool("transfer_funds", world.transfer(approval_ref=ref)))
        again = body(await client.call_tool("transfer_funds", world.transfer(approval_ref=ref)))
    assert rejected["status"] == "rejected" and again == rejected
    assert world.balance(world.target) == 0 and world.status(ref) == "rejected"


@pytest.mark.parametrize("mode", MODES)
async def test_no_decision_by_the_deadline_expires(world: ChannelWorld, mode: str) -> None:
    world.configure(approval_timeout=1)
    async with world.client(mode=mode) as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer()))["approval_ref"]
        await anyio.sleep(1.2)
        expired = body(await client.call_tool("transfer_funds", world.transfer(approval_ref=ref)))
    assert expired["status"] == "expired" and world.status(ref) == "expired"
    assert world.balance(world.target) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_ref_with_other_arguments_or_by_another_caller_is_refused(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    async with world.client(mode=mode) as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer("250.00")))["approval_ref"]
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        other_args = await client.call_tool("transfer_funds", world.transfer("2500.00", approval_ref=ref))
    async with world.client(mode=mode, principal="mallory") as client:
        other_caller = await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref))
    for refused in (other_args, other_caller):
        assert refused.is_error and body(refused)["error"]["code"] == "approval_mismatch", refused
    assert "other arguments" in body(other_args)["message"]
    assert ref not in body(other_caller)["message"].replace(f"approval {ref} for you", ""), "nothing revealed"
    assert world.status(ref) == "pending" and world.balance(world.target) == 0
    assert world.events(ref) == ["requested", "desk_approved"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("setup", ["no-desk", "form-rule"])
async def test_no_human_reachable_denies(world: ChannelWorld, mode: str, setup: str, tmp_path: Path) -> None:
    """Without a desk, or under a `form` rule, a client without elicitation cannot be asked: denied."""
    if setup == "no-desk":
        world.configure(desk=False)
    else:
        world.configure(policy=desk_policy(tmp_path, "form"))
    async with world.client(mode=mode) as client:
        denied = body(await client.call_tool("transfer_funds", world.transfer()))
    assert denied["status"] == "denied" and "No human can be asked" in denied["message"]
    assert "approval_ref" not in denied and world.balance(world.target) == 0


async def test_a_malformed_approval_ref_is_refused(world: ChannelWorld) -> None:
    async with world.client() as client:
        refused = await client.call_tool("transfer_funds", world.transfer(approval_ref="DROP TABLE"))
    assert refused.is_error and body(refused)["error"]["code"] == "invalid_approval_ref"


@pytest.mark.parametrize("mode", MODES)
async def test_a_form_client_keeps_its_form_under_channel_any(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    seen: list[str] = []
    async with world.client(opens_the_link(dora, passkey, "approved", seen), mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))
    assert seen == ["form"] and result["status"] == "executed"


async def test_the_tool_schema_documents_approval_ref(world: ChannelWorld) -> None:
    async with world.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in ("transfer_funds", "close_account"):
        described = tools[name].input_schema["properties"]["approval_ref"]
        kinds = [described.get("type"), *(option.get("type") for option in described.get("anyOf", []))]
        assert "string" in kinds and "pending_approval" in described["description"]
        assert "approval_ref" not in tools[name].input_schema.get("required", [])
        status = tools[name].output_schema["properties"]["status"]  # type: ignore[index]
        assert "pending_approval" in status["enum"]


async def test_2026_url_input_request_is_asked_again_until_decided(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, tmp_path: Path
) -> None:
    """2026-07-28: the client comes back before anyone decided; it gets the same link again, and the
    call settles on the round after the decision."""
    world.configure(policy=desk_policy(tmp_path))
    urls: list[str] = []

    async def slow_approver(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert params.mode == "url"
        urls.append(params.url)
        if len(urls) == 2:
            reply = await dora.decide(params.url.rsplit("/", 1)[-1], "approved", passkey)
            assert reply.status_code == 200, reply.text
        return ElicitResult(action="accept")

    async with world.client(slow_approver) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))
    assert len(urls) == 2 and urls[0] == urls[1] and result["status"] == "executed", result
    assert world.balance(world.target) == 25_000


@pytest.mark.parametrize("mode", MODES)
async def test_a_declined_link_leaves_the_approval_at_the_desk(world: ChannelWorld, mode: str, tmp_path: Path) -> None:
    """2026-07-28: declining the URL request gives the pending_approval result (the link to use later);
    2025-11-25: declining the URL elicitation cancels the approval."""
    world.configure(policy=desk_policy(tmp_path))

    async def declines(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    async with world.client(declines, mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))
    expected = "pending_approval" if mode == "auto" else "cancelled"
    assert result["status"] == expected and world.status(result["approval_ref"]) == (
        "pending" if mode == "auto" else "cancelled"
    )
    assert world.balance(world.target) == 0


def link_opener(seen: list[str]) -> Callable[[ClientRequestContext, ElicitRequestParams], Awaitable[ElicitResult]]:
    """An elicitation callback that opens the desk's link (accepts: the decision comes from the desk), noting each
    question's mode in `seen`."""

    async def shown(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params.mode or "form")
        return ElicitResult(action="accept")

    return shown


async def test_a_call_with_no_place_left_to_wait_at_the_desk_gets_the_link(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, tmp_path: Path
) -> None:
    """A 2025-11-25 call waiting at the desk holds a task (polling the desk) until the decision; calls under one
    key share one question, so each waiting one takes a place of its principal's `max_pending_approvals`. A call
    with none left is answered the link at once (`pending_approval`), and the question stays pending."""
    world.settings = world.settings.model_copy(update={"max_pending_approvals": 1})
    world.configure(policy=desk_policy(tmp_path))
    seen: list[str] = []
    shown = link_opener(seen)

    first: list[dict[str, Any]] = []
    args, key = world.transfer("250.00"), keyed("one-desk-key")
    async with world.client(shown, mode="legacy") as client, anyio.create_task_group() as group:

        async def waits() -> None:
            first.append(body(await client.session.call_tool("transfer_funds", args, meta=key)))

        group.start_soon(waits)
        with anyio.fail_after(10):
            while not seen:
                await anyio.sleep(0.02)
        with anyio.fail_after(10):  # answered at once, never waiting
            second = body(await client.session.call_tool("transfer_funds", args, meta=key))
        assert second["status"] == "pending_approval" and seen == ["url"], second
        assert world.status(second["approval_ref"]) == "pending"
        assert (await dora.decide(second["approval_ref"], "approved", passkey)).status_code == 200

    assert first[0]["status"] == "executed" and world.balance(world.target) == 25_000


async def test_a_desk_wait_the_stopping_server_ends_is_answered_its_link_and_the_approval_stays_pending(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, tmp_path: Path
) -> None:
    """An HTTP server told to stop ends its waits for a human (`mcp_server.http.drain` → `policy.mcp.waits`): a
    2025-11-25 call waiting at the desk is answered its link at once, saying the server is restarting; the approval
    stays pending, and the call continued with its approval_ref collects the desk's decision, once."""
    world.configure(policy=desk_policy(tmp_path))
    seen: list[str] = []
    shown = link_opener(seen)

    first: list[dict[str, Any]] = []
    async with world.client(shown, mode="legacy") as client:
        async with anyio.create_task_group() as group:

            async def waits() -> None:
                first.append(body(await client.call_tool("transfer_funds", world.transfer("250.00"))))

            group.start_soon(waits)
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.02)
            world.state.waits.stop()
            with anyio.fail_after(2):
                while not first:
                    await anyio.sleep(0.02)
        [stopped] = first
        ref = stopped["approval_ref"]
        assert stopped["status"] == "pending_approval", stopped
        assert stopped["message"].startswith(
            f"The server is restarting, so it stopped waiting for a human: approval {ref} stays pending and nothing "
            "was done. An approver must approve this transfer_funds at the approval desk"
        ), stopped
        assert stopped["approval_url"] in stopped["message"] and f"approval_ref {ref}" in stopped["message"]
        assert world.status(ref) == "pending" and world.balance(world.target) == 0

        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        done = body(await client.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))

    assert done["status"] == "executed" and done["approval_ref"] == ref, done
    assert world.balance(world.target) == 25_000
    assert world.events(ref) == ["requested", "desk_approved", "approved", "executed"]
