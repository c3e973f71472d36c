"""PostgreSQL work that must not wait (`wait=False`: what the event loop asks) runs on the loop's own
connection, and a database that misbehaves costs the loop a bounded wait at most."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from mcp_server.storage import loop_connection, statement
from mcp_server.storage.database import CommitUnknown, Database, WouldWait
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from mcp_server.storage.statement import Statement
from policy.results import Refusal
from tests.drills.proxy import TcpProxy
from tests.ledger.helpers import held_elsewhere, when_ready

COUNT = "SELECT COUNT(*) FROM audit_heads"
INSERT = "INSERT INTO audit_heads (seq, hash, at, key_id, signature) VALUES (:seq, '', '', '', '')"


@pytest.fixture
def pg_url(backend: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    if backend != "postgresql":
        pytest.skip("the loop's own connection is PostgreSQL's (SQLite work on the loop is in test_database)")
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)  # a busy test machine is still "near"
    return database_url


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    db = Database.open(pg_url)
    yield db
    db.close()


def count(db: Database) -> int:
    return int(db.read(lambda conn: conn.exec_driver_sql(COUNT).scalar_one()))


def insert(seq: int) -> Callable[[Connection], int]:
    return lambda conn: conn.exec_driver_sql(INSERT.replace(":seq", str(seq))).rowcount


def test_not_ready_means_would_wait_then_the_work_runs_on_the_callers_thread(pg: Database) -> None:
    with pytest.raises(WouldWait):  # the connection starts opening in the background: nothing ran
        pg.run(insert(1), wait=False)
    assert count(pg) == 0

    ran_on = when_ready(lambda: pg.run(lambda conn: (insert(1)(conn), threading.get_ident())[1], wait=False))

    assert ran_on == threading.get_ident()
    assert count(pg) == 1


def test_a_read_on_the_loop_leaves_its_connection_transactional(pg: Database) -> None:
    assert when_ready(lambda: pg.read(lambda conn: conn.exec_driver_sql(COUNT).scalar_one(), wait=False)) == 0

    def fails_after_writing(conn: Connection) -> None:
        insert(1)(conn)
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError):
        pg.run(fails_after_writing, wait=False)

    assert count(pg) == 0  # rolled back: the read's autocommit did not outlive it


def test_a_lock_held_elsewhere_sends_the_work_to_a_thread_at_once(pg: Database) -> None:
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    with held_elsewhere(pg, lambda conn: conn.exec_driver_sql("LOCK TABLE audit_heads IN EXCLUSIVE MODE")):
        started = time.monotonic()
        with pytest.raises(WouldWait):
            pg.run(insert(1), wait=False)
        assert time.monotonic() - started < 0.5  # the lock timeout (10 ms), not the holder's transaction
    assert pg.run(insert(1), wait=False) == 1  # the same connection, still ready: contention is not a failure
    assert count(pg) == 1


def test_a_silent_database_costs_the_loop_one_bounded_wait_then_rests(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_connection, "REST_S", 0.5)
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    db = Database.open(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        when_ready(lambda: db.read(lambda conn: 1, wait=False))
        proxy.cut("blackhole")

        started = time.monotonic()
        with pytest.raises(WouldWait):  # nothing committed: worker threads (with their deadline) take the work
            db.run(insert(1), wait=False)
        assert time.monotonic() - started < loop_connection.WAIT_S + 1.0

        started = time.monotonic()
        with pytest.raises(WouldWait):  # resting: worker threads (with their deadline) serve meanwhile
            db.run(insert(1), wait=False)
        assert time.monotonic() - started < 0.1

        proxy.restore()
        assert when_ready(lambda: db.run(insert(1), wait=False)) == 1  # reopened in the background
        assert db.read(lambda conn: conn.exec_driver_sql(COUNT).scalar_one(), wait=False) == 1
    finally:
        db.close()
        proxy.close()


def test_a_slow_answer_before_commit_sends_the_work_to_a_thread_where_it_runs_once(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a flake of a loaded CI, and a failed call for any user whose database paused a second: a statement
    answered after `WAIT_S` failed its call `database_unavailable`. Before the COMMIT was sent nothing of the work
    can have taken effect (closing the connection rolls it back), so it moves to a worker thread instead, where
    waiting is harmless; the loop rests as after any failure."""
    monkeypatch.setattr(loop_connection, "WAIT_S", 0.3)
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    runs: list[str] = []

    def slow_insert(conn: Connection) -> int:
        runs.append("run")
        conn.exec_driver_sql("SELECT pg_sleep(0.6)")
        return insert(1)(conn)

    started = time.monotonic()
    with pytest.raises(WouldWait):
        pg.run(slow_insert, wait=False)
    assert time.monotonic() - started < 0.6  # the loop's bound, not the statement's length
    assert count(pg) == 0
    with pytest.raises(WouldWait):  # resting: the next unit goes to a thread at once
        pg.run(insert(2), wait=False)

    assert pg.run(slow_insert) == 1  # a worker thread: the same work, run once more, to its end
    assert runs == ["run", "run"] and count(pg) == 1


