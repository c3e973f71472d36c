"""The Database wrapper: URL forms, retries users never see, and clean unavailability errors."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.storage import database as database_module
from mcp_server.storage.database import Database, LedgerNotOpened, default_database_url, redacted_url
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.storage.statement import Statement
from tests.support import (
    POSTGRES_URL_ENV,
    create_schema,
    drop_schemas,
    ledger_transfer,
    postgres_base_url,
    url_with_search_path,
)


def assert_write_lock_free(database_url: str) -> None:
    """Another connection takes the SQLite file's write lock at once: no transaction was left holding it."""
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0.2)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_plain_path_and_sqlite_url_are_the_same_database(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "ledger.db"
    first = Database.open(str(path))
    Ledger(first).seed_demo()
    first.close()
    second = Database.open(f"sqlite:///{path}")
    try:
        assert second.dialect == "sqlite"
        assert Ledger(second).balance("ACC-001").balance_minor == 500000
        modes = second.read(
            lambda conn: (
                conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar(),
                conn.exec_driver_sql("PRAGMA foreign_keys").scalar(),
            )
        )
        assert modes == ("wal", 2, 1)  # synchronous 2 == FULL
    finally:
        second.close()


def test_a_sqlite_url_under_the_home_directory_opens_the_file_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~` in a URL is the home directory, as in a plain path: the URL's file was created there empty (`~` expanded)
    while SQLite was asked for `./~/ledger.db`, and the open failed with the stray file left behind."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    first = Database.open("sqlite:///~/ledger.db")
    Ledger(first).seed_demo()
    first.close()
    second = Database.open("~/ledger.db", create=False)
    try:
        assert Ledger(second).balance("ACC-001").balance_minor == 500000
    finally:
        second.close()
    assert not (tmp_path / "~").exists()


def test_a_new_sqlite_ledger_is_private_to_its_owner_whatever_the_umask(tmp_path: Path) -> None:
    """Balances, owners and memos are the bank's: with the usual umask (022) SQLite would create the file,
    and its WAL, readable by every user of the machine."""
    previous = os.umask(0o022)
    try:
        database = Database.open(str(tmp_path / "data" / "ledger.db"))
        Ledger(database).seed_demo()
    finally:
        os.umask(previous)
    try:
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "data", *(tmp_path / "data").iterdir()]}
    finally:
        database.close()
    assert modes == {"data": 0o700, "ledger.db": 0o600, "ledger.db-wal": 0o600, "ledger.db-shm": 0o600}


def test_opening_a_new_ledger_waits_for_another_writer_of_the_file(tmp_path: Path) -> None:
    """Switching a new file to WAL meets another opener's write lock, which SQLite reports at once
    ("database is locked", no busy handler): the open waits for it instead of failing."""
    file = tmp_path / "ledger.db"
    holder = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_opener (x INTEGER)")
    holder.execute("DROP TABLE other_opener")  # it leaves no table: a file holding another's is refused, not waited on
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        db = Database.open(f"sqlite:///{file}")
    finally:
        release.join()
        holder.close()
    try:
        assert db.read(lambda conn: conn.exec_driver_sql("PRAGMA journal_mode").scalar()) == "wal"
    finally:
        db.close()


def test_default_url_lives_in_the_user_data_dir() -> None:
    url = default_database_url()
    assert url.startswith("sqlite:///") and url.endswith("ledger.db") and "bankgate" in url


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        Database.open(url)


@pytest.mark.parametrize(
    "url", ["postgresql://bank:s3cret-pw@db.example:5432x/ledger", "postgresql://bank@[::1/ledger"]
)
def test_a_malformed_url_is_named_so(url: str) -> None:
    """Not Python's "invalid literal for int() with base 10" about a port nobody can see in it."""
    with pytest.raises(LedgerNotOpened, match="the database URL is malformed") as caught:
        Database.open(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("value", ["never", "-1", "5&prepare_threshold=none"])
def test_a_prepare_threshold_that_is_neither_none_nor_a_count_is_named_before_connecting(value: str) -> None:
    with pytest.raises(LedgerNotOpened, match="prepare_threshold must be none or a count"):
        Database.open(f"postgresql://bank@127.0.0.1:1/ledger?prepare_threshold={value}")


def test_postgres_unreachable_is_database_unavailable_without_secrets() -> None:
    with pytest.raises(LedgerError) as caught:
        Database.open("postgresql://bank:s3cret-pw@127.0.0.1:1/nowhere")
    assert caught.value.code == "database_unavailable"
    assert "s3cret" not in caught.value.message and "Traceback" not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bank:s3cret-pw@db.example/ledger",
        "postgresql://bank@db.example/ledger?password=s3cret-pw",
        "postgresql:///ledger?host=db.example&user=bank&password=s3cret-pw&sslmode=require",
        "postgresql://bank@db.example/ledger?sslmode=require&sslpassword=s3cret-pw",
        "postgresql://bank@db.example/ledger?pass%77ord=s3cret-pw",
    ],
)
def test_a_redacted_url_holds_no_password(url: str) -> None:
    """libpq takes a password in the query string as well as in the user info; both are logged at
    start-up and named in errors, so neither may show."""
    shown = redacted_url(url)
    assert "s3cret" not in shown
    assert "db.example" in shown and "ledger" in shown


def test_an_empty_database_is_named_without_the_password_in_its_query() -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    schema = create_schema(base, "bankgate_test")
    try:
        url = url_with_search_path(base, schema) + "&password=s3cret-pw"
        with pytest.raises(LedgerNotOpened) as caught:
            Database.open(url, create=False)
        assert "holds no bankgate ledger" in str(caught.value) and "s3cret" not in str(caught.value)
    finally:
        drop_schemas(base, schema)


def test_an_unknown_role_is_not_told_to_create_the_database() -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    url = make_url(base).set(username="no_such_role_0f3a")
    with pytest.raises(LedgerError) as caught:
        Database.open(url.render_as_string(hide_password=False))
    assert "role" in caught.value.message and "createdb" not in caught.value.message
    assert "check the user and password in --db" in caught.value.message


@pytest.mark.parametrize("create", [True, False])
def test_a_search_path_that_would_build_a_second_ledger_is_refused(create: bool) -> None:
    """PostgreSQL finds tables anywhere on the search path but creates them in its first existing schema:
    with an empty schema before the ledger's, opening would have migrated a new, empty ledger there."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    ledger, empty = create_schema(base, "bankgate_test"), create_schema(base, "bankgate_test")
    try:
        Database.open(url_with_search_path(base, ledger)).close()
        with pytest.raises(LedgerNotOpened, match=f"ledger in schema '{ledger}' but would create tables in '{empty}'"):
            Database.open(url_with_search_path(base, f"{empty},{ledger}"), create=create)
        Database.open(url_with_search_path(base, f"{ledger},{empty}"), create=False).close()  # the ledger first
        with psycopg.connect(base) as conn:
            created = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (empty,)).fetchone()
        assert created == (0,)
    finally:
        drop_schemas(base, ledger, empty)


@pytest.mark.parametrize("path", ["is-a-directory.db", "/proc/bank.db", "/proc/sub/bank.db"])
def test_unopenable_sqlite_file_is_database_unavailable(tmp_path: Path, path: str) -> None:
    (tmp_path / "is-a-directory.db").mkdir()
    with pytest.raises(LedgerError) as caught:
        Database.open(str(tmp_path / path))
    assert caught.value.code == "database_unavailable" and "check the path and its permissions" in caught.value.message


def test_ping(database: Database) -> None:
    database.ping()


def transient_error(backend: str) -> OperationalError:
    if backend == "sqlite":
        cause = sqlite3.OperationalError("database is locked")
        cause.sqlite_errorcode = 5
    else:
        cause = type("SerializationFailure", (Exception,), {"sqlstate": "40001"})("could not serialize")
    return OperationalError("UPDATE accounts ...", {}, cause)


def test_transient_failures_are_retried_in_a_new_transaction(backend: str, ledger: Ledger) -> None:
    ledger.seed_demo()
    attempts: list[int] = []

    def work(conn: Connection) -> int:
        attempts.append(1)
        ledger.transfer_in(conn, "ACC-001", "ACC-002", 100)
        if len(attempts) < 3:
            raise transient_error(backend)
        return len(attempts)

    assert ledger.db.run(work) == 3
    assert ledger.balance("ACC-002").balance_minor == 25000 + 100  # two rolled-back attempts left no trace
    assert ledger.check_invariants() == []


def test_endless_contention_becomes_a_busy_error(backend: str, database: Database) -> None:
    def work(conn: Connection) -> None:
        raise transient_error(backend)

    with pytest.raises(LedgerError) as caught:
        database.run(work)
    assert caught.value.code == "database_unavailable" and "busy" in caught.value.message


def test_a_unique_violation_is_not_retried(backend: str, database: Database) -> None:
    """Retrying the same work meets the same row: a permanent conflict, reported at once (a key
    race cannot cause one: writers take the key's turn before reading it, see `turns`)."""
    database.run(lambda conn: conn.execute(text("CREATE TABLE once (k TEXT PRIMARY KEY)")))
    database.run(lambda conn: conn.execute(text("INSERT INTO once (k) VALUES ('taken')")))
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("INSERT INTO once (k) VALUES ('taken')"))

    with pytest.raises(IntegrityError):
        database.run(work)
    assert attempts == [1]


@pytest.mark.parametrize("busy_timeout_ms", [5_000, 50])
def test_sqlite_writer_outlasts_another_process_lock(
    backend: str,
    database_url: str,
    busy_timeout_ms: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within busy_timeout SQLite waits by itself; beyond it, BEGIN IMMEDIATE fails busy and is retried."""
    if backend != "sqlite":
        pytest.skip("SQLite file locking only")
    monkeypatch.setattr(database_module, "_SQLITE_BUSY_TIMEOUT_MS", busy_timeout_ms)
    caplog.set_level(logging.DEBUG, logger="mcp_server.storage.database")
    db = Database.open(database_url)
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        assert Ledger(db).create_account("Waits").id == "ACC-001"
    finally:
        release.join()
        holder.close()
        db.close()
    retried = "retrying contended ledger transaction" in caplog.text
    assert retried == (busy_timeout_ms < 400)


def test_postgres_deadlock_is_retried_not_surfaced(backend: str, database: Database) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serializes writers, so it cannot deadlock")
    ledger = Ledger(database)
    ledger.seed_demo()
    both_hold_one = threading.Barrier(2, timeout=10)
    results: list[int | BaseException] = []

    def crosswise(first: str, second: str) -> None:
        tries: list[int] = []

        def work(conn: Connection) -> None:
            tries.append(1)
            conn.execute(text("UPDATE accounts SET owner = owner WHERE id = :id"), {"id": first})
            if len(tries) == 1:
                both_hold_one.wait()
            conn.execute(text("UPDATE accounts SET owner = owner WHERE id = :id"), {"id": second})

        try:
            database.run(work)
            results.append(len(tries))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [
        threading.Thread(target=crosswise, args=("ACC-001", "ACC-002")),
        threading.Thread(target=crosswise, args=("ACC-002", "ACC-001")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tries = sorted(r for r in results if isinstance(r, int))
    assert len(tries) == 2, results  # no deadlock reached a caller
    assert tries[0] == 1 and tries[1] >= 2  # the victim succeeded on a retry


def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the long-lived reader is SQLite's")


def test_each_read_on_the_reader_sees_what_committed_before_it(backend: str, ledger: Ledger) -> None:
    sqlite_only(backend)
    ledger.seed_demo()
    assert ledger.balance("ACC-002").balance_minor == 25000  # the reader now exists and has read once
    ledger_transfer(ledger, "ACC-001", "ACC-002", "1.00")
    assert ledger.balance("ACC-002").balance_minor == 25100


def test_a_refused_read_ends_its_snapshot_and_keeps_the_reader(backend: str, ledger: Ledger, database_url: str) -> None:
    """A read that raises must end its transaction, or the reader would pin an old snapshot."""
    sqlite_only(backend)
    ledger.seed_demo()
    ledger.balance("ACC-001")
    reader = ledger.db._reader
    with pytest.raises(LedgerError):
        ledger.balance("ACC-999")
    other = Ledger(Database.open(database_url))
    ledger_transfer(other, "ACC-001", "ACC-002", "2.00")
    other.db.close()

    assert reader is not None and ledger.db._reader is reader
    assert reader.connection.dbapi_connection.in_transaction is False  # type: ignore[union-attr]
    assert ledger.balance("ACC-002").balance_minor == 25200


def test_sqlalchemy_execute_on_the_reader_is_ended_too(backend: str, database: Database) -> None:
    sqlite_only(backend)
    for _ in range(2):
        assert database.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one()) == 1
    assert database.read(lambda conn: conn.in_transaction()) is False


def test_a_driver_error_on_the_reader_is_read_again_on_a_fresh_connection(backend: str, ledger: Ledger) -> None:
    sqlite_only(backend)
    ledger.seed_demo()
    connections: list[object] = []

    def work(conn: Connection) -> int:
        connections.append(conn)
        if len(connections) == 1:
            raise transient_error(backend)
        return ledger.account_in(conn, "ACC-001").balance_minor

    assert ledger.db.read(work) == 500000
    assert len(connections) == 2 and connections[0] is not connections[1]
    assert ledger.balance("ACC-001").balance_minor == 500000  # a new reader took the old one's place


def test_reads_from_many_threads_at_once(backend: str, ledger: Ledger) -> None:
    """Only one read holds the reader; the others take pooled connections meanwhile."""
    sqlite_only(backend)
    ledger.seed_demo()
    barrier = threading.Barrier(4)
    seen: list[int] = []

    def work(conn: Connection) -> int:
        barrier.wait(timeout=5)
        return ledger.account_in(conn, "ACC-003").balance_minor

    threads = [threading.Thread(target=lambda: seen.append(ledger.db.read(work))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == [12000] * 4


UPDATE_HEAD = (
    "INSERT INTO audit_heads (seq, hash, at, key_id, signature) "
    "VALUES ((SELECT COUNT(*) + 1 FROM audit_heads), '', '', '', '')"
)
"""A small write (the audit's old head row is gone: a row of the heads table serves as a counter)."""


def head_seq(database: Database, *, wait: bool = True) -> int:
    count = database.read(lambda conn: conn.exec_driver_sql("SELECT COUNT(*) FROM audit_heads").scalar_one(), wait=wait)
    return int(count)


def test_a_write_that_must_not_wait_is_refused_while_this_process_writes(backend: str, database: Database) -> None:
    """`wait=False` (what an event loop asks) waits a few ms at most for the in-process writer lock."""
    sqlite_only(backend)
    writing, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> None:
        conn.exec_driver_sql(UPDATE_HEAD)
        writing.set()
        release.wait(timeout=10)

    writer = threading.Thread(target=lambda: database.run(slow))
    writer.start()
    try:
        assert writing.wait(timeout=10)
        with pytest.raises(database_module.WouldWait):
            database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)
    finally:
        release.set()
        writer.join(timeout=10)
    assert head_seq(database) == 1  # only the other writer's update
    database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)
    assert head_seq(database) == 2


def test_a_write_that_must_not_wait_waits_out_a_short_in_process_write(
    backend: str, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread's short transaction (the sequencer's, say) is waited for, not a reason for a thread hop."""
    sqlite_only(backend)
    monkeypatch.setattr(database_module, "_PROMPT_TURN_WAIT_S", 5.0)  # the bound, widened past a busy machine
    writing = threading.Event()

    def short(conn: Connection) -> None:
        conn.exec_driver_sql(UPDATE_HEAD)
        writing.set()
        time.sleep(0.05)

    writer = threading.Thread(target=lambda: database.run(short))
    writer.start()
    try:
        assert writing.wait(timeout=10)
        started = time.monotonic()
        database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)  # no WouldWait
        assert time.monotonic() - started >= 0.02  # it did wait for the other writer
    finally:
        writer.join(timeout=10)
    assert head_seq(database) == 2


def test_a_write_that_must_not_wait_is_refused_while_another_process_writes(
    backend: str, database: Database, database_url: str
) -> None:
    """Another process's write lock is not waited for either; pooled connections keep busy_timeout."""
    sqlite_only(backend)
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(database_module.WouldWait):
            database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert head_seq(database) == 0
    assert database.run(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout").scalar()) == 5000


def test_a_write_that_must_not_wait_and_fails_at_its_commit_leaves_no_lock_behind(
    backend: str, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its long-lived connection (SQLite) is never returned to a pool that would roll it back: a failure at its
    COMMIT other than the driver's (a bug's exception) left the transaction open, holding the file's write lock,
    so every other writer of the ledger failed 'database is locked' until the process ended."""
    sqlite_only(backend)
    commit, failing = SQLiteDialect.do_commit, [RuntimeError("a bug at COMMIT")]

    def failing_once(dialect: SQLiteDialect, dbapi_connection: object) -> None:
        if failing:
            raise failing.pop()
        commit(dialect, dbapi_connection)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(SQLiteDialect, "do_commit", failing_once)
    with pytest.raises(RuntimeError, match="a bug at COMMIT"):
        database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)
    assert_write_lock_free(database_url)
    assert head_seq(database, wait=False) == 0, "the loop's read does not see it"
    database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=False)
    assert head_seq(database) == 1, "the failed transaction rolled back; the next one committed"


def synchronous_setting(backend: str, conn: Connection) -> object:
    query = "PRAGMA synchronous" if backend == "sqlite" else "SHOW synchronous_commit"
    return conn.exec_driver_sql(query).scalar()


def test_a_relaxed_commit_relaxes_only_its_own_transaction(backend: str, database: Database) -> None:
    durable, relaxed = (2, 1) if backend == "sqlite" else ("on", "off")  # SQLite: FULL, NORMAL

    def seen(conn: Connection) -> object:
        conn.exec_driver_sql(UPDATE_HEAD)
        return synchronous_setting(backend, conn)

    assert database.run(seen, durable=False) == relaxed
    assert database.run(seen) == durable  # the pooled connection went back with the durable setting
    assert head_seq(database) == 2


def test_a_broken_prompt_writer_is_replaced_with_one_that_still_never_waits(backend: str, database: Database) -> None:
    sqlite_only(backend)

    def timeout(conn: Connection) -> object:
        return conn.exec_driver_sql("PRAGMA busy_timeout").scalar()

    assert database.run(timeout, wait=False) == 0
    broken = database._prompt_writer
    assert broken is not None
    broken.invalidate()  # as a dropped driver connection leaves it

    assert database.run(timeout, wait=False) == 0
    assert database._prompt_writer is not broken


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize("through", ["statement", "sqlalchemy", "both"])
def test_a_write_that_fails_after_writing_leaves_nothing_and_no_lock(
    backend: str, database: Database, database_url: str, wait: bool, through: str
) -> None:
    """A write transaction that raises rolls back what it wrote, whether through `Statement` (the driver's own),
    SQLAlchemy's execute (its own transaction, begun inside ours) or both, on a pooled connection or the
    long-lived one of work that must not wait; the write lock is free after, and the next write commits."""
    sqlite_only(backend)

    def failing(conn: Connection) -> None:
        if through != "sqlalchemy":
            Statement(UPDATE_HEAD).run(conn)
        if through != "statement":
            conn.exec_driver_sql(UPDATE_HEAD)
        raise RuntimeError("after writing")

    with pytest.raises(RuntimeError, match="after writing"):
        database.run(failing, wait=wait)
    assert head_seq(database) == 0, "nothing it wrote was kept"
    assert head_seq(database, wait=False) == 0, "nor seen by the loop's read, on the connection that wrote it"
    assert_write_lock_free(database_url)
    database.run(lambda conn: Statement(UPDATE_HEAD).run(conn), wait=wait)
    database.run(lambda conn: conn.exec_driver_sql(UPDATE_HEAD), wait=wait)
    assert head_seq(database) == 2, "the next writes committed, each on its own"


def test_work_that_must_not_wait_still_never_waits_after_its_rollback_failed(
    backend: str, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relaxed write that must not wait raises, and its ROLLBACK fails too: the connection is discarded (closing
    it ends the transaction). Restoring its durable setting must not quietly reconnect it, with the ordinary
    busy timeout, as the prompt writer: the next work that must not wait would wait seconds for the file's lock."""
    sqlite_only(backend)

    def failing(conn: Connection) -> None:
        Statement(UPDATE_HEAD).run(conn)
        raise RuntimeError("after writing")

    monkeypatch.setattr(database_module, "_SQLITE_END_READ", Statement("ROLLBACK TO no_such_savepoint"))
    with pytest.raises(RuntimeError, match="after writing"):
        database.run(failing, wait=False, durable=False)
    monkeypatch.undo()
    assert_write_lock_free(database_url)
    assert head_seq(database) == 0, "nothing it wrote was kept"
    assert database.run(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout").scalar(), wait=False) == 0
    assert database.run(lambda conn: synchronous_setting(backend, conn), wait=False) == 2  # FULL


def test_a_read_that_must_not_wait_runs_where_its_writes_left_their_pages(backend: str, database: Database) -> None:
    """SQLite drops a connection's page cache whenever another has written since its last read: the event loop's
    read after its own write runs on the prompt writer, whose cache holds the pages it wrote, while the write gate
    is free; otherwise on the reader, without waiting for the gate."""
    sqlite_only(backend)
    writer = database.run(lambda conn: conn, wait=False)

    assert database.read(lambda conn: conn, wait=False) is writer
    assert database.read(lambda conn: conn, wait=False, snapshot=True) is writer
    assert database.read(lambda conn: conn) is not writer  # a worker thread's: the reader
    gate = database._write_gate
    assert gate is not None
    with gate:  # another writer's turn
        assert database.read(lambda conn: conn, wait=False) is not writer


def test_a_loop_read_the_prompt_writer_fails_is_read_again_elsewhere(backend: str, database: Database) -> None:
    sqlite_only(backend)
    broken = database.run(lambda conn: conn, wait=False)
    tries: list[Connection] = []

    def read(conn: Connection) -> int:
        tries.append(conn)
        if conn is broken:
            conn.exec_driver_sql("SELECT no_such_column FROM accounts")
        return int(conn.exec_driver_sql("SELECT 1").scalar_one())

    assert database.read(read, wait=False) == 1
    assert tries[0] is broken and tries[-1] is not broken
    assert database._prompt_writer is not broken


@pytest.mark.anyio
async def test_store_work_moved_off_the_loop_never_reads_on_the_prompt_writer(backend: str, database: Database) -> None:
    """The prompt writer is the event loop's alone: work that found the write gate taken on the loop runs again in a
    worker thread, whose reads may wait (`wait=True`), so they never take the prompt writer, even with the gate free
    again (two threads on one sqlite3 connection, `check_same_thread` off)."""
    sqlite_only(backend)
    store = SqlGateStore(database)
    writer = database.run(lambda conn: conn, wait=False)
    gate = database._write_gate
    assert gate is not None
    gate.acquire()  # another writer's turn, until the work has left the loop
    loop, reads = threading.get_ident(), []

    def work() -> None:
        if threading.get_ident() != loop and gate.locked():
            gate.release()
        reads.append((threading.get_ident() == loop, store.transaction(lambda tx: tx.conn, write=False)))
        store.transaction(lambda tx: tx.conn.exec_driver_sql(UPDATE_HEAD))  # on the loop: the gate is taken

    await store.run(work)
    assert [(on_loop, conn is writer) for on_loop, conn in reads] == [(True, False), (False, False)]
    assert head_seq(database) == 1
