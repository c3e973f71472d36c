"""`audit verify` re-verifies every desk signature offline; `approvers add|list|revoke` from the CLI."""

import time
from typing import Any

import cbor2
import pytest
from sqlalchemy import Connection, event, text

from mcp_server.cli.main import main
from mcp_server.desk.reverify import reverify_decisions
from mcp_server.desk.tokens import b64url
from mcp_server.storage.database import Database
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World, browser

pytestmark = pytest.mark.anyio


def verify(world: World, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", world.settings.db_url])
    return code, capsys.readouterr().out


@pytest.fixture
async def decided(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> str:
    approval = world.pending("300.00")
    assert (await erin.decide(approval.ref, "approved", passkey, note="ok")).status_code == 200
    return approval.ref


async def test_intact_decisions_verify(world: World, decided: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(world, capsys)
    assert code == 0, out


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        ("UPDATE approvals SET question = question || ' (edited)' WHERE ref = :r", "signature does not verify"),
        ("UPDATE approvals SET binding = 'forged' WHERE ref = :r", "signature does not verify"),
        ("UPDATE desk_decisions SET verdict = 'rejected' WHERE approval_ref = :r", "differs from its audit record"),
        (
            "UPDATE desk_credentials SET public_key = (SELECT public_key FROM desk_credentials c2 WHERE c2.approver = "
            "'mallory') WHERE approver = 'erin'",
            "signature does not verify",
        ),
        ("DELETE FROM desk_decisions WHERE approval_ref = :r", "not at the desk (deleted)"),
    ],
    ids=["question", "binding", "verdict", "key", "deleted"],
)
async def test_edits_are_reported(
    world: World, decided: str, statement: str, reported: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mallory = SoftPasskey(origin=world.config().origin)
    token, _ = world.admin.add("mallory")
    from tests.desk.world import browser

    async with browser(world) as desk:
        assert (await desk.enroll(token, mallory)).status_code == 200
    world.sql(statement, r=decided)
    code, out = verify(world, capsys)
    assert code == 1 and reported in out and decided in out, out


async def test_a_decision_committed_while_verifying_is_seen_whole_or_not_at_all(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """The re-verification reads the desk's audit records, then its decisions: one snapshot, so a decision
    (committed with its record) landing between the two reads is not reported as having no record."""
    late = world.pending("310.00")
    assert (await erin.decide(late.ref, "approved", passkey)).status_code == 200
    held = ("audit_log", "desk_decisions")  # both name the approval in `approval_ref`
    for table in held:  # set the decision aside, to be committed again mid-read
        world.sql(f"CREATE TABLE held_{table} AS SELECT * FROM {table} WHERE approval_ref = :r", r=late.ref)
        world.sql(f"DELETE FROM {table} WHERE approval_ref = :r", r=late.ref)
    other = Database.open(world.settings.db_url)

    def land(conn: Connection) -> None:
        for table in held:
            conn.execute(text(f"INSERT INTO {table} SELECT * FROM held_{table}"))

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT seq, approval_ref, event"):  # the first read
            other.run(land)

    event.listen(world.db.engines[0], "after_cursor_execute", after)
    try:
        assert reverify_decisions(world.db) == []
    finally:
        event.remove(world.db.engines[0], "after_cursor_execute", after)
        other.close()
    assert len(world.rows("SELECT 1 FROM desk_decisions WHERE approval_ref = :r", r=late.ref)) == 1


@pytest.mark.parametrize(
    ("tamper", "reported"),
    [
        ("inserted", "passkey {id} of erin has no enrolment record (inserted outside the desk)"),
        ("swapped", "passkey {id} of erin differs from its enrolment record (edited)"),
        ("revived", "was signed after erin was revoked"),
    ],
    ids=["inserted", "swapped", "revived"],
)
async def test_a_passkey_or_approver_changed_behind_the_desk_is_found_by_audit_verify(
    world: World,
    erin: DeskBrowser,
    passkey: SoftPasskey,
    tamper: str,
    reported: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Someone with the database gives erin a passkey of theirs (a row inserted, or her key swapped for theirs),
    or brings her back after her revocation, then signs in as her and approves: every record the desk writes is
    genuine and every signature verifies against the key the table holds, so only the signed enrolment and
    revocation records can tell."""
    approval = world.pending("40.00")
    thief = SoftPasskey(origin=world.config().origin)
    key = b64url(cbor2.dumps(thief.cose_key()))
    if tamper == "inserted":
        world.sql("INSERT INTO desk_credentials VALUES (:id, 'erin', :k, 0, 'localhost', :at)",
                  id=b64url(thief.credential_id), k=key, at=time.time())  # fmt: skip
    elif tamper == "swapped":
        thief.credential_id, thief.count = passkey.credential_id, passkey.count
        world.sql("UPDATE desk_credentials SET public_key = :k WHERE approver = 'erin'", k=key)
    else:
        thief = passkey
        world.admin.revoke("erin")
        world.sql("UPDATE desk_approvers SET status = 'active', revoked_at = NULL WHERE name = 'erin'")
    async with browser(world) as desk:
        assert (signed := await desk.sign_in(thief)).status_code == 200, signed.text
        assert (await desk.decide(approval.ref, "approved", thief)).status_code == 200
    code, out = verify(world, capsys)
    assert code == 1 and reported.format(id=b64url(thief.credential_id)) in out, out
    assert approval.ref in out, "the decision it let through is named"
    print(out, file=__import__("sys").stderr)


def test_approvers_commands(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", world.settings.db_url]
    assert main(["approvers", "add", "dora", "--role", "treasury", *db]) == 0
    out = capsys.readouterr().out
    assert "http://localhost:8766/desk/enroll#token=" in out and "valid until" in out
    assert main(["approvers", "add", "dora", "--desk-url", "https://bank.example/desk", *db]) == 0
    assert "https://bank.example/desk/enroll#token=" in capsys.readouterr().out, "a re-invite replaces the link"
    assert world.rows("SELECT COUNT(*) AS n FROM desk_enrollments WHERE approver = 'dora'")[0].n == 1
    assert main(["approvers", "list", *db]) == 0
    assert "dora" in (listing := capsys.readouterr().out) and "invited" in listing and "treasury" in listing
    edited = "\x1b[2K\rnobody"  # edited behind bankgate's back
    world.sql("UPDATE desk_approvers SET added_by = :t, role = :t WHERE name = 'dora'", t=edited)
    assert main(["approvers", "list", *db]) == 0
    listing = capsys.readouterr().out
    assert listing.count("\\x1b[2K\\rnobody") == 2 and "\x1b" not in listing, "shown escaped"
    assert main(["approvers", "revoke", "dora", *db]) == 0
    assert main(["approvers", "revoke", "dora", *db]) == 2
    assert "already revoked" in capsys.readouterr().err
    assert main(["approvers", "add", "dora", *db]) == 2
    assert "never reused" in capsys.readouterr().err
    assert main(["approvers", "add", "bad name", *db]) == 2
    assert "not valid" in capsys.readouterr().err
    events = [r.event for r in world.rows("SELECT event FROM audit_log WHERE tool = 'approvers' ORDER BY rid")]
    assert events == ["approver_added", "approver_invited", "approver_revoked"]
    assert main(["audit", "verify", *db]) == 0


def test_a_desk_url_passkeys_cannot_use_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", world.settings.db_url]
    for url, says in [("http://bank.example/desk", "need https"), ("https://10.0.0.1/desk", "host name"),
                      ("https://bank.example/approvals", "its path must be /desk exactly"),
                      ("https://bank.example/bank/desk", "its path must be /desk exactly")]:  # fmt: skip
        assert main(["approvers", "add", "dora", "--desk-url", url, *db]) == 2
        assert says in capsys.readouterr().err
    assert world.rows("SELECT COUNT(*) AS n FROM desk_approvers")[0].n == 0


def test_a_desk_url_taken_from_the_public_url_is_refused_naming_that_setting(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator set only BANKGATE_PUBLIC_URL (an address by IP is a fine OAuth resource): the refusal of the
    desk URL made from it named a 'desk URL' nobody wrote and advised localhost."""
    monkeypatch.setenv("BANKGATE_PUBLIC_URL", "https://10.0.0.5/mcp")
    assert main(["approvers", "add", "dora", "--db", world.settings.db_url]) == 2
    refused = capsys.readouterr().err
    assert "host name" in refused and "BANKGATE_PUBLIC_URL" in refused and "BANKGATE_DESK_URL" in refused, refused
    assert "--no-desk" in refused and len(refused.splitlines()) == 1
    assert world.rows("SELECT COUNT(*) AS n FROM desk_approvers")[0].n == 0
