"""Turns (`storage.locks`): on PostgreSQL, an advisory lock per space, ledger schema and name. A turn keeps
apart the transactions of one ledger that name it, and nothing else: not another space's turn of the same
name, and not a ledger in another schema of the same database (advisory locks span the database)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from mcp_server.storage import loop_connection
from mcp_server.storage.database import Database, WouldWait
from mcp_server.storage.locks import Space
from tests.ledger.helpers import held_elsewhere, taking_turn, when_ready


def test_a_turn_holds_only_its_own_ledger_and_space(
    backend: str, make_database_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("turns are PostgreSQL advisory locks (SQLite writers take the whole file)")
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
    here, elsewhere = Database.open(make_database_url()), Database.open(make_database_url())
    try:
        for db in (here, elsewhere):  # `wait=False` runs on the loop's connection, opened in the background
            when_ready(partial(db.read, lambda conn: 1, wait=False))
        with held_elsewhere(here, taking_turn(Space.PRINCIPAL, "alice")):
            with pytest.raises(WouldWait):  # the same ledger, space and name: held
                here.run(taking_turn(Space.PRINCIPAL, "alice"), wait=False)
            assert here.run(taking_turn(Space.IDEMPOTENCY_KEY, "alice"), wait=False)
            assert elsewhere.run(taking_turn(Space.PRINCIPAL, "alice"), wait=False)
        assert here.run(taking_turn(Space.PRINCIPAL, "alice"), wait=False)  # released with the holder's transaction
    finally:
        here.close()
        elsewhere.close()
