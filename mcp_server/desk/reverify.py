"""Offline re-verification of every desk decision, for `bankgate-mcp audit verify`.

Each stored assertion is verified again (py_webauthn) against the registered public key and a
challenge recomputed from the approval as stored now (its ref, binding and question) and the
decision's verdict and nonce; and each decision must match the audit record that carried it.
So an edited question, binding, verdict, nonce, assertion or public key is reported, as is a
decision deleted from either place.

Four eyes are held to the audit log's signed link records (`approvers.LINKED`, `UNLINKED`), not to
the link table: a decision on a request of a principal its approver was linked to when it was signed
is reported (the link row deleted meanwhile, say), as is a link table that differs from those records.
Passkeys and revocations are held to their signed records likewise (`roster`): a decision signed with a
passkey its approver was never enrolled with, or after the approver's revocation, is reported.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.desk.approvers import AUDIT_TOOL, LINKED, UNLINKED
from mcp_server.desk.decisions import AUDIT_EVENTS
from mcp_server.desk.linking import ChallengeInputs, question_sha256
from mcp_server.desk.passkeys import Credential, check_assertion
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.roster import roster, stored_json, table_findings
from mcp_server.desk.tokens import from_b64url
from mcp_server.ledger.free_text import shown
from mcp_server.storage.database import Database
from mcp_server.timestamps import format_timestamp
from policy.audit import Finding
from policy.canonical import canonical_json

_DECISIONS = (
    "SELECT d.approval_ref, d.approver, d.verdict, d.nonce, d.nonce_expires_at, d.credential_id, d.rp_id, d.origin,"
    " d.assertion_json, d.decided_at, a.binding, a.question, a.principal AS requester, c.approver AS key_owner,"
    " c.public_key FROM desk_decisions d"
    " LEFT JOIN approvals a ON a.ref = d.approval_ref LEFT JOIN desk_credentials c ON c.credential_id = d.credential_id"
    " ORDER BY d.decided_at, d.approval_ref"
)


def reverify_decisions(db: Database) -> list[Finding]:
    """Findings about desk decisions ([] when every signature verifies and matches its audit record).

    One snapshot: a decision commits with its audit record, and read in two statements otherwise, one
    landing between them would be reported as having no record."""
    return db.read(_findings, snapshot=True)


def _findings(conn: Connection) -> list[Finding]:
    events = tuple(AUDIT_EVENTS.values())
    audited: dict[str, dict[str, Any]] = {}
    for seq, ref, event, result_json, at in conn.execute(
        text("SELECT seq, approval_ref, event, result_json, at FROM audit_log WHERE event IN (:a, :r)"),
        {"a": events[0], "r": events[1]},
    ):
        audited[str(ref)] = {
            "seq": None if seq is None else int(seq),
            "event": event,
            "result": stored_json(result_json),
            "at": str(at),
        }
    links, held = _links(conn), roster(conn)
    findings = _link_table_findings(conn, links) + table_findings(conn, held)
    for row in conn.execute(text(_DECISIONS)).all():
        # as stored: the database may have been edited, so what is printed is escaped
        ref, what = row.approval_ref, f"desk decision on {shown(row.approval_ref)} by {shown(row.approver)}"
        record = audited.pop(ref, None)
        signed_at = (
            record["at"] if record is not None else format_timestamp(datetime.fromtimestamp(row.decided_at, UTC))
        )
        if row.requester is not None and links.linked(row.approver, row.requester, signed_at):
            broken = f"{what}: {shown(row.requester)}, who requested it, is a principal {shown(row.approver)} acts as"
            findings.append(Finding(record["seq"] if record else None, broken + " (four eyes broken)"))
        if held.revoked_before(row.approver, signed_at):
            revoked = f"{what} was signed after {shown(row.approver)} was revoked (at {held.revoked[row.approver]})"
            findings.append(Finding(record["seq"] if record else None, revoked))
        assertion = stored_json(row.assertion_json)
        if record is None:
            findings.append(Finding(None, f"{what} has no audit record (inserted outside the desk)"))
        else:
            details = record["result"].get("details", {}) if isinstance(record["result"], dict) else {}
            if record["event"] != AUDIT_EVENTS.get(row.verdict) or canonical_json(details.get("assertion")) != (
                canonical_json(assertion)
            ):
                findings.append(Finding(record["seq"], f"{what} differs from its audit record (edited)"))
        if row.binding is None:
            findings.append(Finding(None, f"{what}: the approval it decided is missing (deleted)"))
            continue
        if row.public_key is None or row.key_owner != row.approver:
            findings.append(
                Finding(None, f"{what}: its passkey {shown(row.credential_id)} is not registered to the approver")
            )
            continue
        if not held.enrolled(row.credential_id, row.approver, row.public_key):
            unenrolled = f"its passkey {shown(row.credential_id)} is not the one {shown(row.approver)} enrolled"
            findings.append(Finding(None, f"{what}: {unenrolled} (inserted or edited behind the desk)"))
        inputs = ChallengeInputs(
            ref, row.binding, question_sha256(row.question), row.verdict, row.nonce, int(row.nonce_expires_at)
        )
        key = Credential(row.credential_id, row.key_owner, from_b64url(row.public_key), 0, True)
        try:
            check_assertion(assertion, key, inputs.challenge(), rp_id=row.rp_id, origin=row.origin, counted=False)
        except DeskRefusal:
            findings.append(Finding(None, f"{what}: the passkey signature does not verify over the approval as "
                                    "stored (question, binding, verdict or key edited)"))  # fmt: skip
    findings += [
        Finding(record["seq"], f"desk decision on {shown(ref)} is in the audit log but not at the desk (deleted)")
        for ref, record in audited.items()
    ]
    return findings


class _Links:
    """Who acted as whom when, by the audit log's link records: per (approver, principal), the times it was
    linked and unlinked, in order."""

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], list[tuple[str, bool]]] = {}
        """Times in the audit log's text form (`mcp_server.timestamps`), which sorts as time does."""

    def linked(self, approver: str, principal: str, at: str) -> bool:
        """Whether `approver` acted as `principal` when a decision was signed `at`. A change at that same instant
        (a coarse or unmoved clock) is taken in the order the desk enforces: a link waits for a decision being
        recorded, and a decision for an unlink, so a link then came after the decision and an unlink before."""
        state = False
        for when, linked in self.changes.get((approver, principal), []):
            if when > at or (when == at and linked):
                break
            state = linked
        return state

    def now(self) -> dict[str, set[str]]:
        """Each approver's principals as the records leave them."""
        current: dict[str, set[str]] = {}
        for (approver, principal), changes in self.changes.items():
            if changes[-1][1]:
                current.setdefault(approver, set()).add(principal)
        return current


