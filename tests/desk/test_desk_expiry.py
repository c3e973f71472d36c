"""What the desk shows of a decided approval whose caller never came back, once the server ends it.

A no signed in time and never continued stayed `pending` in the approver's history for good; the sweep
settles it `rejected`, as its caller continuing would have, and the history says so. A yes signed in time
is the caller's to run: the sweep leaves it, and the caller continuing it later still runs it.
"""

import html
import re
import time

import pytest

from policy.action import Call
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World

pytestmark = pytest.mark.anyio

LATER = 3600.0


def history_status(page: str, ref: str) -> str:
    row = re.search(rf"<tr>(?:(?!</tr>).)*{ref}(?:(?!</tr>).)*</tr>", page, re.S)
    assert row is not None, page
    return html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)[-1]).strip()


async def test_a_desk_no_never_continued_ends_rejected_and_the_history_shows_it(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    approval = world.pending("75.00")
    reply = await erin.decide(approval.ref, "rejected", passkey, note="not expected")
    assert reply.status_code == 200, reply.text
    assert history_status((await erin.get("/history")).text, approval.ref) == "pending"

    world.state.gate.clock = lambda: time.time() + LATER
    assert world.state.expiry.sweep() == 1

    assert history_status((await erin.get("/history")).text, approval.ref) == "rejected"
    events = [row.event for row in world.rows("SELECT event FROM audit_log WHERE approval_ref = :r", r=approval.ref)]
    assert sorted(events) == ["desk_rejected", "rejected", "requested"]
    assert world.rows("SELECT status FROM approvals WHERE ref = :r", r=approval.ref)[0].status == "rejected"


async def test_a_desk_yes_is_left_to_its_caller(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.pending("80.00")
    reply = await erin.decide(approval.ref, "approved", passkey)
    assert reply.status_code == 200, reply.text
    world.state.gate.clock = lambda: time.time() + LATER
    assert world.state.expiry.sweep() == 0
    assert history_status((await erin.get("/history")).text, approval.ref) == "pending"

    call = Call(approval.tool, approval.arguments, approval.principal)
    resumed = world.state.gate.resume(call, approval.ref)
    assert resumed.final is not None and resumed.final.status.value == "executed"
