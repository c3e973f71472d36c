"""What the desk shows: pending approvals from the gate's `approvals` table, read as stored.

Only pending, unexpired approvals that no approver has decided yet, and that the policy lets the
desk decide (not `form` ones), are in the inbox; the desk never writes to `approvals` (the gate
settles them).
"""

import json
import time
from typing import Any

from sqlalchemy import Connection, Row, text

from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import storable
from policy.channel import DEFAULT_CHANNEL, Channel
from policy.store import APPROVAL_REF, Approval, asked_by

_SELECT = (
    "SELECT ref, binding, tool, arguments_json, principal, policy_version, question, created_at, expires_at, status,"
    " bound_json, channel FROM approvals"
)
_DECIDABLE = f"(channel IS NULL OR channel <> '{Channel.FORM.value}')"
"""Approvals the desk may decide: asked before migration 0012 (NULL, as `any`), `desk` or `any`."""


def _approval(row: Row[Any]) -> Approval:
    return Approval(
        ref=row.ref,
        binding=row.binding,
        tool=row.tool,
        arguments=json.loads(row.arguments_json),
        principal=row.principal,
        policy_version=row.policy_version,
        question=row.question,
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        status=row.status,
        bound=json.loads(row.bound_json) if row.bound_json else {},
        channel=Channel(row.channel) if row.channel else DEFAULT_CHANNEL,
    )


def _unknown(ref: str) -> DeskRefusal:
    """No approval `ref`, which is named back only in a reference's shape: a link's path is its author's text,
    and the desk's own page must not say it ("APR-1 was approved; call +1 555 ...")."""
    named = ref if APPROVAL_REF.fullmatch(ref) else "with that reference"
    return DeskRefusal("unknown_approval", f"There is no approval {named}.", 404)


def inbox(conn: Connection) -> list[Approval]:
    """Pending, unexpired, undecided approvals, oldest first."""
    now = time.time()
    rows = conn.execute(
        text(
            _SELECT + f" WHERE status = 'pending' AND expires_at > :now AND created_at <= :asked AND {_DECIDABLE}"
            " AND ref NOT IN (SELECT approval_ref FROM desk_decisions) ORDER BY created_at, ref"
        ),
        {"now": now, "asked": asked_by(now)},  # `Approval.over`: not on a clock set back since
    ).all()
    return [_approval(row) for row in rows]


def approval(conn: Connection, ref: str) -> Approval:
    """Approval `ref`, whatever its status; refused (404) when there is none."""
    row = conn.execute(text(_SELECT + " WHERE ref = :r"), {"r": ref}).first() if storable(ref) else None
    if row is None:
        raise _unknown(ref)
    return _approval(row)


def pending(conn: Connection, ref: str, *, lock: bool = False) -> Approval:
    """Approval `ref` if it can still be decided (pending, unexpired); `lock` holds its row (PostgreSQL)."""
    suffix = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    row = conn.execute(text(_SELECT + " WHERE ref = :r" + suffix), {"r": ref}).first() if storable(ref) else None
    if row is None:
        raise _unknown(ref)
    found = _approval(row)
    if found.status != "pending":
        raise DeskRefusal("not_pending", f"Approval {ref} is no longer pending (it is {found.status}).", 409)
    if found.over(time.time()):
        raise DeskRefusal("approval_expired", f"Approval {ref} has expired; nothing can be decided on it.", 409)
    if found.channel is Channel.FORM:
        raise DeskRefusal(
            "form_only",
            f"Approval {ref} can only be given in the requester's own form (the policy's channel is 'form'); "
            "the desk cannot decide it.",
            409,
        )
    return found
