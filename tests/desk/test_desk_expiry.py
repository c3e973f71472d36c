"""What the desk shows of a decided approval whose caller never came back, once the server ends it.

A no signed in time and never continued stayed `pending` in the approver's history for good; the sweep
settles it `rejected`, as its caller continuing would have, and the history says so. A yes signed in time
is the caller's to run, within the approval timeout of the decision: past that its continuation, or the
sweep, ends it `expired` and nothing runs.
"""

import html
import re
import time

import pytest

from mcp_server.app import open_state
from mcp_server.expiry import EXPIRY_GRACE
from policy.question import deadline_text
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World, approved, events, moved
from tests.support import run_together

pytestmark = pytest.mark.anyio

LATER = 3600.0
WINDOW = 300.0
"""The world's approval timeout: how long a question waits for its answer, and a desk yes for its caller."""


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


def status(world: World, ref: str) -> str:
    return str(world.rows("SELECT status FROM approvals WHERE ref = :r", r=ref)[0].status)


async def test_a_desk_yes_continued_within_its_window_runs_once(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """The window is counted from the decision, not the question: continued after the question's deadline but
    within the approval timeout of the yes, the call runs, once."""
    call, approval, decided = await approved(world, erin, passkey, asked_ago=200)
    world.state.gate.clock = lambda: decided + WINDOW - 1
    assert world.state.gate.clock() > approval.expires_at
    done = world.state.gate.resume(call, approval.ref).final
    again = world.state.gate.resume(call, approval.ref).final
    assert done is not None and done.status.value == "executed", done
    assert again == done
    assert moved(world) == 8_000
    assert sorted(events(world, approval.ref)) == ["approved", "desk_approved", "executed", "requested"]


async def test_a_desk_yes_continued_past_its_window_expires_with_nothing_run(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """A signed yes ran whenever its caller came back, an hour or a month later: past the window it ends
    `expired`, saying who approved it when and by when it had to be continued."""
    call, approval, decided = await approved(world, erin, passkey)
    world.state.gate.clock = lambda: decided + WINDOW + 1
    ended = world.state.gate.resume(call, approval.ref).final
    again = world.state.gate.resume(call, approval.ref).final
    assert ended is not None and ended.status.value == "expired", ended
    assert f"Approved at the desk by approver:erin at {deadline_text(decided)}" in ended.message
    assert f"not continued by {deadline_text(decided + WINDOW)}; nothing ran." in ended.message
    assert again == ended
    assert moved(world) == 0 and status(world, approval.ref) == "expired"
    assert sorted(events(world, approval.ref)) == ["desk_approved", "expired", "requested"]


async def test_the_sweep_ends_a_desk_yes_nobody_continued(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """The sweep left a signed yes pending for ever; now it ends one past its window and the grace, with its
    record and its key's outcome, and the approver's history says so."""
    call, approval, decided = await approved(world, erin, passkey, key="alice\x1fcontinue-1")
    world.state.gate.clock = lambda: decided + WINDOW + EXPIRY_GRACE - 1
    assert world.state.expiry.sweep() == 0
    assert status(world, approval.ref) == "pending"

    world.state.gate.clock = lambda: decided + WINDOW + EXPIRY_GRACE + 1
    assert world.state.expiry.sweep() == 1
    assert status(world, approval.ref) == "expired" and moved(world) == 0
    assert sorted(events(world, approval.ref)) == ["desk_approved", "expired", "requested"]
    [record] = world.rows("SELECT reason FROM audit_log WHERE approval_ref = :r AND event = 'expired'", r=approval.ref)
    assert "not continued by" in record.reason
    retried = world.state.gate.open(call, human_reachable=True).final
    assert retried is not None and retried.status.value == "expired" and retried.approval_ref == approval.ref
    assert history_status((await erin.get("/history")).text, approval.ref) == "expired"


@pytest.mark.parametrize("late", [False, True], ids=["within-its-window", "past-its-window"])
async def test_a_continuation_and_the_sweep_end_a_desk_yes_once(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, late: bool
) -> None:
    """A caller continuing a yes while another process's sweep finds it past its window: whichever settles
    first, the approval ends once, with one record, and money moves only if it ended `executed`."""
    call, approval, decided = await approved(world, erin, passkey)
    continuing = world.state.gate
    continuing.clock = lambda: decided + WINDOW + (1 if late else -1)
    sweeping = open_state(world.settings)
    sweeping.gate.clock = lambda: decided + WINDOW + EXPIRY_GRACE + 1
    result, ended = run_together(lambda: continuing.resume(call, approval.ref).final, sweeping.expiry.sweep)
    final = status(world, approval.ref)
    assert result is not None and result.status.value == final
    assert final == "expired" if late else final in ("executed", "expired")
    if not late:  # on time, only the sweep could have ended it `expired`
        assert ended == (1 if final == "expired" else 0)
    assert moved(world) == (8_000 if final == "executed" else 0)
    ending = ["approved", "executed"] if final == "executed" else ["expired"]
    assert sorted(events(world, approval.ref)) == sorted(["requested", "desk_approved", *ending])


async def test_the_desk_page_of_a_yes_says_by_when_it_must_be_continued(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """The approver sees how long the requester has to continue the call they approved."""
    _, approval, decided = await approved(world, erin, passkey)
    page = html.unescape((await erin.get(f"/approvals/{approval.ref}")).text)
    by = deadline_text(decided + approval.expires_at - approval.created_at)
    assert f"The requester must continue the call by {by}" in page, page
