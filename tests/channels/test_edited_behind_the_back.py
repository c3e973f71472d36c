"""The database edited behind the server's back between a desk decision and the call that continues it.

The approver signed over the approval's binding and question (the call as asked). An approval row whose
`arguments_json` is later rewritten to another call's must not let that other call run on the signature:
`approval_ref` continues only the call the approver saw."""

import json

import pytest

from tests.channels.support import ChannelWorld, body
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_arguments_rewritten_after_a_desk_approval_run_nothing(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    async with world.client(mode=mode) as client:
        first = body(await client.call_tool("transfer_funds", world.transfer("250.00")))
        assert first["status"] == "pending_approval", first
        ref = first["approval_ref"]
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200  # signed over 250.00

        [row] = world.rows("SELECT arguments_json FROM approvals WHERE ref = :r", r=ref)
        edited = {**json.loads(row.arguments_json), "amount": "4000"}
        world.sql("UPDATE approvals SET arguments_json = :a WHERE ref = :r", a=json.dumps(edited), r=ref)
        larger = body(await client.call_tool("transfer_funds", world.transfer("4000", approval_ref=ref)))

    assert larger["status"] != "executed", larger
    assert world.balance(world.target) == 0, "nothing the approver did not see moved"
    assert "executed" not in world.events(ref)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_approval_moved_to_another_caller_runs_nothing_for_it(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str
) -> None:
    """The approver saw who asked ("Requested by"); a row rewritten to name another caller does not let that
    caller continue it."""
    async with world.client(mode=mode) as client:
        ref = body(await client.call_tool("transfer_funds", world.transfer("250.00")))["approval_ref"]
    assert (await dora.decide(ref, "approved", passkey)).status_code == 200
    world.sql("UPDATE approvals SET principal = 'other' WHERE ref = :r", r=ref)
    async with world.client(mode=mode, principal="other") as other:
        taken = body(await other.call_tool("transfer_funds", world.transfer("250.00", approval_ref=ref)))

    assert taken["status"] != "executed", taken
    assert world.balance(world.target) == 0


async def test_a_close_rewritten_to_another_account_closes_nothing(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey
) -> None:
    """Two accounts alike in balance and sweep target: the approver saw which one would be closed."""
    ledger = world.state.ledger
    shown, other = ledger.create_account("Ada Lovelace").id, ledger.create_account("Ada Lovelace").id
    for account in (shown, other):
        ledger.deposit(account, "100")
    async with world.client() as client:
        asked = {"account_id": shown, "sweep_to": world.source}
        ref = body(await client.call_tool("close_account", asked))["approval_ref"]
        issued = await dora.challenge(ref, "approved")
        signed = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
        decided = await dora.post(f"/approvals/{ref}/decide", {**signed, "confirmation": shown})
        assert decided.status_code == 200, decided.text
        [row] = world.rows("SELECT arguments_json FROM approvals WHERE ref = :r", r=ref)
        world.sql(
            "UPDATE approvals SET arguments_json = :a WHERE ref = :r",
            a=row.arguments_json.replace(shown, other), r=ref,
        )  # fmt: skip
        closed = body(await client.call_tool("close_account", {**asked, "account_id": other, "approval_ref": ref}))

    assert closed["status"] != "executed", closed
    assert [ledger.balance(a).status for a in (shown, other)] == ["open", "open"]
