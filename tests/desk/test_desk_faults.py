"""The desk's decision meets a fault at each statement it runs: the approver is told the truth.

Signing a decision runs a few transactions (the session's read, the challenge's use, the decision's
write: the approver's row, the passkey's count, the decision and its audit record, the COMMIT). At each
statement the connection is lost, or (PostgreSQL) the COMMIT lands and its answer is lost. The desk
answers that its database failed, and after a lost COMMIT that the decision may have been recorded: never
a bare server error ("The desk answered 500."), and never "nothing was recorded" for a recorded decision.
The approver, signing again, has the decision recorded exactly once, or is told it already was; the
audit verifies.
"""

from collections.abc import Iterator

import pytest

from mcp_server.audit.reader import verify
from mcp_server.desk.decisions import decision_for
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World
from tests.server.faults import Fault, Faults, faults_on

pytestmark = pytest.mark.anyio

MOST_STATEMENTS = 40
RECORDS = "SELECT COUNT(*) FROM audit_log WHERE event = 'desk_approved' AND approval_ref = :ref"


def decided(world: World, ref: str) -> bool:
    return world.db.read(lambda conn: decision_for(conn, ref)) is not None


@pytest.fixture
def faults(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    yield from faults_on(world.db, monkeypatch)


@pytest.mark.parametrize("fault", [Fault.LOST, Fault.COMMITTED])
async def test_a_decision_whose_write_fails_is_told_so_and_recorded_once_when_signed_again(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, faults: Faults, fault: Fault
) -> None:
    if fault is Fault.COMMITTED and world.db.dialect != "postgresql":
        pytest.skip("SQLite runs in this process: no answer to its COMMIT is lost on the way")
    fired = []
    for nth in range(1, MOST_STATEMENTS):
        ref = world.pending("250.00").ref
        issued = await erin.challenge(ref, "approved")
        body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
        with faults.armed(nth, fault):
            reply = await erin.post(f"/approvals/{ref}/decide", body)
        if faults.fired is None:
            assert reply.status_code == 200, reply.text
            break
        fired.append(faults.fired)
        recorded = decided(world, ref)
        if reply.status_code == 200:  # a read that failed, read again on a fresh connection (SQLite)
            assert recorded, (nth, faults.fired)
        else:
            told = reply.json()
            assert reply.status_code == 503, (nth, faults.fired, reply.text)
            assert told["error"] == "outcome_unknown" or not recorded, (nth, faults.fired, told)
            again = await erin.post(f"/approvals/{ref}/challenge", {"verdict": "approved"})
            if recorded:
                assert again.status_code == 409 and again.json()["error"] == "already_decided", again.text
            else:
                assert (await erin.decide(ref, "approved", passkey)).status_code == 200
        assert decided(world, ref)
        assert world.rows(RECORDS, ref=ref)[0][0] == 1
    assert fired, "no fault fired"
    assert verify(world.db).findings == []


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_page_whose_read_fails_says_the_database_is_unavailable(
    world: World, erin: DeskBrowser, faults: Faults, failures: int
) -> None:
    """The inbox's first read loses its connection: it is read again on a fresh one (SQLite's reader; a PostgreSQL
    connection found closed), and the page is served. When the read fails again (the database is down), the page
    says the database is unavailable."""
    with faults.armed(1, Fault.LOST, times=failures):
        page = await erin.get("/")
    assert faults.fired is not None
    if failures == 1:
        assert page.status_code == 200, page.text
    else:
        assert page.status_code == 503 and "database is unavailable right now" in page.text, page.text
