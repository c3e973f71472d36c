"""The desk after a clock step back: a question or a sign-in lives its timeout, not as long as the clock was off.

Deadlines are stored as wall-clock time. A question asked (or a session opened) while a clock read an hour
ahead, read after NTP set it back (or on a replica an hour behind), was open for an hour more: the desk listed
a five-minute question and took a signed yes on it an hour later, and a 30-minute sign-in lasted 90 minutes.
More than `CLOCK_TOLERANCE` before the time it was made, neither can be trusted: the question is over, the
session signed out.
"""

import time
from types import SimpleNamespace

import pytest

from mcp_server.desk import sessions
from mcp_server.desk.sessions import open_session, session_approver
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World

pytestmark = pytest.mark.anyio

HOUR = 3600.0


async def test_a_question_asked_an_hour_ahead_cannot_be_decided_after_the_clock_is_set_back(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    world.state.gate.clock = lambda: time.time() + HOUR  # asked on a clock an hour ahead
    ref = world.pending().ref
    world.state.gate.clock = time.time  # NTP set it back

    inbox = await erin.get("/")
    page = await erin.get(f"/approvals/{ref}")

    assert ref not in inbox.text
    assert "data-shown" not in page.text, "the page offers a decision on it"
    assert not world.rows("SELECT 1 FROM desk_decisions WHERE approval_ref = :r", r=ref)


async def test_a_session_opened_an_hour_ahead_ends_when_the_clock_is_set_back(
    world: World, erin: DeskBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "time", SimpleNamespace(time=lambda: time.time() + HOUR))
    token = world.db.run(lambda conn: open_session(conn, "erin"))
    monkeypatch.setattr(sessions, "time", time)  # NTP set it back

    assert world.db.read(lambda conn: session_approver(conn, token)) is None


async def test_a_session_opened_on_a_replica_a_little_ahead_holds(
    world: World, erin: DeskBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "time", SimpleNamespace(time=lambda: time.time() + 30))
    token = world.db.run(lambda conn: open_session(conn, "erin"))
    monkeypatch.setattr(sessions, "time", time)

    assert world.db.read(lambda conn: session_approver(conn, token)) == "erin"


async def test_the_sweep_ends_a_desk_yes_once_the_clock_is_set_back(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """Its caller continuing it now gets `expired` (the window read on this clock would last an hour more): the
    sweep, which left a signed yes to its caller by that window, ends it the same."""
    ref = world.pending().ref
    assert (await erin.decide(ref, "approved", passkey)).status_code == 200
    world.state.gate.clock = lambda: time.time() - HOUR  # NTP set it back

    assert world.state.expiry.sweep() == 1

    [row] = world.rows("SELECT status FROM approvals WHERE ref = :r", r=ref)
    assert row.status == "expired"
    [record] = world.rows("SELECT reason FROM audit_log WHERE approval_ref = :r AND event = 'expired'", r=ref)
    assert "clock" in record.reason, record.reason
