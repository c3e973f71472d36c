"""`audit verify` reads the chain, the heads and the ledger in one snapshot (`Database.read(snapshot=True)`),
while other PostgreSQL reads run without a transaction and see each statement's own committed state."""

import pytest
from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from tests.support import postgres_schema

pytestmark = pytest.mark.postgres

COUNT = text("SELECT COUNT(*) FROM transactions")
INSERT = text("INSERT INTO transactions (id, kind, memo, created_at) VALUES ('t', 'deposit', '', 'now')")


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_snapshot_read_does_not_see_what_commits_between_its_statements(snapshot: bool) -> None:
    with postgres_schema("bankgate_snapshot") as url:
        db, other = Database.open(url), Database.open(url)
        ledger = Ledger(other)
        account = ledger.create_account("Ada").id

        def read(conn: Connection) -> tuple[int, int]:
            before = int(conn.execute(COUNT).scalar_one())
            ledger.deposit(account, "1")  # commits on another connection meanwhile
            return before, int(conn.execute(COUNT).scalar_one())

        before, after = db.read(read, snapshot=snapshot)
        assert after == (before if snapshot else before + 1)
        db.close()
        other.close()


def test_a_write_after_a_read_on_the_same_connection_is_one_transaction_again() -> None:
    """The read's autocommit ends with its checkout: a write failing halfway leaves nothing behind, so an
    audit record never commits without its money (one pooled connection, so the write gets the read's)."""
    with postgres_schema("bankgate_autocommit") as url:
        db = Database.open(url, pool_size=1)
        assert db.read(lambda conn: int(conn.execute(COUNT).scalar_one())) == 0

        def half(conn: Connection) -> None:
            conn.execute(INSERT)
            raise RuntimeError("fails after its first statement")

        with pytest.raises(RuntimeError):
            db.run(half)
        assert db.read(lambda conn: int(conn.execute(COUNT).scalar_one())) == 0
        db.close()
