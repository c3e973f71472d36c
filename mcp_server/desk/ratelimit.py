"""Sign-in failures per client address and per approver, counted in the database (shared by replicas)."""

import time
from collections.abc import Iterable

from sqlalchemy import Connection, text

from mcp_server.desk.refusals import DeskRefusal

MAX_FAILURES = 5
WINDOW = 60.0


def check(conn: Connection, scopes: Iterable[str]) -> None:
    """Refuse (429) when any scope had `MAX_FAILURES` failures within the last `WINDOW` seconds."""
    since = time.time() - WINDOW
    for scope in scopes:
        count = conn.execute(
            text("SELECT COUNT(*) FROM desk_failures WHERE scope = :s AND at > :since"), {"s": scope, "since": since}
        ).scalar_one()
        if int(count) >= MAX_FAILURES:
            raise DeskRefusal("rate_limited", "Too many failed sign-ins; wait a minute before trying again.", 429)


def record(conn: Connection, scopes: Iterable[str]) -> None:
    now = time.time()
    conn.execute(text("DELETE FROM desk_failures WHERE at < :old"), {"old": now - WINDOW})
    for scope in scopes:
        conn.execute(text("INSERT INTO desk_failures (scope, at) VALUES (:s, :at)"), {"s": scope, "at": now})
