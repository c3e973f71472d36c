"""An approval stays bound to the one call it was asked for, whichever channel answers it.

Beyond `test_mcp_channels.py` (a ref with other arguments or by another caller): a ref continued
under another idempotency key.
"""

import pytest

from tests.channels.support import ChannelWorld, body
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.support import keyed

pytestmark = pytest.mark.anyio
MODES = ["auto", "legacy"]


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
