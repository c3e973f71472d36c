"""A desk yes runs only while its approver may still give it.

An administrator who revokes an approver, or links them to the principal that asked (four eyes), after they
signed a yes but before its caller continued the call, stops it: the call ends `denied`, saying why, with its
record, and nothing moves. The settlement holds the approver's row (PostgreSQL: `FOR SHARE`, read again after
the lock) so a revocation or link reported done is never followed by a movement it forbids, and one made while
a settlement runs waits for it.
"""

import html
import re
import threading
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from mcp_server.cli.main import main
from policy.action import Call
from policy.results import GateResult, Status
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import PORT, DeskBrowser, World, approved, approver_changes, browser, events, moved
from tests.server.interleave import WAIT_LIMIT, hold_audit_writes, until_waiting_behind

pytestmark = pytest.mark.anyio


def status(world: World, ref: str) -> str:
    return str(world.rows("SELECT status FROM approvals WHERE ref = :r", r=ref)[0].status)


@pytest.fixture
async def frank(world: World) -> AsyncIterator[DeskBrowser]:
    """Another approver, with a passkey of his own, signed in at the desk: he reads what erin decided."""
    token, _ = world.admin.add("frank")
    async with browser(world) as desk:
        assert (await desk.enroll(token, SoftPasskey(origin=f"http://localhost:{PORT}"))).status_code == 200
        yield desk


@approver_changes
async def test_a_yes_whose_approver_may_no_longer_give_it_moves_nothing(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, change: Callable[[World], object], why: str
) -> None:
    call, approval, _ = await approved(world, erin, passkey)
    change(world)

    ended = world.state.gate.resume(call, approval.ref).final
    assert ended is not None and ended.status is Status.DENIED, ended
    assert f"Approved at the desk by approver:erin, {why}" in ended.message, ended.message
    assert world.state.gate.resume(call, approval.ref).final == ended, "settled once: not left for a later yes"
    assert moved(world) == 0 and status(world, approval.ref) == "denied"
    assert sorted(events(world, approval.ref)) == ["denied", "desk_approved", "requested"]
    [record] = world.rows("SELECT reason FROM audit_log WHERE approval_ref = :r AND event = 'denied'", r=approval.ref)
    assert why in record.reason
    asked_again = world.state.gate.open(call, human_reachable=True).approval
    assert asked_again is not None and asked_again.ref != approval.ref, "a new call is a new question"
    assert main(["audit", "verify", "--db", world.settings.db_url]) == 0


@approver_changes
async def test_the_next_sweep_ends_a_void_yes_long_before_its_window_passes(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, change: Callable[[World], object], why: str
) -> None:
    """The sweep left a void yes pending until its question's deadline and its window to be continued had passed,
    while every page said it would run; now the next sweep ends it `denied`, with the record and the key's outcome
    its caller continuing would have found."""
    call, approval, _ = await approved(world, erin, passkey, key="alice\x1fvoid-1")
    assert world.state.expiry.sweep() == 0, "a yes its approver may still give is its caller's"
    change(world)
    assert world.state.gate.clock() < approval.expires_at, "well within its deadline"
    assert world.state.expiry.sweep() == 1
    assert moved(world) == 0 and status(world, approval.ref) == "denied"
    assert sorted(events(world, approval.ref)) == ["denied", "desk_approved", "requested"]
    [record] = world.rows("SELECT reason FROM audit_log WHERE approval_ref = :r AND event = 'denied'", r=approval.ref)
    assert f"Approved at the desk by approver:erin, {why}" in record.reason
    continued = world.state.gate.resume(call, approval.ref).final
    assert continued is not None and continued.status is Status.DENIED and why in continued.message, continued
    retried = world.state.gate.open(call, human_reachable=True).final
    assert retried == continued, "the key keeps the outcome the sweep stored"
    assert world.state.expiry.sweep() == 0
    assert main(["audit", "verify", "--db", world.settings.db_url]) == 0


