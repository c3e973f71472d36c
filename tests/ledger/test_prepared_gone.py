"""A connection whose prepared statements on the server are not the ones psycopg named (a DEALLOCATE ALL or DISCARD ALL
psycopg did not see: a pooler's, an operator's) serves again: the call that meets it is run again, nothing of it having
run, and psycopg prepares its statements afresh on that connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection

from mcp_server.storage import loop_connection
from mcp_server.storage.database import Database, WouldWait
from mcp_server.storage.statement import Statement
from tests.ledger.helpers import when_ready

PID = "SELECT pg_backend_pid(), COUNT(*) FROM audit_heads"
INSERT = Statement("INSERT INTO audit_heads (seq, hash, at, key_id, signature) VALUES (:seq, '', '', '', '')")

Read = Callable[[Connection], Any]
READS: dict[str, Read] = {
    "statement": lambda conn: Statement(PID).one(conn),
    "sqlalchemy": lambda conn: tuple(conn.exec_driver_sql(PID).one()),
}


@pytest.fixture(params=[True, False], ids=["pooled", "loop"])
def wait(request: pytest.FixtureRequest, backend: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the work runs on a pooled connection (`wait=True`) or the loop's; PostgreSQL only."""
    if backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    if not request.param:
        monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
        when_ready(lambda: database.read(lambda conn: 1, wait=False))
    return bool(request.param)


def behind_psycopgs_back(sql: bytes) -> Read:
    """Run `sql` on the connection as libpq's own command, unseen by psycopg's bookkeeping of prepared statements."""

    def work(conn: Connection) -> int:
        driver: Any = conn.connection.dbapi_connection
        assert driver.pgconn.exec_(sql).status in (1, 2), driver.pgconn.error_message  # COMMAND_OK, TUPLES_OK
        return int(driver._prepared._prepared_idx)

    return work


def prepared_from(database: Database) -> int:
    """The run of a statement at which psycopg prepares it (its prepare threshold, plus one)."""
    return int(database.read(lambda conn: conn.connection.dbapi_connection.prepare_threshold)) + 1  # type: ignore[union-attr]


def first_then_rest(database: Database, work: Read, wait: bool, runs: int) -> list[Any]:
    """`work` run `runs` times as a read; the first on the loop may be sent to a worker thread (`WouldWait`: nothing
    ran), after which the loop's connection serves again."""
    try:
        first = [database.read(work, wait=wait)]
    except WouldWait:
        assert not wait
        first = []
    return first + [database.read(work, wait=wait) for _ in range(runs - len(first))]


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_read_whose_prepared_statement_was_deallocated_runs_again(
    database: Database, wait: bool, read: Read, caplog: pytest.LogCaptureFixture
) -> None:
    """A read prepared, then every prepared statement of its connection deallocated behind psycopg's back: it failed
    ("prepared statement ... does not exist", 26000) on that connection at every later run, for good (reads run in
    autocommit, where no ROLLBACK makes psycopg forget). The warning points at a pooler in transaction mode."""
    runs = prepared_from(database)
    (pid,) = {database.read(read, wait=wait)[0] for _ in range(runs)}  # prepared at its last run
    database.read(behind_psycopgs_back(b"DEALLOCATE ALL"), wait=wait)
    assert first_then_rest(database, read, wait, runs + 1) == [(pid, 0)] * (runs + 1)
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "does not exist" in warning and "?prepare_threshold=none" in warning


def test_a_write_whose_prepared_statement_was_deallocated_is_made_once(database: Database, wait: bool) -> None:
    runs = prepared_from(database)
    for seq in range(runs):
        database.run(lambda conn, seq=seq: INSERT.run(conn, {"seq": seq}), wait=wait)  # type: ignore[misc]
    database.read(behind_psycopgs_back(b"DEALLOCATE ALL"), wait=wait)
    try:
        database.run(lambda conn: INSERT.run(conn, {"seq": 100}), wait=wait)
    except WouldWait:
        assert not wait
        database.run(lambda conn: INSERT.run(conn, {"seq": 100}))  # where the caller runs it then
    database.run(lambda conn: INSERT.run(conn, {"seq": 101}), wait=wait)
    assert database.read(lambda conn: conn.exec_driver_sql(PID).one()[1]) == runs + 2


def test_a_statement_prepared_under_a_name_the_server_holds_already_runs_again(database: Database, wait: bool) -> None:
    """The server holds the name psycopg gives next (42P05 `prepared statement ... already exists`): the run that
    would prepare it is run again, and later runs are prepared under a name of their own."""
    runs = prepared_from(database)
    read = READS["statement"]
    (pid,) = {database.read(read, wait=wait)[0] for _ in range(runs - 1)}
    taken = database.read(behind_psycopgs_back(b"SELECT 1"), wait=wait)  # the name psycopg gives next
    database.read(behind_psycopgs_back(f"PREPARE _pg3_{taken} AS SELECT 1".encode()), wait=wait)
    assert first_then_rest(database, read, wait, runs + 1) == [(pid, 0)] * (runs + 1)


def test_no_two_connections_name_a_prepared_statement_alike(backend: str, database: Database) -> None:
    """Behind a pooler in transaction mode a transaction may run on another client's server connection: a name both
    gave (psycopg counts from `_pg3_0` on each) would run that client's statement with this one's arguments. Each
    connection names its statements from a random point, so there the name is missing instead (26000: run again)."""
    if backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    runs = prepared_from(database)
    named: list[set[str]] = []
    pool, loop = database.engines
    with pool.connect() as first, pool.connect() as second, loop.connect() as third:
        for conn in (first, second, third):
            for _ in range(runs):
                READS["statement"](conn)
            named.append(set(conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars()))
    assert all(names for names in named)
    assert not named[0] & named[1] and not named[0] & named[2] and not named[1] & named[2], named
