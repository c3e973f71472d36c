"""Four eyes: an approver never decides a request made under a principal they act as.

An approver is linked (`bankgate-mcp approvers link NAME PRINCIPAL`) to the principals they also
sign in to MCP as. The desk then shows them their own requests without letting them sign one, so
the person who asked for a movement is never the one who approves it at the desk."""

import time
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from mcp_server.cli.main import main
from mcp_server.desk import approvers, decisions
from mcp_server.desk.approvers import ApproverError
from mcp_server.desk.decisions import decision_for
from tests.desk.authenticator import SoftPasskey
from tests.desk.races import change_during_decision
from tests.desk.world import DeskBrowser, World

pytestmark = pytest.mark.anyio


async def test_an_approver_cannot_decide_a_request_of_a_principal_they_act_as(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    own, other = world.pending("40.00", principal="erin.k"), world.pending("50.00", principal="alice")
    world.admin.link("erin", "erin.k")

    inbox = (await erin.get("/")).text
    assert own.ref in inbox and "your own request" in inbox, "shown, so she knows it waits for someone else"
    page = (await erin.get(f"/approvals/{own.ref}")).text
    assert 'id="own-request"' in page and 'id="decide"' not in page
    for verdict in ("approved", "rejected"):
        refused = await erin.post(f"/approvals/{own.ref}/challenge", {"verdict": verdict})
        assert refused.status_code == 403 and refused.json()["error"] == "own_request", refused.text
        assert "erin.k" in refused.json()["message"]
    assert world.db.read(lambda conn: decision_for(conn, own.ref)) is None

    assert (await erin.decide(other.ref, "approved", passkey)).status_code == 200, "others' requests she decides"
    world.admin.unlink("erin", "erin.k")
    assert (await erin.decide(own.ref, "rejected", passkey)).status_code == 200, "unlinked: no longer hers"


async def test_a_link_made_while_a_decision_is_checked_stands(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The administrator links erin to the requester while her signed decision is being checked: a link that
    commits first stops the decision; the decision is recorded only if the link came after it."""
    approval = world.pending(principal="erin.k")
    reply, linked_first = await change_during_decision(
        world, erin, passkey, approval, lambda: world.admin.link("erin", "erin.k"), monkeypatch
    )
    decided = world.db.read(lambda conn: decision_for(conn, approval.ref))
    if linked_first:
        assert reply.status_code == 403 and reply.json()["error"] == "own_request", reply.text
        assert decided is None
    else:
        assert reply.status_code == 200 and decided is not None, "decided before the link could commit"


def test_links_are_audited_listed_and_checked(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", world.settings.db_url]
    assert main(["approvers", "add", "dora", *db]) == 0
    assert main(["approvers", "link", "dora", "dora@bank.example", *db]) == 0
    assert main(["approvers", "link", "dora", "José Álvarez", *db]) == 0
    capsys.readouterr()
    assert main(["approvers", "list", *db]) == 0
    assert "acts as: José Álvarez, dora@bank.example" in capsys.readouterr().out
    assert main(["approvers", "link", "dora", "dora@bank.example", *db]) == 2
    assert "already" in capsys.readouterr().err
    assert main(["approvers", "link", "nobody", "x", *db]) == 2
    assert "no approver nobody" in capsys.readouterr().err
    assert main(["approvers", "link", "dora", "\u0430lice", *db]) == 2  # not a name any credential may carry
    assert main(["approvers", "unlink", "dora", "José Álvarez", *db]) == 0
    assert main(["approvers", "unlink", "dora", "José Álvarez", *db]) == 2
    events = [
        (r.event, r.arguments_json)
        for r in world.rows("SELECT event, arguments_json FROM audit_log WHERE tool = 'approvers' ORDER BY rid")
    ]
    assert [event for event, _ in events] == [
        "approver_added",
        "approver_linked",
        "approver_linked",
        "approver_unlinked",
    ]
    assert "dora@bank.example" in events[1][1]
    assert main(["audit", "verify", *db]) == 0
    with pytest.raises(ApproverError, match="no approver"):
        world.admin.unlink("nobody", "x")


def test_a_link_made_under_an_earlier_name_rule_can_be_undone(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """A link to `Bob  Smith` (two spaces, refused by the name rule now) made by an earlier release stays in the
    ledger: the administrator can still unlink it, while a new link to that name is refused, naming the rule."""
    db = ["--db", world.settings.db_url]
    assert main(["approvers", "add", "dora", *db]) == 0
    world.db.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO desk_approver_principals (approver, principal, linked_by, linked_at)"
                " VALUES ('dora', 'Bob  Smith', 'admin', 0)"
            )
        )
    )
    capsys.readouterr()
    assert main(["approvers", "link", "dora", "Bob  Hope", *db]) == 2
    assert "two in a row" in capsys.readouterr().err
    assert main(["approvers", "unlink", "dora", "Bob  Smith", *db]) == 0, capsys.readouterr().err
    assert world.rows("SELECT principal FROM desk_approver_principals WHERE approver = 'dora'") == []


async def test_a_link_removed_behind_the_desks_back_is_found_by_audit_verify(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone with the database deletes erin's link, she approves her own request, the row goes back: the desk
    saw no link, but the audit log's signed link records say she acted as the requester then."""
    before = world.pending("20.00", principal="erin.k")
    assert (await erin.decide(before.ref, "approved", passkey)).status_code == 200, "decided before any link"
    world.admin.link("erin", "erin.k")
    own = world.pending("30.00", principal="erin.k")
    world.sql("DELETE FROM desk_approver_principals WHERE approver = 'erin'")
    assert (await erin.decide(own.ref, "approved", passkey)).status_code == 200

    assert main(["audit", "verify", "--db", world.settings.db_url]) == 1
    out = capsys.readouterr().out
    assert f"desk decision on {own.ref} by erin: erin.k, who requested it, is a principal erin acts as" in out
    assert "erin's links differ from their audit records: erin.k missing (deleted)" in out
    assert before.ref not in out, "a decision made before the link is not hers to regret"

    world.sql(
        "INSERT INTO desk_approver_principals (approver, principal, linked_by, linked_at) VALUES ('erin', 'erin.k',"
        " 'admin', 0)"
    )
    assert main(["audit", "verify", "--db", world.settings.db_url]) == 1
    out = capsys.readouterr().out
    assert own.ref in out and "links differ" not in out, "the row put back hides nothing"
    world.sql("INSERT INTO desk_approver_principals VALUES ('erin', 'mallory', 'admin', 0)")
    assert main(["audit", "verify", "--db", world.settings.db_url]) == 1
    assert "erin's links differ from their audit records: mallory not linked (inserted)" in capsys.readouterr().out


async def test_a_link_at_the_same_instant_as_an_earlier_decision_is_not_reported(
    world: World,
    erin: DeskBrowser,
    passkey: SoftPasskey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """erin decides, then the administrator links her, on a clock that has not moved (a coarse clock does this):
    the link waited for her decision (`ApproverAdmin.link`), so it came after it and nothing is broken."""
    instant = time.time()
    monkeypatch.setattr(decisions, "time", SimpleNamespace(time=lambda: instant))
    monkeypatch.setattr(approvers, "time", SimpleNamespace(time=lambda: instant))
    approval = world.pending("20.00", principal="erin.k")
    assert (await erin.decide(approval.ref, "approved", passkey)).status_code == 200
    world.admin.link("erin", "erin.k")

    assert main(["audit", "verify", "--db", world.settings.db_url]) == 0, capsys.readouterr().out


async def test_audit_verify_prints_an_edited_approver_name_escaped(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit verify reports what someone with the database did; the names it prints come from that database, so
    an approver name edited to carry a terminal escape is printed as its escape, not sent to the terminal."""
    approval = world.pending("20.00", principal="erin.k")
    world.admin.link("erin", "erin.k")
    world.sql("DELETE FROM desk_approver_principals WHERE approver = 'erin'")
    assert (await erin.decide(approval.ref, "approved", passkey)).status_code == 200
    forged = "erin\x1b[2J\x1b[32mall clear"
    world.sql(
        "INSERT INTO desk_approvers (name, role, status, user_handle, added_by, added_at)"
        " VALUES (:n, 'approver', 'active', 'h', 'admin', 0)",
        n=forged,
    )
    world.sql("UPDATE desk_decisions SET approver = :n", n=forged)

    assert main(["audit", "verify", "--db", world.settings.db_url]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "erin\\x1b[2J" in out, out
