"""`Statement.prefetch`: a read sent ahead with the next round trip gives, when asked for, what asking for it then
would have given (both backends are held to that), and on PostgreSQL saves the round trips it rode along."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, ProgrammingError

from mcp_server.ledger.books import Ledger
from mcp_server.storage import loop_connection
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from tests.ledger.helpers import standard_book, when_ready
from tests.ledger.test_queued_writes import COUNT, INSERT, round_trips, sends, seqs

SEQ = "SELECT seq FROM audit_heads WHERE seq = :seq"
HAS = [Statement(SEQ + " OR seq = :seq + 100 ORDER BY seq"), Statement(SEQ + " OR seq = :seq + 200 ORDER BY seq")]
"""Two reads of the rows `INSERT` writes, each its own statement (a read ahead is known by its SQL and arguments)."""
LOCKED = Statement("SELECT seq FROM audit_heads WHERE seq = :seq FOR UPDATE")
COUNT_BELOW = Statement("SELECT COUNT(*) FROM audit_heads WHERE seq < :below")
MISSING = Statement("SELECT seq FROM no_such_table WHERE seq = :seq")


def found(rows: list[tuple[Any, ...]]) -> list[int]:
    return [row[0] for row in rows]


@contextmanager
def wire_of(conn: Connection, path: Path) -> Iterator[None]:
    """libpq's protocol trace of `conn`'s driver connection to `path` while the block runs."""
    driver = conn.connection.dbapi_connection
    assert driver is not None
    with path.open("w") as trace:
        driver.pgconn.trace(trace.fileno())
        driver.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield
        finally:
            driver.pgconn.untrace()


def on_postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs in the process: no round trips to count")


@pytest.mark.parametrize("on_loop", [False, True], ids=["pooled", "loop"])
def test_reads_sent_ahead_ride_with_the_next_round_trip(
    backend: str, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """Two reads sent ahead, then a read, then both asked for: one round trip for the three (with the BEGIN and
    the write queued before) until the commit; three without `prefetch` (checked by dropping it)."""
    on_postgresql(backend)
    if on_loop:
        monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
        when_ready(lambda: database.read(lambda conn: 1, wait=False))
    database.run(lambda conn: INSERT.send(conn, {"seq": 101}))
    wire = tmp_path / "wire"

    def work(conn: Connection) -> tuple[Any, ...]:
        with wire_of(conn, wire):
            INSERT.send(conn, {"seq": 1})
            for read in HAS:
                read.prefetch(conn, {"seq": 1})
            count = COUNT.one(conn)
            arrived = [read.arrived(conn, {"seq": 1}) for read in HAS]
            rows = [found(read.all(conn, {"seq": 1})) for read in HAS]
            INSERT.send(conn, {"seq": 2})
            return count, arrived, rows

    count, arrived, rows = database.run(work, wait=not on_loop)
    assert count == (2,)
    assert arrived == [True, True]
    assert rows == [[1, 101], [1]]  # the write queued before them is seen: they ran after it
    assert round_trips(wire.read_text()) == 1
    assert seqs(database) == [1, 2, 101]


def test_a_read_transaction_sends_its_reads_ahead_too(backend: str, database: Database, tmp_path: Path) -> None:
    on_postgresql(backend)
    database.run(lambda conn: INSERT.send(conn, {"seq": 1}))
    wire = tmp_path / "wire"

    def work(conn: Connection) -> tuple[Any, ...]:
        with wire_of(conn, wire):
            HAS[0].prefetch(conn, {"seq": 1})
            return COUNT.one(conn), found(HAS[0].all(conn, {"seq": 1}))

    assert database.read(work) == ((1,), [1])
    assert round_trips(wire.read_text()) == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda conn: INSERT.send(conn, {"seq": 2}),
        lambda conn: INSERT.run(conn, {"seq": 2}),
        lambda conn: conn.exec_driver_sql(
            "INSERT INTO audit_heads (seq, hash, at, key_id, signature) VALUES (2, '', '', '', '')"
        ),
    ],
    ids=["send", "run", "sqlalchemy"],
)
def test_a_read_sent_ahead_is_read_again_after_a_later_write(
    database: Database, write: Callable[[Connection], object]
) -> None:
    """What the transaction wrote after the read went is seen when the read is asked for (both backends)."""

    def work(conn: Connection) -> tuple[list[int], list[int]]:
        INSERT.send(conn, {"seq": 1})
        HAS[1].prefetch(conn, {"seq": 2})
        HAS[0].prefetch(conn, {"seq": 1})
        before = found(HAS[0].all(conn, {"seq": 1}))  # the first asked for carries the other
        write(conn)
        return before, found(HAS[1].all(conn, {"seq": 2}))

    assert database.run(work) == ([1], [2])


def test_a_read_sent_ahead_never_reaches_another_transaction(database: Database) -> None:
    below = {"below": 10}

    def sends_ahead_and_leaves(conn: Connection) -> None:
        COUNT_BELOW.prefetch(conn, below)
        COUNT.one(conn)  # it goes, and is never asked for

    def counted(conn: Connection) -> tuple[Any, ...] | None:
        return COUNT_BELOW.one(conn, below)

    for seq in (1, 2, 3):  # pooled connections are reused: the next transaction asks afresh
        database.run(sends_ahead_and_leaves)
        database.read(sends_ahead_and_leaves)
        database.run(sends(seq))
        assert database.run(counted) == (seq,)
        assert database.read(counted) == (seq,)


def test_a_read_sent_ahead_that_fails_fails_its_transaction(backend: str, database: Database) -> None:
    """Its error comes with the round trip it rode: the read that carried it returns nothing."""
    on_postgresql(backend)
    reached: list[object] = []

    def work(conn: Connection) -> None:
        INSERT.send(conn, {"seq": 1})
        MISSING.prefetch(conn, {"seq": 1})
        reached.append(COUNT.one(conn))

    with pytest.raises(ProgrammingError, match="no_such_table"):
        database.run(work)
    assert reached == []
    assert seqs(database) == []
    database.run(lambda conn: INSERT.send(conn, {"seq": 1}))  # the connection is good for the next
    assert seqs(database) == [1]


def test_a_lock_sent_ahead_is_taken_after_the_turns_sent_before_it(
    backend: str, database: Database, tmp_path: Path
) -> None:
    """Turns come before row locks (`policy.gate._claim`): a row lock announced before a turn is taken still
    goes after it, with the first round trip, on the wire."""
    on_postgresql(backend)
    database.run(lambda conn: INSERT.send(conn, {"seq": 1}))
    wire = tmp_path / "wire"

    def work(conn: Connection) -> list[int]:
        with wire_of(conn, wire):
            LOCKED.prefetch(conn, {"seq": 1})
            take_turn(conn, Space.PRINCIPAL, "alice")
            COUNT.one(conn)
            return found(LOCKED.all(conn, {"seq": 1}))

    assert database.run(work) == [1]
    sent = [line for line in wire.read_text().splitlines() if line.startswith("F") and "\tParse\t" in line]
    order = [("advisory" in line, "FOR UPDATE" in line) for line in sent]
    assert order.index((True, False)) < order.index((False, True))
    assert round_trips(wire.read_text()) == 1


@pytest.mark.parametrize(
    ("plan", "first", "second"),
    [
        (
            lambda ledger, conn, lock: ledger.plan_transfer_in(conn, "ACC-001", "ACC-002", "1.00", lock=lock),
            "ACC-001",
            "ACC-002",
        ),
        (lambda ledger, conn, lock: ledger.plan_close_in(conn, "ACC-003", "ACC-002", lock=lock), "ACC-003", "ACC-002"),
        (lambda ledger, conn, lock: ledger.plan_close_in(conn, "ACC-006", lock=lock), "ACC-006", None),
    ],
    ids=["transfer", "close with sweep", "close"],
)
@pytest.mark.parametrize("lock", [False, True], ids=["read", "locked"])
def test_a_plan_expected_is_the_read_the_plan_makes(
    backend: str,
    ledger: Ledger,
    tmp_path: Path,
    plan: Callable[[Ledger, Connection, bool], object],
    first: str,
    second: str | None,
    lock: bool,
) -> None:
    """`Ledger.expect_plan` announces exactly the read of `plan_transfer_in` / `plan_close_in`: it rides the
    round trip before, and the plan waits on nothing."""
    on_postgresql(backend)
    standard_book(ledger)
    ledger.create_account("Zoe Zero", "USD", "ACC-006")  # nothing to sweep
    wire = tmp_path / "wire"

    def work(conn: Connection) -> object:
        with wire_of(conn, wire):
            ledger.expect_plan(conn, first, second, lock=lock)
            COUNT.one(conn)
            return plan(ledger, conn, lock)

    assert ledger.db.run(work) is not None
    assert round_trips(wire.read_text()) == 1


QUOTIENT = Statement("SELECT pg_backend_pid(), 1 / :divisor")
"""A read that fails for one argument (division by zero): the statement's fault, not its connection's; and which
connection it ran on."""


def _prepared_from(database: Database) -> int:
    """The run of a statement at which psycopg prepares it (its prepare threshold, plus one)."""
    return int(database.read(lambda conn: conn.connection.dbapi_connection.prepare_threshold)) + 1  # type: ignore[union-attr]


@pytest.mark.parametrize("on_loop", [False, True], ids=["pooled", "loop"])
def test_a_read_ahead_whose_round_trip_failed_runs_again_on_its_connection(
    backend: str, database: Database, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """psycopg names a statement prepared as it queues its Parse; a read ahead due to be prepared in a round trip
    that fails at an earlier statement never had its Parse run. Its later runs on that connection failed ("prepared
    statement ... does not exist", 26000) for good: the loop's connection, kept after a statement's error, served
    the same read failing to every call."""
    on_postgresql(backend)
    if on_loop:
        monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
        when_ready(lambda: database.read(lambda conn: 1, wait=False))
    database.run(lambda conn: INSERT.send(conn, {"seq": 1}))

    def divided(divisor: int) -> tuple[int, list[int]]:
        def work(conn: Connection) -> tuple[int, list[int]]:
            HAS[0].prefetch(conn, {"seq": 1})  # rides after the quotient, in its round trip
            row = QUOTIENT.one(conn, {"divisor": divisor})
            assert row is not None
            return row[0], found(HAS[0].all(conn, {"seq": 1}))

        return database.read(work, wait=not on_loop)

    prepared_from = _prepared_from(database)
    (backend_pid,) = {divided(1)[0] for _ in range(prepared_from - 1)}
    with pytest.raises(DataError, match="division by zero"):
        divided(0)  # the read ahead's run that prepares it, skipped
    after = [divided(1) for _ in range(prepared_from)]  # up to its next preparing, which then runs
    assert after == [(backend_pid, [1])] * prepared_from  # on the connection left so, found each time


def test_a_read_ahead_whose_round_trip_failed_in_a_savepoint_runs_again_in_its_transaction(
    backend: str, database: Database
) -> None:
    """The same in a settlement's effect (`SqlGateTx.savepoint`): rolled back to its savepoint, the transaction goes
    on, and the read ahead that failed with the effect's round trip, run again, failed the settlement."""
    on_postgresql(backend)
    database.run(lambda conn: INSERT.send(conn, {"seq": 1}))
    prepared_from = _prepared_from(database)

    def work(tx: SqlGateTx) -> list[int]:
        for _ in range(prepared_from - 1):
            HAS[0].one(tx.conn, {"seq": 1})
        with pytest.raises(DataError, match="division by zero"), tx.savepoint():
            HAS[0].prefetch(tx.conn, {"seq": 1})  # its run that prepares it, skipped with the effect's failure
            QUOTIENT.one(tx.conn, {"divisor": 0})
        return found(HAS[0].all(tx.conn, {"seq": 1}))

    assert SqlGateStore(database).transaction(work) == [1]
