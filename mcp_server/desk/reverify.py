"""Offline re-verification of every desk decision, for `bankgate-mcp audit verify`.

Each stored assertion is verified again (py_webauthn) against the registered public key and a
challenge recomputed from the approval as stored now (its ref, binding and question) and the
decision's verdict and nonce; and each decision must match the audit record that carried it.
So an edited question, binding, verdict, nonce, assertion or public key is reported, as is a
decision deleted from either place.
"""

import json
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.desk.decisions import AUDIT_EVENTS
from mcp_server.desk.linking import ChallengeInputs, question_sha256
from mcp_server.desk.passkeys import Credential, check_assertion
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import from_b64url
from mcp_server.storage.database import Database
from policy.audit import Finding
from policy.canonical import canonical_json

_DECISIONS = (
    "SELECT d.approval_ref, d.approver, d.verdict, d.nonce, d.nonce_expires_at, d.credential_id, d.rp_id, d.origin,"
    " d.assertion_json, a.binding, a.question, c.approver AS key_owner, c.public_key FROM desk_decisions d"
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
    for seq, ref, event, result_json in conn.execute(
        text("SELECT seq, approval_ref, event, result_json FROM audit_log WHERE event IN (:a, :r)"),
        {"a": events[0], "r": events[1]},
    ):
        audited[str(ref)] = {"seq": None if seq is None else int(seq), "event": event, "result": _json(result_json)}
    findings: list[Finding] = []
    for row in conn.execute(text(_DECISIONS)).all():
        ref, what = row.approval_ref, f"desk decision on {row.approval_ref} by {row.approver}"
        record = audited.pop(ref, None)
        assertion = _json(row.assertion_json)
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
            findings.append(Finding(None, f"{what}: its passkey {row.credential_id} is not registered to the approver"))
            continue
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
        Finding(record["seq"], f"desk decision on {ref} is in the audit log but not at the desk (deleted)")
        for ref, record in audited.items()
    ]
    return findings


def _json(value: str | None) -> Any:
    try:
        return json.loads(value or "null")
    except ValueError:
        return None
