"""A read sees each statement's own committed state on both backends, unless it asks for one snapshot
(`Database.read(snapshot=True)`), as `audit verify` and the audit sequencer's plan do."""

import pytest
from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database

COUNT = text("SELECT COUNT(*) FROM transactions")


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_snapshot_read_does_not_see_what_commits_between_its_statements(database_url: str, snapshot: bool) -> None:
    db, other = Database.open(database_url), Database.open(database_url)
    ledger = Ledger(other)
    account = ledger.create_account("Ada").id

    def read(conn: Connection) -> tuple[int, int]:
        before = int(conn.execute(COUNT).scalar_one())
        ledger.deposit(account, "1")  # commits on another connection meanwhile
        return before, int(conn.execute(COUNT).scalar_one())

    try:
        before, after = db.read(read, snapshot=snapshot)
        assert after == (before if snapshot else before + 1)
    finally:
        db.close()
        other.close()
