"""Turns (`storage.locks`): on PostgreSQL, an advisory lock per space, ledger schema and name. A turn keeps
apart the transactions of one ledger that name it, and nothing else: not another space's turn of the same
name, and not a ledger in another schema of the same database (advisory locks span the database)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import pytest
from sqlalchemy import Connection

from mcp_server.storage import loop_connection
from mcp_server.storage.database import Database, WouldWait
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from tests.ledger.helpers import when_ready

ROUND_TRIP = Statement("SELECT 1")
"""Sent after a turn, so the turn (queued for the next round trip) is taken before the work returns."""


def takes(space: Space, name: str) -> Callable[[Connection], bool]:
    def work(conn: Connection) -> bool:
        take_turn(conn, space, name)
        ROUND_TRIP.one(conn)
        return True

    return work


def test_a_turn_holds_only_its_own_ledger_and_space(
    backend: str, make_database_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("turns are PostgreSQL advisory locks (SQLite writers take the whole file)")
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
    here, elsewhere = Database.open(make_database_url()), Database.open(make_database_url())
    holding, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        take_turn(conn, Space.PRINCIPAL, "alice")
        ROUND_TRIP.one(conn)
        holding.set()
        release.wait(10)

    holder = threading.Thread(target=here.run, args=(hold,))
    try:
        for db in (here, elsewhere):  # `wait=False` runs on the loop's connection, opened in the background
            when_ready(partial(db.read, lambda conn: 1, wait=False))
        holder.start()
        assert holding.wait(10)
        with pytest.raises(WouldWait):  # the same ledger, space and name: held
            here.run(takes(Space.PRINCIPAL, "alice"), wait=False)
        assert here.run(takes(Space.IDEMPOTENCY_KEY, "alice"), wait=False)
        assert elsewhere.run(takes(Space.PRINCIPAL, "alice"), wait=False)
        release.set()
        holder.join(10)
        assert here.run(takes(Space.PRINCIPAL, "alice"), wait=False)  # released with the holder's transaction
    finally:
        release.set()
        holder.join(10)
        here.close()
        elsewhere.close()
