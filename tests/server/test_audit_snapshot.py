"""PostgreSQL reads run without a transaction (see `tests/ledger/test_reads.py`); the connection a read
used goes back to transactions for the next write."""

import pytest
from sqlalchemy import Connection, text

from mcp_server.storage.database import Database
from tests.support import postgres_schema

pytestmark = pytest.mark.postgres

COUNT = text("SELECT COUNT(*) FROM transactions")
INSERT = text("INSERT INTO transactions (id, kind, memo, created_at) VALUES ('t', 'deposit', '', 'now')")


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
