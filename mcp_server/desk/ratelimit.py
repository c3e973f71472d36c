"""Sign-in failures per client address and per approver, counted in the database (shared by replicas).

An attempt counts as a failure from before it is judged (`attempt`, in its scopes' turns) until it succeeds
(`succeeded`): counted only after the verdict, attempts sent together would all pass the count before any
of them was recorded, and a script holding many challenges could try as many as it held at once.
"""

import time
from collections.abc import Iterable

from sqlalchemy import Connection, text

from mcp_server.desk.refusals import DeskRefusal
from mcp_server.storage.locks import Space, take_turn

MAX_FAILURES = 5
WINDOW = 60.0
_STEP = 1e-6
"""How far an attempt's stamp is put past its scopes' latest, so that it names the attempt's rows alone."""


def check(conn: Connection, scopes: Iterable[str]) -> None:
    """Refuse (429) when any scope had `MAX_FAILURES` failures within the last `WINDOW` seconds."""
    _counted(conn, scopes, time.time())


def attempt(conn: Connection, scopes: Iterable[str]) -> float:
    """Count one failure in each scope now, before the attempt is judged, unless one is at `MAX_FAILURES` (429,
    nothing written); returns the attempt's stamp for `succeeded`. In the scopes' turns, so attempts at once
    (PostgreSQL; SQLite's write lock is every turn) cannot together pass the limit. The stamp is past every
    failure its scopes hold, so it names this attempt's rows alone."""
    now, named = time.time(), sorted(set(scopes))
    for scope in named:  # in one order: two attempts sharing scopes never wait on each other's
        take_turn(conn, Space.SIGN_IN_SCOPE, scope)
    conn.execute(text("DELETE FROM desk_failures WHERE at < :old"), {"old": now - WINDOW})
    stamp = max(now, _counted(conn, named, now) + _STEP)
    for scope in named:
        conn.execute(text("INSERT INTO desk_failures (scope, at) VALUES (:s, :at)"), {"s": scope, "at": stamp})
    return stamp


def succeeded(conn: Connection, scopes: Iterable[str], stamp: float) -> None:
    """The attempt `stamp` names signed in: it is no failure."""
    for scope in set(scopes):
        conn.execute(text("DELETE FROM desk_failures WHERE scope = :s AND at = :at"), {"s": scope, "at": stamp})


def _counted(conn: Connection, scopes: Iterable[str], now: float) -> float:
    """The latest failure of `scopes` within the window (0 if none); refused (429) if any has `MAX_FAILURES`."""
    latest = 0.0
    for scope in scopes:
        count, last = conn.execute(
            text("SELECT COUNT(*), MAX(at) FROM desk_failures WHERE scope = :s AND at > :since"),
            {"s": scope, "since": now - WINDOW},
        ).one()
        if int(count) >= MAX_FAILURES:
            raise DeskRefusal("rate_limited", "Too many failed sign-ins; wait a minute before trying again.", 429)
        latest = max(latest, float(last or 0.0))
    return latest
