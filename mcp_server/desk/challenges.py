"""Server nonces of WebAuthn ceremonies: each is issued for one purpose, expires, and is used once."""

import time
from typing import Any

from sqlalchemy import Connection, Row, text

from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import b64url, storable
from mcp_server.storage.locks import Space, take_turn

CHALLENGE_TTL = 120.0
MAX_OPEN_SIGN_INS = 10
"""Sign-in challenges one client address may hold open (unused, unexpired). Anyone may ask for one, and each
is a row: without a bound a script could grow the table, and every issue's clean-up, at will."""
_COLUMNS = "nonce, purpose, subject, approval_ref, verdict, binding, question_sha256, challenge, expires_at"


def issue(conn: Connection, nonce: str, purpose: str, challenge: bytes, expires_at: float, **fields: Any) -> None:
    """Store the challenge `nonce` stands for, with what it was issued for (`subject`, `approval_ref`, ...)."""
    conn.execute(text("DELETE FROM desk_challenges WHERE expires_at < :old"), {"old": time.time() - CHALLENGE_TTL})
    names = ["nonce", "purpose", "challenge", "expires_at", *fields]
    conn.execute(
        text(f"INSERT INTO desk_challenges ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"),
        {"nonce": nonce, "purpose": purpose, "challenge": b64url(challenge), "expires_at": expires_at, **fields},
    )


def issue_bounded(
    conn: Connection, nonce: str, purpose: str, challenge: bytes, expires_at: float, subject: str, limit: int
) -> None:
    """`issue` to `subject`, unless it holds `limit` open challenges of `purpose` already: refused (429), nothing
    written. Counted in the subject's turn, so requests at once (PostgreSQL) cannot together pass `limit`."""
    take_turn(conn, Space.CHALLENGE_SUBJECT, subject)
    held = conn.execute(
        text(
            "SELECT COUNT(*) FROM desk_challenges WHERE subject = :s AND purpose = :p AND used_at IS NULL"
            " AND expires_at > :now"
        ),
        {"s": subject, "p": purpose, "now": time.time()},
    ).scalar_one()
    if int(held) >= limit:
        raise DeskRefusal(
            "rate_limited", "Too many sign-ins started from this address; finish one or wait two minutes.", 429
        )
    issue(conn, nonce, purpose, challenge, expires_at, subject=subject)


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
