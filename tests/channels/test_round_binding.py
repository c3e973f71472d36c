"""An approval stays bound to the one call it was asked for, whichever channel answers it.

Beyond `test_mcp_channels.py` (a ref with other arguments or by another caller): a ref continued
under another idempotency key or with look-alike arguments, a desk decision and a form answer on one
approval (channel `any`), a form question's reference presented at the desk (form rule) or on a server
without one, and two continuations of one desk-approved ref at once.
"""

import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import ClientRequestContext
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitRequestParams, ElicitResult

from tests.channels.support import ChannelWorld, body, desk_policy
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.support import ASK, answer, first_round, keyed, outcome

pytestmark = pytest.mark.anyio
MODES = ["auto", "legacy"]
_REF = re.compile(r"Reference: (APR-[0-9A-F]{10})")


@pytest.mark.parametrize("mode", MODES)
async def test_a_ref_continued_under_another_idempotency_key_is_refused(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    """The key is part of what was approved (as on the form path): the desk's yes on the call keyed `first`
    does not run the same words under key `second`, nor without a key; keyed `first` it runs, once."""
    async with world.client(mode=mode) as client:
        first = body(await client.call_tool("transfer_funds", world.transfer(), meta=keyed("first")))
        ref = first["approval_ref"]
        assert first["status"] == "pending_approval", first
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        swapped = await client.call_tool("transfer_funds", world.transfer(approval_ref=ref), meta=keyed("second"))
        keyless = await client.call_tool("transfer_funds", world.transfer(approval_ref=ref))
        for refused in (swapped, keyless):
            assert refused.is_error and body(refused)["error"]["code"] == "approval_mismatch", refused
        assert world.status(ref) == "pending" and world.balance(world.target) == 0
        done = body(await client.call_tool("transfer_funds", world.transfer(approval_ref=ref), meta=keyed("first")))
        retried = body(await client.call_tool("transfer_funds", world.transfer(), meta=keyed("first")))

    assert done["status"] == "executed" and retried == done
    assert world.balance(world.target) == 25_000
    assert world.events(ref) == ["requested", "desk_approved", "approved", "executed"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("desk", "form", "status"), [("rejected", True, "rejected"), ("approved", False, "rejected")])
async def test_a_no_from_either_channel_is_not_overruled_by_the_other(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str, desk: str, form: bool, status: str
) -> None:
    """Channel `any`: a form client is asked, and the approval is also at the desk. An approver decides it
    there while the form is open; then the form is answered. A signed rejection at the desk is not undone
    by a later form yes (nor a form no by the desk's earlier yes): nothing runs."""
    decided: list[str] = []

    async def decide_at_desk_then_answer(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert isinstance(params, ElicitRequestFormParams)
        found = _REF.search(params.message)
        assert found is not None, params.message
        reply = await dora.decide(found.group(1), desk, passkey)
        assert reply.status_code == 200, reply.text
        decided.append(found.group(1))
        return ElicitResult(action="accept", content={"approve": form})

    async with world.client(decide_at_desk_then_answer, mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))

    assert decided == [result["approval_ref"]]
    assert result["status"] == status, result
    assert world.balance(world.target) == 0 and world.status(result["approval_ref"]) == status


async def test_two_continuations_of_one_approved_ref_at_once_run_it_once(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey
) -> None:
    async with world.client() as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer()))["approval_ref"]
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        results: list[dict[str, Any]] = []

        async def go_on() -> None:
            results.append(body(await client.call_tool("transfer_funds", world.transfer(approval_ref=ref))))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(go_on)

    assert [r["status"] for r in results] == ["executed"] * 4 and all(r == results[0] for r in results)
    assert world.balance(world.target) == 25_000 and world.balance(world.source) == 475_000
    assert world.events(ref) == ["requested", "desk_approved", "approved", "executed"]


