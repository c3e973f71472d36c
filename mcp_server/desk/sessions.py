"""Signed-in approvers: a random cookie whose SHA-256 is the session row, and a CSRF token derived from it.

The CSRF token is derived from the cookie (never stored): a page embeds it, and a cross-site
form cannot know it because it cannot read the cookie. Before sign-in, a separate random
`pre` cookie plays the same part for the enrollment and sign-in forms.
"""

import hashlib
import time

from sqlalchemy import Connection, text

from mcp_server.desk.tokens import new_token, token_hash
from policy.store import CLOCK_TOLERANCE

SESSION_TTL = 30 * 60.0
SESSION_COOKIE = "bankgate_desk"
PRE_COOKIE = "bankgate_desk_pre"


def csrf_token(cookie: str) -> str:
    return hashlib.sha256(f"bankgate desk csrf\n{cookie}".encode()).hexdigest()


def open_session(conn: Connection, approver: str) -> str:
    now = time.time()
    token = new_token()
    conn.execute(text("DELETE FROM desk_sessions WHERE expires_at < :now"), {"now": now})
    conn.execute(
        text("INSERT INTO desk_sessions (token_sha256, approver, created_at, expires_at) VALUES (:t, :a, :now, :e)"),
        {"t": token_hash(token), "a": approver, "now": now, "e": now + SESSION_TTL},
    )
    return token


def session_approver(conn: Connection, token: str) -> str | None:
    """The active approver a live session belongs to (None: expired, signed out, or approver revoked). A session
    opened more than `CLOCK_TOLERANCE` after now, by this clock, was opened on a clock set back since (or another
    replica's, running ahead): it would last as much longer as that clock was off, so it is over."""
    now = time.time()
    row = conn.execute(
        text(
            "SELECT s.approver FROM desk_sessions s JOIN desk_approvers a ON a.name = s.approver"
            " WHERE s.token_sha256 = :t AND s.expires_at > :now AND s.created_at <= :opened AND a.status = 'active'"
        ),
        {"t": token_hash(token), "now": now, "opened": now + CLOCK_TOLERANCE},
    ).first()
    return None if row is None else str(row[0])


def close_session(conn: Connection, token: str) -> None:
    conn.execute(text("DELETE FROM desk_sessions WHERE token_sha256 = :t"), {"t": token_hash(token)})
