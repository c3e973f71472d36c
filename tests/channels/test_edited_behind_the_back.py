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