async def test_a_void_looking_yes_edited_in_the_database_is_reported_not_ended(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """A revoked approver's yes whose signed question no longer matches the approval is no decision to the gate: the
    sweep found it as void yet would have ended it `expired` before its deadline; it is reported and left pending."""
    _, approval, _ = await approved(world, erin, passkey)
    world.admin.revoke("erin")
    world.sql("UPDATE desk_decisions SET question_sha256 = 'edited' WHERE approval_ref = :r", r=approval.ref)
    assert world.state.expiry.sweep() == 0
    assert status(world, approval.ref) == "pending"
    assert "does not match" in world.state.expiry.unreadable[approval.ref]


@approver_changes
async def test_the_desk_page_of_a_void_yes_says_it_will_not_run(
    world: World,
    erin: DeskBrowser,
    frank: DeskBrowser,
    passkey: SoftPasskey,
    change: Callable[[World], object],
    why: str,
) -> None:
    """The page of a yes whose approver was revoked (or linked to the requester) still told every approver the
    requester had until a time to continue the call, as if it would run then; and, once it said void, still headed
    the decision with a green "Approved by erin"."""
    _, approval, _ = await approved(world, erin, passkey)
    change(world)
    page = html.unescape((await frank.get(f"/approvals/{approval.ref}")).text)
    assert "The requester must continue the call by" not in page, page
    [void] = re.findall(r'<p id="void">(.*?)</p>', page)
    assert void.startswith(f"Void: approved by erin, {why}") and "nothing will run" in void, void
    [(kind, heading)] = re.findall(r'<section class="card decided (\w+)">\s*<h2>(.*?)</h2>', page)
    assert (kind, heading) == ("void", "Void: this yes will not run"), (kind, heading)


async def test_the_desk_page_of_a_standing_yes_is_headed_approved(
    world: World, erin: DeskBrowser, frank: DeskBrowser, passkey: SoftPasskey
) -> None:
    """The heading a void yes loses is kept by a yes its approver may still give."""
    _, approval, _ = await approved(world, erin, passkey)
    page = html.unescape((await frank.get(f"/approvals/{approval.ref}")).text)
    [(kind, heading)] = re.findall(r'<section class="card decided (\w+)">\s*<h2>(.*?)</h2>', page)
    assert (kind, heading) == ("approved", "Approved by erin"), (kind, heading)
    assert '<p id="void">' not in page


async def test_a_no_whose_approver_was_revoked_still_rejects(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """A revocation takes away the power to say yes; a no signed before it still stands (nothing runs either way)."""
    approval = world.pending("80.00")
    assert (await erin.decide(approval.ref, "rejected", passkey)).status_code == 200
    world.admin.revoke("erin")
    call = Call(approval.tool, approval.arguments, approval.principal, approval.idempotency_key)
    ended = world.state.gate.resume(call, approval.ref).final
    assert ended is not None and ended.status is Status.REJECTED, ended
    assert moved(world) == 0


def postgres_only(world: World) -> None:
    if world.db.dialect != "postgresql":
        pytest.skip("SQLite's write transaction holds the whole file: nothing runs beside a settlement")


@approver_changes
async def test_a_change_committed_while_the_settlement_waits_for_the_approver_stops_it(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, change: Callable[[World], object], why: str
) -> None:
    """The administrator's change holds erin's row (it waits at its audit record) when the caller continues: the
    settlement waits for it, and once it commits, reads it, though its statement began before the commit."""
    postgres_only(world)
    call, approval, _ = await approved(world, erin, passkey)
    results: dict[str, object] = {}
    with psycopg.connect(world.db_url) as holder, psycopg.connect(world.db_url, autocommit=True) as watcher:
        hold_audit_writes(holder)
        changing = threading.Thread(target=lambda: results.update(changed=change(world)))
        changing.start()
        admin = until_waiting_behind(watcher, holder, "the change never reached its audit record")
        settling = threading.Thread(
            target=lambda: results.update(settled=world.state.gate.resume(call, approval.ref).final)
        )
        settling.start()
        until_waiting_behind(watcher, admin, "the settlement did not wait for the approver's row")
        holder.rollback()
        changing.join(WAIT_LIMIT)
        settling.join(WAIT_LIMIT)
    settled = results["settled"]
    assert isinstance(settled, GateResult) and settled.status is Status.DENIED, settled
    assert why in settled.message
    assert moved(world) == 0


@approver_changes
async def test_a_change_made_while_a_settlement_holds_the_approver_waits_for_it(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, change: Callable[[World], object], why: str
) -> None:
    """The other order: the settlement read erin as active and has not committed; the administrator's change waits
    until it has, so `approvers revoke` (or `link`) never returns before a movement her yes allowed."""
    postgres_only(world)
    call, approval, _ = await approved(world, erin, passkey)
    results: dict[str, object] = {}
    with psycopg.connect(world.db_url) as holder, psycopg.connect(world.db_url, autocommit=True) as watcher:
        hold_audit_writes(holder)  # the settlement waits at its last statement, its locks taken
        settling = threading.Thread(
            target=lambda: results.update(settled=world.state.gate.resume(call, approval.ref).final)
        )
        settling.start()
        settlement = until_waiting_behind(watcher, holder, "the settlement never reached its audit records")
        changing = threading.Thread(target=lambda: results.update(changed=change(world)))
        changing.start()  # its audit record would wait for the holder too: it must wait for the settlement first
        until_waiting_behind(watcher, settlement, "the change did not wait for the settlement holding erin's row")
        holder.rollback()
        settling.join(WAIT_LIMIT)
        changing.join(WAIT_LIMIT)
    settled = results["settled"]
    assert isinstance(settled, GateResult) and settled.status is Status.EXECUTED, settled
    assert "changed" in results, "the change ended once the settlement committed"
    assert moved(world) == 8_000
