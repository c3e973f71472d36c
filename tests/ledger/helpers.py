"""Ledger test helpers: a standard book, the customers' total (the fingerprint `snapshot` is in tests.support),
waiting for the event loop's PostgreSQL connection, a lock held by another transaction, and a query's plan."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database, WouldWait
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from tests.support import ledger_close

ROUND_TRIP = Statement("SELECT 1")
"""Sent after a turn, so the turn (queued for the next round trip on PostgreSQL) is taken by then."""


def standard_book(ledger: Ledger) -> None:
    """Demo accounts (ACC-001 $5,000, ACC-002 $250, ACC-003 $120), ACC-004 in EUR with €50,
    and ACC-005 closed."""
    ledger.seed_demo()
    ledger.create_account("Eve Euro", "EUR", "ACC-004")
    ledger.deposit("ACC-004", "50.00")
    ledger.create_account("Zed Closed", "USD", "ACC-005")
    ledger_close(ledger, "ACC-005")


def customer_total(db: Database) -> int:
    return int(
        db.read(
            lambda conn: conn.execute(
                text("SELECT COALESCE(SUM(balance_minor), 0) FROM accounts WHERE kind = 'customer'")
            ).scalar_one()
        )
    )


def when_ready(work: Callable[[], Any], bound: float = 10.0) -> Any:
    """`work` once the loop's connection, opening in the background, is ready (`WouldWait` until then)."""
    deadline = time.monotonic() + bound
    while True:
        try:
            return work()
        except WouldWait:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def taking_turn(space: Space, name: str) -> Callable[[Connection], bool]:
    """Work that takes `name`'s turn in `space` (and is sure to have it when it returns)."""

    def work(conn: Connection) -> bool:
        take_turn(conn, space, name)
        ROUND_TRIP.one(conn)
        return True

    return work


@contextmanager
def held_elsewhere(db: Database, take: Callable[[Connection], object]) -> Iterator[None]:
    """While the block runs, what `take` locks stays locked by a transaction of `db` on another thread."""
    holding, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        take(conn)
        holding.set()
        release.wait(10)

    holder = threading.Thread(target=db.run, args=(hold,))
    holder.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        holder.join(10)


def plan(conn: Connection, sql: str, params: Mapping[str, object]) -> str:
    """The plan the database would run `sql` with; PostgreSQL told to read a table whole only as a last resort
    (its tables here are tiny, where reading them whole is cheapest). In a transaction (`SET LOCAL`)."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("SELECT 1 FROM sqlite_master"))  # EXPLAIN alone plans on the schema the connection last read
        return "\n".join(str(row[-1]) for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params))
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(str(row[0]) for row in conn.execute(text("EXPLAIN " + sql), params))
