"""Decisions at the desk: the challenge for one, recording it exactly once, and reading it back.

Phase-2 interface: the gate reads the row `decision_for` reads (both with `gate_store.DESK_DECISION`)
inside the transaction that settles approval `ref` (after locking it) and, if a `DeskDecision` is there,
settles the approval with its verdict (a form's later yes does not undo its rejection), having checked
`decision.binding == approval.binding` and `decision.question_sha256 == question_sha256(approval.question)`.
The desk never executes anything and never changes the `approvals` row.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, text

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk import challenges
from mcp_server.desk.approvers import own_principals
from mcp_server.desk.config import DeskConfig
from mcp_server.desk.inbox import pending
from mcp_server.desk.linking import VERDICTS, ChallengeInputs, question_sha256
from mcp_server.desk.passkeys import authentication_options, check_assertion, credential, update_sign_count
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import new_token
from mcp_server.ledger.free_text import invisible
from mcp_server.storage.gate_store import DESK_DECISION
from policy.canonical import canonical_json
from policy.question import requested_confirmation
from policy.store import APPROVER_PREFIX, Approval, AuditEntry

NOTE_LIMIT = 500
AUDIT_EVENTS = {"approved": "desk_approved", "rejected": "desk_rejected"}
"""The audit events of desk decisions (the gate's own `approved`/`rejected` follow when it consumes them)."""


@dataclass(frozen=True)
class DeskDecision:
    """A signed decision on one approval, as recorded at the desk."""

    approval_ref: str
    approver: str
    verdict: str
    """'approved' or 'rejected'."""
    note: str | None
    decided_at: float
    binding: str
    """The approval's binding digest the signature committed to."""
    question_sha256: str
    """`linking.question_sha256` of the question the approver saw and signed."""

    @property
    def approved(self) -> bool:
        return self.verdict == "approved"


def decision_for(conn: Connection, ref: str) -> DeskDecision | None:
    """The desk's decision on approval `ref`, if an approver has signed one."""
    row = DESK_DECISION.one(conn, {"v": ref})
    return None if row is None else DeskDecision(row[0], row[1], row[2], row[3], float(row[4]), row[5], row[6])


def history(conn: Connection, approver: str, limit: int = 100) -> list[tuple[DeskDecision, str, str, str]]:
    """The approver's own decisions, newest first, each with the approval's tool, requester and current status."""
    rows = conn.execute(
        text(
            "SELECT d.approval_ref, d.approver, d.verdict, d.note, d.decided_at, d.binding, d.question_sha256,"
            " a.tool, a.principal, a.status FROM desk_decisions d JOIN approvals a ON a.ref = d.approval_ref"
            " WHERE d.approver = :a ORDER BY d.decided_at DESC LIMIT :n"
        ),
        {"a": approver, "n": limit},
    ).all()
    return [(DeskDecision(r[0], r[1], r[2], r[3], float(r[4]), r[5], r[6]), r[7], r[8], r[9]) for r in rows]


def _verdict(value: object) -> str:
    if isinstance(value, str) and value in VERDICTS:
        return value
    raise DeskRefusal("bad_request", "The verdict must be 'approved' or 'rejected'.")


def decision_challenge(
    conn: Connection, config: DeskConfig, approver: str, ref: str, verdict: object, shown: object
) -> dict[str, Any]:
    """Issue the challenge for `approver` to sign `verdict` on approval `ref` (pending, undecided, not their
    own request), as `shown`: the question digest and binding of the page they read (`shown_on_page`)."""
    approval = _open_approval(conn, ref)
    _not_own(conn, approver, approval)
    current = shown_on_page(approval)
    if not isinstance(shown, str) or not shown:
        raise DeskRefusal("bad_request", "The request does not say which question you read; reload the page.")
    if shown != current:
        raise DeskRefusal("approval_changed", "The approval changed after it was shown to you; nothing was "
                          "signed. Reload the page and read it again.", 409)  # fmt: skip
    inputs = ChallengeInputs(
        approval_ref=approval.ref,
        binding=approval.binding,
        question_sha256=question_sha256(approval.question),
        verdict=_verdict(verdict),
        nonce=new_token(),
        nonce_expires_at=int(time.time() + challenges.CHALLENGE_TTL),
    )
    challenges.issue(
        conn,
        inputs.nonce,
        "decide",
        inputs.challenge(),
        inputs.nonce_expires_at,
        subject=approver,
        approval_ref=inputs.approval_ref,
        verdict=inputs.verdict,
        binding=inputs.binding,
        question_sha256=inputs.question_sha256,
    )
    keys = [
        str(r[0])
        for r in conn.execute(text("SELECT credential_id FROM desk_credentials WHERE approver = :a"), {"a": approver})
    ]
    return {"nonce": inputs.nonce, "options": authentication_options(config, inputs.challenge(), keys)}


def shown_on_page(approval: Approval) -> str:
    """What a decision page shows, as the page sends it back with its challenge request: the question's digest
    and the binding. The passkey signs the approval as it is when the challenge is issued, which the person
    cannot see in the passkey prompt; a page read before an edit behind the desk's back must not sign it."""
    return f"{question_sha256(approval.question)}:{approval.binding}"


def decide(
    conn: Connection,
    config: DeskConfig,
    audit: AuditWriter,
    approver: str,
    ref: str,
    body: Mapping[str, Any],
    issued: Row[Any],
) -> DeskDecision:
    """Verify the signed decision answering the `issued` challenge (already used up, see
    `challenges.consume`) and record it once, with its audit record carrying the assertion.

    The challenge is recomputed from the approval as it is now, so a question or binding changed
    since the challenge was issued is refused (and would fail the signature anyway).
    """
    verdict = _verdict(body.get("verdict"))
    note = parse_note(body.get("note"))
    if issued.approval_ref != ref:
        raise DeskRefusal("wrong_approval", "This signature was made for another approval; nothing was recorded.", 403)
    if issued.subject != approver or issued.verdict != verdict:
        raise DeskRefusal("wrong_challenge", "This signature was made for another decision; nothing was recorded.", 403)
    approval = _open_approval(conn, ref)
    shown = question_sha256(approval.question)
    if approval.binding != issued.binding or shown != issued.question_sha256:
        raise DeskRefusal("approval_changed", "The approval changed after it was shown to you; nothing was "
                          "recorded. Reload the page and read it again.", 409)  # fmt: skip
    confirm = requested_confirmation(approval.question)
    if verdict == "approved" and confirm is not None and body.get("confirmation") != confirm:
        raise DeskRefusal("confirmation_mismatch", f"To approve, type {confirm} in the confirmation field.")
    inputs = ChallengeInputs(ref, approval.binding, shown, verdict, issued.nonce, int(issued.expires_at))
    assertion = body.get("credential")
    key = credential(conn, assertion)
    if key.approver != approver or not key.active:
        raise DeskRefusal("unknown_passkey", "This passkey is not one of yours.", 403)
    count = check_assertion(assertion, key, inputs.challenge(), rp_id=config.rp_id, origin=config.origin)
    if not _still_active(conn, approver):
        raise DeskRefusal("approver_revoked", "This approver's access was revoked; nothing was recorded.", 403)
    _not_own(conn, approver, approval)  # read after the approver's row is held: a link committed meanwhile stops it
    now = time.time()
    if approval.over(now):  # read at the start: the signature's check and the row's wait took it past
        raise DeskRefusal("approval_expired", f"Approval {ref} expired before your decision was recorded; "
                          "nothing was recorded.", 409)  # fmt: skip
    update_sign_count(conn, key, count)
    inserted = conn.execute(
        text(
            "INSERT INTO desk_decisions (approval_ref, approver, verdict, note, decided_at, binding, question_sha256,"
            " nonce, nonce_expires_at, credential_id, rp_id, origin, assertion_json) VALUES (:ref, :approver,"
            " :verdict, :note, :at, :binding, :q, :nonce, :exp, :cred, :rp, :origin, :assertion)"
            " ON CONFLICT (approval_ref) DO NOTHING"
        ),
        {
            "ref": ref,
            "approver": approver,
            "verdict": verdict,
            "note": note,
            "at": now,
            "binding": approval.binding,
            "q": shown,
            "nonce": inputs.nonce,
            "exp": inputs.nonce_expires_at,
            "cred": key.credential_id,
            "rp": config.rp_id,
            "origin": config.origin,
            "assertion": canonical_json(assertion),
        },
    ).rowcount
    if inserted != 1:
        raise DeskRefusal("already_decided", "This approval was already decided at the desk.", 409)
    audit.append(conn, [decision_audit(approval.tool, approval.arguments, approval.policy_version, inputs, approver,
                                       note, now, key.credential_id, assertion)])  # fmt: skip
    return DeskDecision(ref, approver, verdict, note, now, approval.binding, shown)


def decision_audit(
    tool: str,
    arguments: Mapping[str, Any],
    policy_version: str,
    inputs: ChallengeInputs,
    approver: str,
    note: str | None,
    at: float,
    credential_id: str,
    assertion: object,
) -> AuditEntry:
    """The audit record of a desk decision: what was signed, by which passkey, and the assertion itself."""
    return AuditEntry(
        at=at,
        event=AUDIT_EVENTS[inputs.verdict],
        principal=APPROVER_PREFIX + approver,
        tool=tool,
        arguments=arguments,
        policy_version=policy_version,
        reason="signed with a passkey at the approval desk",
        approval_ref=inputs.approval_ref,
        question_sha256=inputs.question_sha256,
        note=note,
        result={
            "status": inputs.verdict,
            "details": {"challenge": inputs.encoding(), "credential_id": credential_id, "assertion": assertion},
        },
    )


def parse_note(value: object) -> str | None:
    """The approver's note, or None. It is shown to others (the history, `approvals show`, the audit log), so each
    of its lines is held to the rule memos are (`free_text.invisible`): no bidi override may reverse an account
    number in it, no invisible character hide a word. Checked before the signed challenge is used up, too
    (`web.Desk.decide`), so a refused note changes nothing."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > NOTE_LIMIT:
        raise DeskRefusal(
            "bad_note", f"The note must be text of at most {NOTE_LIMIT} characters; nothing was recorded."
        )
    lines = value.split("\n")  # what the page's text box gives for a line break
    for number, line in enumerate(lines, 1):
        problem = invisible(line)
        if problem is not None:
            where = f"Line {number} of the note" if len(lines) > 1 else "The note"
            raise DeskRefusal("bad_note", f"{where} {problem} Nothing was recorded.")
    return value


def _still_active(conn: Connection, approver: str) -> bool:
    """Whether `approver` is active, read again just before the decision is written and, on PostgreSQL,
    held so (FOR SHARE) until it commits: a revocation committed meanwhile (READ COMMITTED) stops the
    decision, and one still to come waits for it. `credential`'s earlier read alone let a revoked
    approver's decision be recorded after the revocation."""
    suffix = " FOR SHARE" if conn.dialect.name == "postgresql" else ""
    row = conn.execute(text("SELECT status FROM desk_approvers WHERE name = :a" + suffix), {"a": approver}).first()
    return row is not None and row[0] == "active"


def _not_own(conn: Connection, approver: str, approval: Approval) -> None:
    """Refuse `approver` a decision on a request of a principal they act as (four eyes)."""
    if approval.principal in own_principals(conn, approver):
        raise DeskRefusal(
            "own_request",
            f"Approval {approval.ref} was requested by {approval.principal}, a principal you act as; another "
            "approver must decide it. Nothing was recorded.",
            403,
        )


def _open_approval(conn: Connection, ref: str) -> Approval:
    """Approval `ref`, locked, if it is still pending, unexpired and undecided at the desk; else refused."""
    approval = pending(conn, ref, lock=True)
    if decision_for(conn, ref) is not None:
        raise DeskRefusal("already_decided", "This approval was already decided at the desk.", 409)
    return approval
