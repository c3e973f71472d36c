"""Approvers' passkeys and revocations as the audit log's signed records leave them, for `audit verify`.

The desk trusts `desk_credentials` and `desk_approvers` as they stand. Someone with the database could give an
approver a passkey of their own (a row inserted, or a public key swapped) or bring a revoked approver back, then
sign in and decide: every record the desk then writes is genuine and every signature verifies against the key
the table holds. The enrolment record carries the passkey's public key, and the revocation record its time, so
the table is held to them (as the link table is, `reverify._Links`).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.desk.approvers import AUDIT_TOOL, ENROLLED, REVOKED
from mcp_server.ledger.free_text import shown
from policy.audit import Finding


@dataclass(frozen=True)
class Enrolled:
    approver: str
    public_key: str
    """As `desk_credentials` stores it (base64url of the COSE key)."""


@dataclass
class Roster:
    passkeys: dict[str, Enrolled] = field(default_factory=dict)
    """Credential id → the approver and key its enrolment record names."""
    revoked: dict[str, str] = field(default_factory=dict)
    """Approver → when its revocation was recorded (the audit log's text form, which sorts as time does)."""

    def revoked_before(self, approver: str, at: str) -> bool:
        """Whether `approver` was revoked before a decision recorded `at`. The same instant counts as after: a
        revocation waits for a decision being recorded (`decisions._still_active`), and one first stops it."""
        revoked = self.revoked.get(approver)
        return revoked is not None and revoked < at

    def enrolled(self, credential_id: str, approver: str, public_key: str) -> bool:
        return self.passkeys.get(credential_id) == Enrolled(approver, public_key)


def roster(conn: Connection) -> Roster:
    found = Roster()
    for at, event, arguments_json in conn.execute(
        text("SELECT at, event, arguments_json FROM audit_log WHERE tool = :tool AND event IN (:e, :r) ORDER BY rid"),
        {"tool": AUDIT_TOOL, "e": ENROLLED, "r": REVOKED},
    ):
        arguments = stored_json(arguments_json)
        if not isinstance(arguments, dict):
            continue
        approver = str(arguments.get("approver"))
        if event == REVOKED:
            found.revoked.setdefault(approver, str(at))
        else:
            enrolled = Enrolled(approver, str(arguments.get("public_key")))
            found.passkeys[str(arguments.get("credential_id"))] = enrolled
    return found


def table_findings(conn: Connection, held: Roster) -> list[Finding]:
    """Passkeys and approvers whose rows are not what the signed enrolment and revocation records leave. A passkey
    deleted is not one: it signs nothing more, and one a decision names is held by a foreign key (`reverify`
    reports that decision if it goes all the same)."""
    findings = []
    stored = conn.execute(text("SELECT credential_id, approver, public_key FROM desk_credentials")).all()
    for credential_id, approver, public_key in stored:
        what = f"passkey {shown(credential_id)} of {shown(approver)}"
        if credential_id not in held.passkeys:
            findings.append(Finding(None, f"{what} has no enrolment record (inserted outside the desk)"))
        elif not held.enrolled(credential_id, approver, public_key):
            findings.append(Finding(None, f"{what} differs from its enrolment record (edited)"))
    for name, status in conn.execute(text("SELECT name, status FROM desk_approvers WHERE status <> 'revoked'")):
        if name in held.revoked:
            findings.append(Finding(None, f"approver {shown(name)} is {shown(status)} at the desk but was revoked "
                                    f"at {held.revoked[name]} (edited)"))  # fmt: skip
    return findings


def stored_json(value: str | None) -> Any:
    """A JSON column as stored: the database may have been edited, so text that is not JSON reads as None."""
    try:
        return json.loads(value or "null")
    except ValueError:
        return None
