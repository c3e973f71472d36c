"""`Statement.send`: a write queued for the next round trip (PostgreSQL) behaves in its transaction exactly
as one run at once (SQLite, and the rule both backends are held to): later statements see it, its error
aborts the transaction, and nothing queued outlives the transaction it was sent in."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from mcp_server.storage import loop_connection
from mcp_server.storage.database import CommitUnknown, Database, WouldWait
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from tests.ledger.helpers import held_elsewhere, taking_turn, when_ready

INSERT = Statement("INSERT INTO audit_heads (seq, hash, at, key_id, signature) VALUES (:seq, '', '', '', '')")
COUNT = Statement("SELECT COUNT(*) FROM audit_heads")
SEQS = "SELECT seq FROM audit_heads ORDER BY seq"


def seqs(db: Database) -> list[int]:
    return [row[0] for row in db.read(lambda conn: conn.exec_driver_sql(SEQS).all())]


def sends(*seq: int) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        for each in seq:
            INSERT.send(conn, {"seq": each})

    return work


def test_later_statements_of_the_transaction_see_a_queued_write(database: Database) -> None:
    def work(conn: Connection) -> tuple[int, int]:
        INSERT.send(conn, {"seq": 1})
        seen_by_statement = COUNT.one(conn)
        INSERT.send(conn, {"seq": 2})
        seen_by_sqlalchemy = conn.exec_driver_sql("SELECT COUNT(*) FROM audit_heads").scalar_one()
        assert seen_by_statement is not None
        return seen_by_statement[0], seen_by_sqlalchemy

    assert database.run(work) == (1, 2)
    assert seqs(database) == [1, 2]


def test_writes_queued_last_commit_with_the_transaction(database: Database) -> None:
    database.run(sends(1, 2, 3))
    assert seqs(database) == [1, 2, 3]


def test_a_queued_write_that_fails_rolls_back_the_whole_transaction(database: Database) -> None:
    database.run(sends(1))
    with pytest.raises(IntegrityError):
        database.run(sends(2, 1, 3))  # 1 is taken: at the commit on PostgreSQL, at once on SQLite
    assert seqs(database) == [1]


def test_a_queued_write_that_fails_is_reported_by_the_next_read(database: Database) -> None:
    database.run(sends(1))
    read: list[object] = []

    def work(conn: Connection) -> None:
        INSERT.send(conn, {"seq": 1})
        read.append(COUNT.one(conn))

    with pytest.raises(IntegrityError):
        database.run(work)
    assert read == []  # the read did not return a result after a write that failed before it
    assert seqs(database) == [1]


def test_nothing_queued_outlives_a_transaction_that_failed(database: Database) -> None:
    def fails_after_sending(conn: Connection) -> None:
        INSERT.send(conn, {"seq": 0})
        raise RuntimeError("after the send")

    for seq in (1, 2, 3):  # pooled connections are reused: none may carry the write into the next transaction
        with pytest.raises(RuntimeError):
            database.run(fails_after_sending)
        database.run(sends(seq))
    assert seqs(database) == [1, 2, 3]


def test_a_turn_taken_elsewhere_sends_queued_work_on_the_loop_to_a_thread(
    backend: str, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn is queued with the statement after it; its lock timeout still reads as contention."""
    if backend != "postgresql":
        pytest.skip("turns are PostgreSQL advisory locks (SQLite writers take the whole file)")
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
    when_ready(lambda: database.read(lambda conn: 1, wait=False))

    def takes_the_turn(conn: Connection) -> None:
        take_turn(conn, Space.PRINCIPAL, "alice")
        INSERT.send(conn, {"seq": 1})
        COUNT.one(conn)

    with held_elsewhere(database, taking_turn(Space.PRINCIPAL, "alice")), pytest.raises(WouldWait):
        database.run(takes_the_turn, wait=False)
    assert seqs(database) == []
    database.run(takes_the_turn, wait=False)
    assert seqs(database) == [1]


