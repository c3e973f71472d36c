"""Server nonces of WebAuthn ceremonies: each is issued for one purpose, expires, and is used once."""

import time
from typing import Any

from sqlalchemy import Connection, Row, text

from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import b64url, storable

CHALLENGE_TTL = 120.0
_COLUMNS = "nonce, purpose, subject, approval_ref, verdict, binding, question_sha256, challenge, expires_at"


def issue(conn: Connection, nonce: str, purpose: str, challenge: bytes, expires_at: float, **fields: Any) -> None:
    """Store the challenge `nonce` stands for, with what it was issued for (`subject`, `approval_ref`, ...)."""
    conn.execute(text("DELETE FROM desk_challenges WHERE expires_at < :old"), {"old": time.time() - CHALLENGE_TTL})
    names = ["nonce", "purpose", "challenge", "expires_at", *fields]
    conn.execute(
        text(f"INSERT INTO desk_challenges ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"),
        {"nonce": nonce, "purpose": purpose, "challenge": b64url(challenge), "expires_at": expires_at, **fields},
    )


def consume(conn: Connection, nonce: object, purpose: str) -> Row[Any]:
    """Mark the nonce used and return its row; refused if unknown, for another purpose, used or expired.

    Run in a transaction of its own, before the ceremony is verified: a nonce counts once whatever
    the outcome, so a refused signature (wrong approval, stale question) cannot be presented again."""
    if not isinstance(nonce, str) or not nonce:
        raise DeskRefusal("bad_request", "The request names no challenge; reload the page and try again.")
    query = text(f"SELECT {_COLUMNS}, used_at FROM desk_challenges WHERE nonce = :n")
    row = conn.execute(query, {"n": nonce}).first() if storable(nonce) else None
    if row is None or row.purpose != purpose:
        raise DeskRefusal("unknown_challenge", "This signature answers no challenge the desk issued here.", 403)
    if row.used_at is not None:
        raise _used()
    if float(row.expires_at) <= time.time():
        raise DeskRefusal("challenge_expired", "The challenge expired before it was signed; try again.", 409)
    # Used only if still unused: two requests that both read it unused (PostgreSQL, READ COMMITTED) cannot both use it.
    used = conn.execute(
        text("UPDATE desk_challenges SET used_at = :t WHERE nonce = :n AND used_at IS NULL"),
        {"n": nonce, "t": time.time()},
    ).rowcount
    if used != 1:
        raise _used()
    return row


def _used() -> DeskRefusal:
    return DeskRefusal("challenge_used", "This challenge was already used; a signature counts once.", 409)
