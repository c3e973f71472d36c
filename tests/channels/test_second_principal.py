"""A second principal holding what the first was given: its approval reference, with the very arguments and
the very idempotency key it was asked under, in every state that approval can be in; and the first principal
losing its entitlement or its credentials' roles between the question and the desk's yes.

Beyond `test_mcp_channels.py` (another caller's ref, once, desk-approved) and
`tests/server/test_keys_per_principal.py` (another caller's idempotency key)."""

import json
from pathlib import Path

import pytest

from mcp_server.ledger.entitlements import EntitlementAdmin
from policy.action import Call
from policy.results import Refusal
from tests.channels.support import ChannelWorld, body, desk_policy
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.support import SHIPPED_POLICY, keyed

pytestmark = pytest.mark.anyio
NOWHERE = "APR-0123456789"


@pytest.mark.parametrize("state", ["pending", "approved", "rejected", "executed"])
async def test_another_principal_presenting_a_ref_learns_nothing_of_it(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, state: str
) -> None:
    """Mallory presents local's reference, same arguments, same key text: the refusal reads word for word as for
    a reference that does not exist, whatever became of the approval; nothing runs, nothing of it changes."""
    async with world.client() as owner:
        asked = body(await owner.call_tool("transfer_funds", world.transfer(), meta=keyed("k-1")))
        ref = asked["approval_ref"]
        if state != "pending":
            verdict = "rejected" if state == "rejected" else "approved"
            assert (await dora.decide(ref, verdict, passkey)).status_code == 200
        if state == "executed":
            done = await owner.call_tool("transfer_funds", world.transfer(approval_ref=ref), meta=keyed("k-1"))
            assert body(done)["status"] == "executed"
    events, balance = world.events(ref), world.balance(world.target)

    async with world.client(principal="mallory") as mallory:
        theirs = await mallory.call_tool("transfer_funds", world.transfer(approval_ref=ref), meta=keyed("k-1"))
        missing = await mallory.call_tool("transfer_funds", world.transfer(approval_ref=NOWHERE), meta=keyed("k-1"))

    assert theirs.is_error and missing.is_error
    said = json.dumps(body(missing)).replace(NOWHERE, ref)
    assert json.dumps(body(theirs)) == said, "exists-but-not-yours reads as does-not-exist"
    assert world.events(ref) == events and world.balance(world.target) == balance


async def test_another_principal_presenting_a_form_only_ref_is_not_told_it_is_form_only(
    world: ChannelWorld, tmp_path: Path
) -> None:
    """`form_only` would say the reference exists: another caller gets the refusal a missing one gets."""
    world.configure(policy=desk_policy(tmp_path, "form"))
    ref = world.pending(principal="local").ref
    async with world.client(principal="mallory") as mallory:
        theirs = await mallory.call_tool("transfer_funds", world.transfer(approval_ref=ref))
        missing = await mallory.call_tool("transfer_funds", world.transfer(approval_ref=NOWHERE))
    assert json.dumps(body(theirs)) == json.dumps(body(missing)).replace(NOWHERE, ref)
    assert world.status(ref) == "pending"


async def test_a_desk_yes_after_the_requesters_grant_was_revoked_runs_nothing(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey
) -> None:
    """Under the shipped policy local owns the source and asks; an administrator revokes the grant; an approver,
    unaware, signs yes at the desk; local continues: the settlement decides again on what local holds now."""
    world.configure(policy=SHIPPED_POLICY)
    admin = EntitlementAdmin(world.db, "ops")
    admin.grant("local", "owner", world.source)
    async with world.client() as owner:
        ref = body(await owner.call_tool("transfer_funds", world.transfer()))["approval_ref"]
        admin.revoke("local", "owner", world.source)
        assert (await dora.decide(ref, "approved", passkey)).status_code == 200
        continued = body(await owner.call_tool("transfer_funds", world.transfer(approval_ref=ref)))
        again = body(await owner.call_tool("transfer_funds", world.transfer(approval_ref=ref)))

    assert continued["error"]["code"] == "unknown_account" and again == continued, continued
    assert world.balance(world.target) == 0 and world.balance(world.source) == 500_000
    assert world.status(ref) == "failed" and "executed" not in world.events(ref)


async def test_a_desk_yes_is_continued_only_with_the_roles_it_was_asked_with(
    world: ChannelWorld, dora: DeskBrowser, passkey: SoftPasskey, tmp_path: Path
) -> None:
    """A token's roles are part of what the desk approved: asked as an operator, continued by the same
    principal without the role (a token refreshed after the scope was withdrawn) nothing runs; with it, it runs."""
    world.configure(policy=SHIPPED_POLICY)
    gate = world.state.gate
    action = gate.actions["transfer_funds"]
    arguments = action.canonical(world.transfer())
    operator = Call("transfer_funds", arguments, "local", "local\x1fk-roles", ("operator",))
    opening = gate.open(operator, human_reachable=False, desk=True)
    assert opening.approval is not None, opening.final
    ref = opening.approval.ref
    assert (await dora.decide(ref, "approved", passkey)).status_code == 200

    with pytest.raises(Refusal) as refused:
        gate.resume(Call("transfer_funds", arguments, "local", "local\x1fk-roles", ()), ref)
    assert refused.value.code == "approval_mismatch"
    assert world.status(ref) == "pending" and world.balance(world.target) == 0

    done = gate.resume(operator, ref).final
    assert done is not None and done.status.value == "executed", done
    assert world.balance(world.target) == 25_000