@pytest.mark.anyio
async def test_a_slow_statement_on_the_loop_still_answers_the_call(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's side of the above: the gate's work completes (in a worker thread) instead of failing."""
    monkeypatch.setattr(loop_connection, "WAIT_S", 0.3)
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    store = SqlGateStore(pg)

    def slow_insert(tx: SqlGateTx) -> int:
        tx.conn.exec_driver_sql("SELECT pg_sleep(0.6)")
        return insert(1)(tx.conn)

    assert await store.run(lambda: store.transaction(slow_insert)) == 1
    assert count(pg) == 1


@pytest.mark.anyio
async def test_a_silent_database_is_answered_within_the_stores_deadline(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's bounded wait counts toward the deadline a call waits for the database, not on top of it."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    db = Database.open(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    store = SqlGateStore(db)
    store.deadline = 2.0
    try:
        when_ready(lambda: db.read(lambda conn: 1, wait=False))
        monkeypatch.setattr(loop_connection, "WAIT_S", 1.8)  # the two apart by 1.8 s: room for a pause under load
        proxy.cut("blackhole")
        started = time.monotonic()
        with pytest.raises(Refusal) as refused:
            await store.run(lambda: store.transaction(lambda tx: insert(1)(tx.conn)))
        took = time.monotonic() - started
        assert refused.value.code == "database_unavailable"
        assert loop_connection.WAIT_S <= took < store.deadline + loop_connection.WAIT_S, took  # not their sum
    finally:
        proxy.restore()
        db.close()
        proxy.close()


def test_one_unit_at_a_time_uses_the_connection(pg: Database) -> None:
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    inside, leave = threading.Event(), threading.Event()

    def stays(conn: Connection) -> int:
        inside.set()
        leave.wait(10)
        return insert(1)(conn)

    first = threading.Thread(target=pg.run, args=(stays,), kwargs={"wait": False})
    first.start()
    try:
        assert inside.wait(10)
        with pytest.raises(WouldWait):  # not interleaved into the first unit's transaction
            pg.run(insert(2), wait=False)
    finally:
        leave.set()
        first.join(10)
    assert count(pg) == 1


def test_a_far_database_leaves_the_work_to_worker_threads(pg: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 0.0)  # any round trip is too long
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # long enough for the background open and its measurement
        with pytest.raises(WouldWait):
            pg.run(insert(1), wait=False)
        time.sleep(0.05)
    assert pg.run(insert(1)) == 1  # worker threads (here: this one) use the pool as before
    assert count(pg) == 1


def test_a_connection_without_its_lock_timeout_leaves_the_work_to_worker_threads(
    pg: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PgBouncer with `ignore_startup_parameters = options` drops the startup option that sets the loop's lock
    timeout, silently: the loop would wait on a held lock until `WAIT_S`. Here the option is dropped so too."""
    connect = loop_connection.BoundedConnection.connect

    def without_options(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("options", None)
        return connect(*args, **kwargs)

    monkeypatch.setattr(loop_connection.BoundedConnection, "connect", without_options)
    refused = "has lock_timeout 0, not 10ms"
    deadline = time.monotonic() + 10
    while refused not in caplog.text:  # the background open, then its check on the next borrow
        assert time.monotonic() < deadline, caplog.text
        with pytest.raises(WouldWait):
            pg.run(insert(1), wait=False)
        time.sleep(0.02)
    with pytest.raises(WouldWait):
        pg.run(insert(1), wait=False)
    assert pg.run(insert(1)) == 1 and count(pg) == 1  # worker threads use the pool, its search path kept


@pytest.mark.parametrize("wait", [True, False], ids=["pooled", "loop"])
def test_prepared_statements_off_in_the_url_reach_every_connection(pg_url: str, wait: bool) -> None:
    """`?prepare_threshold=none` (for PgBouncer in transaction mode): no statement is prepared on the server,
    however often it runs, on the pool's connections and on the loop's."""
    url = make_url(pg_url).update_query_dict({"prepare_threshold": "none"}).render_as_string(False)
    db = Database.open(url)
    try:
        if not wait:
            when_ready(lambda: db.read(lambda conn: 1, wait=False))
        write, read = Statement(INSERT), Statement(COUNT)

        def write_then_read(seq: int) -> Callable[[Connection], Any]:
            return lambda conn: (write.run(conn, {"seq": seq}), read.one(conn))

        for seq in range(1, 9):  # past psycopg's default threshold (5)
            db.run(write_then_read(seq), wait=wait)

        def prepared(conn: Connection) -> tuple[Any, int]:
            driver: Any = conn.connection.dbapi_connection
            names = conn.exec_driver_sql("SELECT COUNT(*) FROM pg_prepared_statements").scalar_one()
            return driver.prepare_threshold, names

        assert db.read(prepared, wait=wait) == (None, 0)
        assert count(db) == 8
    finally:
        db.close()


@pytest.mark.parametrize("wait", [True, False], ids=["pooled", "loop"])
def test_reads_and_writes_leave_the_driver_as_they_found_it(pg: Database, wait: bool) -> None:
    """A write runs its transaction with the driver in autocommit (its BEGIN is queued) and a read in autocommit
    or REPEATABLE READ: after either, a pooled connection is back in READ COMMITTED transactions, the engines'
    setting, which other code on a pooled connection relies on (migrations, say). The loop's connection rests
    in autocommit, as its writes and reads want it, so that neither changes a setting of its driver."""
    if not wait:
        when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    resting = (not wait, psycopg.IsolationLevel.READ_COMMITTED)
    found: list[tuple[bool, Any]] = []
    drivers: list[Any] = []

    def seen(conn: Connection) -> int:
        drivers.append(conn.connection.dbapi_connection)
        return insert(len(drivers))(conn)

    def read(conn: Connection) -> None:
        drivers.append(conn.connection.dbapi_connection)

    def settings(driver: Any) -> tuple[bool, Any]:
        return driver.autocommit, driver.isolation_level

    pg.run(seen, wait=wait)
    pg.read(read, wait=wait)
    pg.read(read, snapshot=True, wait=wait)
    found.extend(settings(driver) for driver in drivers)

    assert len(drivers) == 3 and count(pg) == 1
    assert found == [resting] * 3


def test_a_snapshot_read_on_the_loop_is_one_repeatable_read_transaction(pg: Database) -> None:
    """The loop's connection rests in autocommit: a read of one snapshot takes it out for the read."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))

    def snapshot(conn: Connection) -> tuple[str, bool]:
        isolation = conn.exec_driver_sql("SHOW transaction_isolation").scalar_one()
        began = conn.exec_driver_sql("SELECT now()").scalar_one()
        return isolation, conn.exec_driver_sql("SELECT now()").scalar_one() == began  # autocommit: a later now()

    assert pg.read(snapshot, snapshot=True, wait=False) == ("repeatable read", True)


def test_the_loop_connection_keeps_nothing_per_unit(pg: Database) -> None:
    """SQLAlchemy's `execution_options(isolation_level=...)` queued a reset per change for the connection's
    return to its pool, which the loop's connection never makes: two more per call, kept for its lifetime."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    records: list[Any] = []

    def unit(conn: Connection) -> int:
        records.append(conn.connection._connection_record)
        return len(records)

    for _ in range(20):
        pg.run(lambda conn: insert(unit(conn))(conn), wait=False)
        pg.read(unit, wait=False)
        pg.read(unit, snapshot=True, wait=False)

    assert len({id(record) for record in records}) == 1  # the loop's one connection served them all
    assert records[0].finalize_callback == deque()


@pytest.fixture
def paused(pg_url: str) -> Iterator[tuple[TcpProxy, Database]]:
    """The ledger through a proxy that can pause the database (`TcpProxy.hold_after`), its loop connection ready."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    db = Database.open(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        when_ready(lambda: db.read(lambda conn: 1, wait=False))
        yield proxy, db
    finally:
        db.close()
        proxy.close()


PAUSE_S = 1.5
"""How long the database pauses: past the loop's bound (`WAIT_S`), within a call's deadline."""


@pytest.mark.anyio
async def test_a_database_pausing_at_a_settlements_commit_is_outcome_unknown_never_run_again(
    paused: tuple[TcpProxy, Database],
) -> None:
    """The COMMIT (with the writes queued for it) reached the database, which answers after the loop's bound:
    the loop's connection closes, but the database may commit, so the work is not run again in a thread (it
    would move the money twice), and the caller is told the outcome is unknown."""
    proxy, db = paused
    store = SqlGateStore(db)
    runs: list[str] = []

    def settle(tx: SqlGateTx) -> None:
        runs.append(threading.current_thread().name)
        Statement(INSERT).send(tx.conn, {"seq": 1})  # queued: it travels with the COMMIT

    proxy.hold_after(b"COMMIT\x00", PAUSE_S)
    started = time.monotonic()
    with pytest.raises(CommitUnknown):
        await store.run(lambda: store.transaction(settle))
    assert time.monotonic() - started < PAUSE_S  # the loop's bound, not the pause
    assert runs == [threading.current_thread().name]  # once, on the loop
    assert when_settled(lambda: count(db)) == 1  # the database committed it


@pytest.mark.anyio
async def test_a_database_pausing_at_a_questions_first_round_trip_moves_it_to_a_thread_once(
    paused: tuple[TcpProxy, Database],
) -> None:
    """No COMMIT was sent: closing the loop's connection rolled the work back, so a worker thread runs it again,
    to its end, once the database goes on; the caller gets its answer."""
    proxy, db = paused
    store = SqlGateStore(db)
    runs: list[str] = []

    def ask(tx: SqlGateTx) -> int:
        runs.append(threading.current_thread().name)
        Statement(INSERT).send(tx.conn, {"seq": 1})  # the question's insert, queued
        return int(tx.conn.exec_driver_sql("SELECT 'first round trip', 7").one()[1])

    proxy.hold_after(b"first round trip", PAUSE_S)
    assert await store.run(lambda: store.transaction(ask, durable=False)) == 7
    assert len(runs) == 2 and runs[0] == threading.current_thread().name != runs[1]
    assert count(db) == 1


def when_settled(read: Callable[[], int], bound: float = 5.0) -> int:
    """`read`, once it is not 0 (or `bound` seconds passed): the database ends the paused work on its own time."""
    deadline = time.monotonic() + bound
    while (found := read()) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


INSERTED = Statement(INSERT)
COUNTED = Statement(COUNT)
WRITES: dict[str, Callable[[Connection, int], object]] = {
    "queued": lambda conn, seq: INSERTED.send(conn, {"seq": seq}),
    "run": lambda conn, seq: INSERTED.run(conn, {"seq": seq}),
    "sqlalchemy": lambda conn, seq: insert(seq)(conn),
}
"""The ways a unit writes: queued for the next round trip, run at once, or through SQLAlchemy's own execute."""


class Crash(RuntimeError):
    """The unit's own code failing between two writes."""


@pytest.fixture(params=[True, False], ids=["pipeline", "no-pipeline"])
def pipelines(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """With and without libpq's pipeline mode: without it, no BEGIN is queued, the driver begins by itself."""
    monkeypatch.setattr(statement, "_PIPELINES", request.param)
    return bool(request.param)


def two_writes(pg: Database, how: str, failure: str, seen: list[tuple[int, int]]) -> Callable[[Connection], None]:
    """A unit of two writes, the second failing (`failure`: the same key again, or the unit's code in between);
    `seen` gets what the first write left as the unit (all of it there) and another connection (nothing) see it."""

    def unit(conn: Connection) -> None:
        assert conn.engine is pg.engines[1], "the loop's connection"
        WRITES[how](conn, 1)
        inside = COUNTED.one(conn)
        assert inside is not None
        seen.append((inside[0], count(pg)))
        if failure == "crash":
            raise Crash("after the first write")
        WRITES[how](conn, 1)

    return unit


def resting(pg: Database) -> tuple[Any, Any]:
    """The loop's driver between units: READ COMMITTED, no transaction open (whether it rests in autocommit is
    `test_reads_and_writes_leave_the_driver_as_they_found_it`'s)."""
    driver: Any = pg.read(lambda conn: conn.connection.dbapi_connection, wait=False)
    return driver.isolation_level, driver.info.transaction_status


RESTING = (psycopg.IsolationLevel.READ_COMMITTED, psycopg.pq.TransactionStatus.IDLE)


@pytest.mark.parametrize("failure", ["constraint", "crash"])
@pytest.mark.parametrize("how", WRITES)
def test_a_unit_on_the_loop_is_one_transaction_however_it_writes(
    pg: Database, pipelines: bool, how: str, failure: str
) -> None:
    """The loop's connection rests in autocommit, yet a unit's writes are one transaction: its first write, which
    the unit sees, is seen by no other connection before the COMMIT, and a failure after it leaves nothing."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    seen: list[tuple[int, int]] = []

    with pytest.raises(IntegrityError if failure == "constraint" else Crash):
        pg.run(two_writes(pg, how, failure, seen), wait=False)

    assert seen == [(1, 0)] and count(pg) == 0
    assert resting(pg) == RESTING


def fails(conn: Connection) -> None:
    COUNTED.one(conn)
    raise Crash("after a statement")


def terminated_loop_connection(pg: Database) -> None:
    """The server ends the loop connection's session (a restart, `pg_terminate_backend`): the next unit finds it
    closed and moves to a thread (`WouldWait`), and a new one opens in the background."""
    pid = pg.read(lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one(), wait=False)
    pg.run(lambda conn: conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)"))
    pg.run(insert(9), wait=False)


def sent_to_a_thread(pg: Database) -> None:
    """A unit that wrote, then met a lock held elsewhere: rolled back, it moves to a worker thread (`WouldWait`)."""
    lock = "LOCK TABLE accounts IN EXCLUSIVE MODE"
    with held_elsewhere(pg, lambda conn: conn.exec_driver_sql(lock)):
        pg.run(lambda conn: (insert(9)(conn), conn.exec_driver_sql(lock)), wait=False)


BEFORE: dict[str, Callable[[Database], object]] = {
    "a read that failed": lambda pg: pg.read(fails, wait=False),
    "a snapshot read that failed": lambda pg: pg.read(fails, snapshot=True, wait=False),
    "a write that failed": lambda pg: pg.run(two_writes(pg, "run", "constraint", []), wait=False),
    "a write sent to a thread": sent_to_a_thread,
    "a connection the server closed": terminated_loop_connection,
}
"""Units that end other than well, each leaving the loop's connection (or its replacement) to the next unit."""


@pytest.mark.parametrize("before", BEFORE)
def test_after_a_unit_that_failed_the_next_is_one_transaction_too(pg: Database, pipelines: bool, before: str) -> None:
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    with pytest.raises((Crash, IntegrityError, WouldWait)):
        BEFORE[before](pg)
    assert count(pg) == 0
    assert when_ready(lambda: resting(pg)) == RESTING
    seen: list[tuple[int, int]] = []

    with pytest.raises(Crash):
        pg.run(two_writes(pg, "queued", "crash", seen), wait=False)

    assert seen == [(1, 0)] and count(pg) == 0
    assert pg.run(insert(2), wait=False) == 1 and count(pg) == 1  # and a unit that ends well commits


@pytest.mark.parametrize(("snapshot", "expected"), [(True, (0, 0)), (False, (0, 1))], ids=["snapshot", "each"])
def test_a_snapshot_read_on_the_loop_misses_what_commits_during_it(
    pg: Database, pipelines: bool, snapshot: bool, expected: tuple[int, int]
) -> None:
    """One snapshot for all of a snapshot read's statements; a plain read's each see what was committed."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))

    def twice(conn: Connection) -> tuple[int, int]:
        before = conn.exec_driver_sql(COUNT).scalar_one()
        pg.run(insert(1))  # another connection commits meanwhile
        return before, conn.exec_driver_sql(COUNT).scalar_one()

    assert pg.read(twice, snapshot=snapshot, wait=False) == expected
    assert resting(pg) == RESTING


def test_a_snapshot_read_that_cannot_take_the_driver_out_of_autocommit_leaves_its_isolation_as_it_was(
    pg: Database, pipelines: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of one snapshot changes two settings of the loop's driver: if the second fails, the first is put
    back too, so a later write that the driver begins itself (no pipeline mode) is not in REPEATABLE READ."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))
    setting: Any = psycopg.Connection.autocommit  # the driver's property

    def refused(driver: psycopg.Connection[Any], value: bool) -> None:
        if not value:
            raise psycopg.OperationalError("injected: the driver cannot leave autocommit")
        setting.__set__(driver, value)

    with monkeypatch.context() as patched:
        patched.setattr(loop_connection.BoundedConnection, "autocommit", property(setting.__get__, refused))
        with pytest.raises(psycopg.OperationalError, match="injected"):
            pg.read(lambda conn: 1, snapshot=True, wait=False)

    isolation = when_ready(
        lambda: pg.run(lambda conn: conn.exec_driver_sql("SHOW transaction_isolation").scalar_one(), wait=False)
    )
    assert isolation == "read committed"
    assert resting(pg) == RESTING


def test_a_write_on_the_loop_that_need_not_reach_the_disk_relaxes_only_its_own_commit(
    pg: Database, pipelines: bool
) -> None:
    """`durable=False` is set inside the unit's transaction (`SET LOCAL`): in autocommit it would be refused,
    and the next unit, durable, must not inherit it."""
    when_ready(lambda: pg.read(lambda conn: 1, wait=False))

    def unit(conn: Connection) -> str:
        insert(1)(conn)
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())

    assert pg.run(unit, wait=False, durable=False) == "off"
    assert pg.run(lambda conn: conn.exec_driver_sql("SHOW synchronous_commit").scalar_one(), wait=False) == "on"
    assert count(pg) == 1


def test_a_refusal_that_lasts_is_warned_of_once(
    pg: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that refuses the loop's connection for good (PgBouncer without `ignore_startup_parameters = options`:
    `unsupported startup parameter`) is asked again every `REST_S` while the server runs: one warning with the reason,
    then DEBUG lines, not a traceback every five seconds. Work goes to worker threads all along."""
    caplog.set_level("DEBUG", logger=loop_connection.__name__)
    monkeypatch.setattr(loop_connection, "REST_S", 0.0)

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise psycopg.OperationalError("FATAL:  unsupported startup parameter: options")

    monkeypatch.setattr(loop_connection.BoundedConnection, "connect", refused)
    deadline = time.monotonic() + 10
    while caplog.text.count("again: ") < 3:  # three opens refused after the first
        assert time.monotonic() < deadline, caplog.text
        with pytest.raises(WouldWait):
            pg.run(insert(1), wait=False)
        time.sleep(0.01)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name == loop_connection.__name__]
    assert len(warnings) == 1 and "unsupported startup parameter" in caplog.text
    assert pg.run(insert(1)) == 1 and count(pg) == 1