@pytest.mark.parametrize(
    ("memo", "amount", "runs"),
    [
        ("R\u0435nt", "250.00", False),  # a Cyrillic е: reads "Rent", is another memo
        ("Rent", "250", False),  # the same money spelled with other decimals: another request
        ("Rent", "0250.00", True),  # leading zeros, surrounding spaces: the very same canonical call
        ("  Rent ", " 250.00", True),
    ],
    ids=["confusable-memo", "other-decimals", "leading-zeros", "surrounding-spaces"],
)
async def test_a_ref_continued_with_look_alike_arguments_runs_only_the_canonical_same_call(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, memo: str, amount: str, runs: bool
) -> None:
    async with world.client() as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer(memo="Rent")))["approval_ref"]
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        again = await client.call_tool("transfer_funds", world.transfer(amount, memo=memo, approval_ref=ref))

    if runs:
        assert body(again)["status"] == "executed" and world.balance(world.target) == 25_000
        assert world.rows("SELECT memo FROM transactions WHERE memo IS NOT NULL")[0].memo == "Rent"
    else:
        assert again.is_error and body(again)["error"]["code"] == "approval_mismatch", again
        assert world.status(ref) == "pending" and world.balance(world.target) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_form_rule_is_not_satisfied_at_the_desk_through_approval_ref(
    world: ChannelWorld, dora: DeskBrowser, mode: str, tmp_path: Path
) -> None:
    """channel = "form": the caller's own form decides, never the desk. While the form is open, its
    question's reference presented as approval_ref is refused (`form_only`), before and after an approver
    tried to sign it at the desk, which refuses too; the form's own answer then settles it."""
    world.configure(policy=desk_policy(tmp_path, "form"))
    elsewhere: list[dict[str, Any]] = []

    async def tries_the_desk_then_declines(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert isinstance(params, ElicitRequestFormParams)
        found = _REF.search(params.message)
        assert found is not None, params.message
        ref = found.group(1)
        async with world.client(mode=mode) as other:
            elsewhere.append(body(await other.call_tool("transfer_funds", world.transfer(approval_ref=ref))))
            await dora.get(f"/approvals/{ref}")
            refused = await dora.post(f"/approvals/{ref}/challenge", {"verdict": "approved"})
            assert refused.status_code == 409 and refused.json()["error"] == "form_only", refused.text
            elsewhere.append(body(await other.call_tool("transfer_funds", world.transfer(approval_ref=ref))))
        return ElicitResult(action="decline")

    async with world.client(tries_the_desk_then_declines, mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))

    for continued in elsewhere:
        assert continued["status"] == "failed" and "'code': 'form_only'" in str(continued["error"]), continued
    assert result["status"] == "rejected", "the form's own answer settles it"
    assert world.balance(world.target) == 0 and world.status(result["approval_ref"]) == "rejected"


@pytest.mark.parametrize("mode", MODES)
async def test_a_ref_continued_on_a_server_without_a_desk_is_a_clear_refusal(world: ChannelWorld, mode: str) -> None:
    """No desk: a pending form question's reference, presented as approval_ref while the form is open, gets
    a refusal saying so (never a pending_approval with a blank link), and the form still decides."""
    world.configure(desk=False)
    elsewhere: list[Any] = []

    async def presents_the_ref_then_approves(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        found = _REF.search(params.message)
        assert found is not None, params.message
        async with world.client(mode=mode) as other:
            elsewhere.append(await other.call_tool("transfer_funds", world.transfer(approval_ref=found.group(1))))
        return ElicitResult(action="accept", content={"approve": True})

    async with world.client(presents_the_ref_then_approves, mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", world.transfer()))

    [refused] = elsewhere
    assert refused.is_error and body(refused)["error"]["code"] == "no_approval_desk", refused
    assert "approval_url" not in body(refused)
    assert result["status"] == "executed" and world.balance(world.target) == 25_000


async def test_a_form_yes_and_a_desk_continuation_at_once_run_it_once(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey
) -> None:
    """One approval answered through both channels at the same moment: it settles once, both callers get
    that outcome, and the money moves once."""

    async def never_asked(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("rounds are driven by hand")

    async with world.client(never_asked) as client:  # declares forms: the round is the form's
        round1 = await first_round(client, "transfer_funds", world.transfer())
        request = (round1.input_requests or {})[ASK]
        assert isinstance(request, ElicitRequest)
        found = _REF.search(request.params.message)
        assert found is not None
        ref = found.group(1)
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        results: list[dict[str, Any]] = []

        async def by_form() -> None:
            results.append(outcome(await answer(client, "transfer_funds", world.transfer(), round1.request_state)))

        async def by_desk() -> None:
            async with world.client() as other:
                results.append(body(await other.call_tool("transfer_funds", world.transfer(approval_ref=ref))))

        async with anyio.create_task_group() as group:
            group.start_soon(by_form)
            group.start_soon(by_desk)

    assert [r["status"] for r in results] == ["executed", "executed"] and results[0] == results[1]
    assert world.balance(world.target) == 25_000
    assert world.events(ref).count("executed") == 1