@pytest.mark.parametrize("on_loop", [False, True], ids=["pooled", "loop"])
def test_a_transaction_begins_in_its_first_round_trip(
    backend: str, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """BEGIN rides with the first read, the writes queued after it with the COMMIT: two round trips,
    counted on the wire (libpq's protocol trace). psycopg's own BEGIN would wait for its answer: three."""
    if backend != "postgresql":
        pytest.skip("SQLite runs in the process: no round trips to count")
    if on_loop:
        monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
        when_ready(lambda: database.read(lambda conn: 1, wait=False))
    wire = tmp_path / "wire"
    traced: list[Any] = []

    def work(conn: Connection) -> None:
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.pgconn.trace(trace.fileno())
        driver.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        traced.append(driver)
        INSERT.send(conn, {"seq": 1})
        COUNT.one(conn)
        INSERT.send(conn, {"seq": 2})

    with wire.open("w") as trace:
        database.run(work, wait=not on_loop)
        traced[-1].pgconn.untrace()
    assert seqs(database) == [1, 2]
    assert round_trips(wire.read_text()) == 2


@pytest.mark.parametrize("on_loop", [False, True], ids=["pooled", "loop"])
def test_the_statements_of_a_round_trip_are_waited_on_together(
    backend: str, database: Database, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """Writes queued before a read, and the reads sent ahead after it, go to libpq together: the round trip's
    waits on the driver (each a poll of the socket, a flush) do not grow with its statements. psycopg's pipeline
    waited once a statement (`round_trip`)."""
    if backend != "postgresql":
        pytest.skip("SQLite runs in the process: no round trips")
    if on_loop:
        monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
        when_ready(lambda: database.read(lambda conn: 1, wait=False))
    first = itertools.count(1)

    def waits(writes: int, reads_ahead: int) -> int:
        counted: list[int] = []

        def work(conn: Connection) -> None:
            COUNT.one(conn)  # the BEGIN's round trip, not counted
            driver: Any = conn.connection.dbapi_connection
            real = driver.wait

            def counting(*args: Any, **kwargs: Any) -> Any:
                counted.append(1)
                return real(*args, **kwargs)

            driver.wait = counting
            try:
                for _ in range(writes):
                    INSERT.send(conn, {"seq": next(first)})
                for seq in range(reads_ahead):
                    SEQ.prefetch(conn, {"seq": seq})
                COUNT.one(conn)
            finally:
                del driver.wait

        database.run(work, wait=not on_loop)
        return len(counted)

    assert waits(1, 0) == waits(6, 0) == waits(1, 4)


SEQ = Statement("SELECT seq FROM audit_heads WHERE seq = :seq")


def round_trips(trace: str) -> int:
    """How often the client, having sent, waited for the server: each turn from frontend to backend messages."""
    directions = [line.split("\t", 1)[0] for line in trace.splitlines() if line]
    return sum(1 for sent, got in itertools.pairwise(directions) if (sent, got) == ("F", "B"))


def test_statements_prepared_after_a_rollback_to_a_savepoint_stay_prepared(backend: str, database: Database) -> None:
    """A ROLLBACK TO SAVEPOINT makes psycopg forget its prepared statements and owe the server a DEALLOCATE ALL,
    sent with the next round trip: before that trip's statements, not after a statement it prepares (that one
    would then be missing on the server, and its next execution fail)."""
    if backend != "postgresql":
        pytest.skip("sqlite3 prepares no statements of psycopg's")

    def work(conn: Connection) -> tuple[int, int]:
        driver: Any = conn.connection.dbapi_connection
        prepared_from = driver.prepare_threshold + 1
        for _ in range(prepared_from):
            COUNT.one(conn)  # prepared: psycopg now has a statement to forget
        SAVEPOINT.send(conn)
        ROLLBACK_TO_SAVEPOINT.send(conn)
        COUNT.one(conn)  # psycopg forgets, and owes the DEALLOCATE ALL
        for seq in range(1, prepared_from + 1):
            INSERT.send(conn, {"seq": seq})  # the last one prepared, in the trip the DEALLOCATE ALL rides
        COUNT.one(conn)
        INSERT.send(conn, {"seq": prepared_from + 1})  # runs the statement prepared above
        row = COUNT.one(conn)
        assert row is not None
        return row[0], prepared_from + 1

    counted, inserted = database.run(work)
    assert counted == inserted


def test_a_statement_libpq_refuses_to_send_commits_nothing(backend: str, database: Database) -> None:
    """A statement that libpq will not send (more parameters than the protocol carries) fails the transaction:
    the writes queued around it, and the COMMIT after them, do not go to the server either."""
    if backend != "postgresql":
        pytest.skip("the protocol's parameter limit is PostgreSQL's")
    names = [f"p{index}" for index in range(70_000)]
    too_many = Statement("SELECT " + " + ".join(f":{name}" for name in names))

    def work(conn: Connection) -> None:
        INSERT.send(conn, {"seq": 1})
        too_many.send(conn, dict.fromkeys(names, 1))
        INSERT.send(conn, {"seq": 2})

    with pytest.raises((DBAPIError, CommitUnknown)):  # refused in the COMMIT's round trip: said unknown, and safe
        database.run(work)
    assert seqs(database) == []


SAVEPOINT = Statement("SAVEPOINT queued")
ROLLBACK_TO_SAVEPOINT = Statement("ROLLBACK TO SAVEPOINT queued")