def _links(conn: Connection) -> _Links:
    links = _Links()
    for at, event, arguments_json in conn.execute(
        text(
            "SELECT at, event, arguments_json FROM audit_log WHERE tool = :tool AND event IN (:linked, :unlinked)"
            " ORDER BY at, rid"
        ),
        {"tool": AUDIT_TOOL, "linked": LINKED, "unlinked": UNLINKED},
    ):
        arguments = stored_json(arguments_json)
        if isinstance(arguments, dict):
            key = (str(arguments.get("approver")), str(arguments.get("principal")))
            links.changes.setdefault(key, []).append((str(at), event == LINKED))
    return links


def _link_table_findings(conn: Connection, links: _Links) -> list[Finding]:
    """Approvers whose rows in the link table are not what the signed link records leave."""
    table: dict[str, set[str]] = {}
    for approver, principal in conn.execute(text("SELECT approver, principal FROM desk_approver_principals")):
        table.setdefault(approver, set()).add(principal)
    recorded = links.now()
    findings = []
    for approver in sorted(set(table) | set(recorded)):
        missing = sorted(recorded.get(approver, set()) - table.get(approver, set()))
        extra = sorted(table.get(approver, set()) - recorded.get(approver, set()))
        if missing or extra:
            what = [f"{shown(p)} missing (deleted)" for p in missing] + [
                f"{shown(p)} not linked (inserted)" for p in extra
            ]
            findings.append(
                Finding(None, f"{shown(approver)}'s links differ from their audit records: {', '.join(what)}")
            )
    return findings
