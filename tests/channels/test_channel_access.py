"""Who may decide where: a question the policy routes only to the client's form (`channel = "form"`)
is not decided at the desk, even when its reference is presented there and then to the gate."""

from pathlib import Path

import pytest
from mcp.client import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from tests.channels.support import ChannelWorld, body, desk_policy
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_form_only_question_is_not_settled_by_a_desk_decision(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, mode: str, tmp_path: Path
) -> None:
    """While the requester's form is open, an approver signs the question at the desk and a second client
    of the same principal (no forms) continues it with its approval_ref: the form rule is not met by that."""
    world.configure(policy=desk_policy(tmp_path, "form"))
    continued: list[dict[str, object]] = []

    async def form(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        ref = params.message.rsplit("Reference: ", 1)[1].strip()
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        async with world.client(mode=mode) as elsewhere:  # the same principal, from a client without forms
            continued.append(body(await elsewhere.call_tool("transfer_funds", world.transfer(approval_ref=ref))))
        return ElicitResult(action="decline")

    async with world.client(form, mode=mode) as client:
        asked = body(await client.call_tool("transfer_funds", world.transfer()))

    [elsewhere] = continued
    assert elsewhere["status"] == "denied" and "form" in str(elsewhere["message"]), elsewhere
    assert world.balance(world.target) == 0, "nothing moved on a desk signature the policy never asked for"
    assert asked == elsewhere, "the form's answer finds the approval settled"
