"""Hot-path SQL: compiled once per dialect, executed on the driver cursor of a SQLAlchemy connection.

SQLAlchemy's per-execute machinery (result metadata, events, parameter processing) costs
several times what SQLite spends running a small indexed statement, and a transfer runs
four of them. A `Statement` keeps SQLAlchemy for what it is good at here (turning one
portable `:name` SQL text into each driver's parameter style) and then talks to the
driver directly, inside the same transaction as any ordinary `conn.execute`.

Driver errors are re-raised as SQLAlchemy's `DBAPIError` family (and a dropped connection
is invalidated), so `Database` classifies, retries and reports them exactly like errors
from `conn.execute`.

On PostgreSQL a transaction inside `pipelined` also saves round trips: a write whose outcome
nobody reads (`send`) waits on the connection, and goes to the server with the next statement
whose result is read, or with the COMMIT (`commit`), in one round trip (psycopg's pipeline
mode). The server runs everything in the order it was sent,
and an error in a queued write aborts the transaction as it would have at once: it is raised
by that next statement or by the commit, which then rolls back.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import psycopg
from sqlalchemy import Connection, RootTransaction, text
from sqlalchemy.exc import DBAPIError, StatementError

_Compiled = tuple[str, tuple[str, ...] | None]  # driver SQL, parameter names in order if positional
_Bound = tuple[str, Sequence[Any] | Mapping[str, Any]]  # driver SQL and its arguments
_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})
_QUEUE = "bankgate.queued_writes"
"""`Connection.info` key of the writes waiting for the next round trip, present inside `pipelined`."""
_CURSOR = "bankgate.cursor"
"""`Connection.info` key of the cursor statements run on (PostgreSQL, see `_cursor`)."""


class Statement:
    """One SQL text with `:name` parameters, portable across the ledger's backends."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self._compiled: dict[str, _Compiled] = {}

    def one(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> tuple[Any, ...] | None:
        """The first row, or `None`."""
        row: tuple[Any, ...] | None = self._execute(conn, params).fetchone()
        return row

    def all(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._execute(conn, params).fetchall()
        return rows

    def run(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> int:
        """Execute a write; return the number of rows it touched."""
        count: int = self._execute(conn, params).rowcount
        return count

    def send(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> None:
        """Execute a write whose outcome the caller does not read: inside `pipelined`, on the next
        round trip; otherwise now. Its error, if any, aborts the transaction either way."""
        if _QUEUE in conn.info:
            self._queue(conn, params)
        else:
            self._execute(conn, params)

    def _queue(self, conn: Connection, params: Mapping[str, Any]) -> None:
        conn.info[_QUEUE].append(self._bound(conn, params))

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Every statement of a call passes here (two dozen in a gated transfer), so it stays plain: no
        context manager, and on SQLite no look for a queue, which only `pipelined` (PostgreSQL) keeps."""
        sql, arguments = self._bound(conn, params)
        driver = _driver(conn)
        queue: list[_Bound] | None = None
        if conn.dialect.name == "postgresql":
            info = conn.info
            cursor, queue = _cursor(info, driver), info.get(_QUEUE)
        else:
            cursor = driver.cursor()  # sqlite3's cost nothing to speak of
        try:
            if not queue:
                cursor.execute(sql, arguments)
            else:  # the writes waiting go in this round trip; this statement's result is the cursor's last
                with driver.pipeline():
                    _send_queued(cursor, queue)
                    cursor.execute(sql, arguments)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, driver, cursor, sql, arguments, exc) from exc
        return cursor

    def _bound(self, conn: Connection, params: Mapping[str, Any]) -> _Bound:
        """The driver's SQL for this dialect and `params` in the form it takes."""
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._compiled[conn.dialect.name] = _compile(self.sql, conn)
        sql, positions = compiled
        return sql, params if positions is None else [params[name] for name in positions]


_PIPELINES = psycopg.capabilities.has_pipeline()
"""Whether this libpq has pipeline mode (14 and later); without it, `send` runs each write at once."""


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Queue `send`s on `conn` until the next round trip, for one PostgreSQL transaction; end it
    with `commit`. Nothing queued outlives the block: a transaction that fails is rolled back.

    The transaction's BEGIN is queued first, so it travels with the first statement whose result is
    read: the driver is in autocommit for the block, because psycopg, left to begin by itself, sends
    its BEGIN and waits for the answer (even in pipeline mode), a round trip of its own. Its commit
    and rollback still end the transaction (they look at the server's state, not at autocommit)."""
    if conn.dialect.name != "postgresql" or not _PIPELINES:
        yield
        return
    info = conn.info  # read once: on a connection invalidated meanwhile, `conn.info` would reconnect
    with driver_mode(conn, autocommit=True):
        info[_QUEUE] = []
        try:
            _BEGIN.send(conn)
            yield
        finally:
            info.pop(_QUEUE, None)


@contextmanager
def driver_mode(
    conn: Connection, *, autocommit: bool = False, isolation: psycopg.IsolationLevel | None = None
) -> Iterator[None]:
    """The PostgreSQL driver in `autocommit`, or else beginning its transactions at `isolation` (`None`: the
    engines' READ COMMITTED), for the block; then as it was. Only the one setting is touched: each costs
    the driver a wait of its own.

    Set on the psycopg connection itself: SQLAlchemy's `execution_options(isolation_level=...)` queues a
    reset for the connection's return to its pool at every change, and the loop's connection, never
    returned, kept them all (two more each call, without end). A connection that cannot be put back
    (lost, or still in a transaction) is invalidated, so that no pool hands it out in this mode."""
    driver = _driver(conn)
    setting = "autocommit" if autocommit else "isolation_level"
    before = getattr(driver, setting)
    if autocommit or isolation is not None:
        setattr(driver, setting, autocommit or isolation)
    try:
        yield
    finally:
        if not conn.invalidated and getattr(driver, setting) != before:
            try:
                setattr(driver, setting, before)
            except psycopg.Error:
                conn.invalidate()


_BEGIN = Statement("BEGIN ISOLATION LEVEL READ COMMITTED")
"""What psycopg would send: the isolation the ledger's locking is designed for (`database`), whatever the
server's default."""


def commit(conn: Connection, transaction: RootTransaction) -> None:
    """Commit `transaction`; the writes still queued go with the COMMIT, in one round trip."""
    info = conn.info
    queue: list[_Bound] | None = info.get(_QUEUE)
    if queue:
        driver = _driver(conn)
        cursor = _cursor(info, driver)
        with _driver_errors(conn, driver, cursor, "COMMIT", ()), driver.pipeline():
            _send_queued(cursor, queue)
            cursor.execute("COMMIT")  # so the driver's commit, below, has nothing left to send
    transaction.commit()


def send_queued_before(conn: Connection, *_event: Any) -> None:
    """`before_cursor_execute` listener: SQLAlchemy's own statements run after the writes queued before them."""
    info = conn.info
    queue: list[_Bound] | None = info.get(_QUEUE)
    if queue:
        driver = _driver(conn)
        cursor = _cursor(info, driver)
        with _driver_errors(conn, driver, cursor, *queue[0]), driver.pipeline():
            _send_queued(cursor, queue)


def _send_queued(cursor: psycopg.Cursor[Any], queue: list[_Bound]) -> None:
    """Hand the queued writes to the pipeline (the caller is in one), emptying the queue."""
    for sql, arguments in queue:
        cursor.execute(sql, arguments)
    queue.clear()


def _cursor(info: dict[Any, Any], driver: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """The PostgreSQL connection's one cursor for statements, kept in its `Connection.info`: a new psycopg
    cursor per statement cost about 20 µs of the event loop's time (its adapters are copied). Each statement
    reads its result before the next is sent, and in a pipeline the cursor keeps the last one's."""
    cursor: psycopg.Cursor[Any] | None = info.get(_CURSOR)
    if cursor is None or cursor.connection is not driver:
        cursor = info[_CURSOR] = driver.cursor()
    return cursor


def _driver(conn: Connection) -> Any:
    driver = conn.connection.dbapi_connection
    assert driver is not None, "a checked-out connection has a driver connection"
    return driver


@contextmanager
def _driver_errors(conn: Connection, driver: Any, cursor: Any, sql: str, arguments: Any) -> Iterator[None]:
    """Re-raise the driver's errors as SQLAlchemy's (naming `sql`), invalidating `conn` if it was lost."""
    try:
        yield
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, driver, cursor, sql, arguments, exc) from exc


def _translated(conn: Connection, driver: Any, cursor: Any, sql: str, arguments: Any, exc: Any) -> StatementError:
    """The driver's error `exc` as SQLAlchemy's (naming `sql`); `conn` is invalidated if the error lost it."""
    dialect = conn.dialect
    disconnected = dialect.is_disconnect(exc, driver, cursor)
    if disconnected:
        conn.invalidate(exc)
    error: StatementError = DBAPIError.instance(
        sql, arguments, exc, dialect.loaded_dbapi.Error, connection_invalidated=disconnected, dialect=dialect
    )
    return error


def _compile(sql: str, conn: Connection) -> _Compiled:
    compiled = text(sql).compile(dialect=conn.dialect)
    positions = compiled.positiontup
    return str(compiled), None if positions is None else tuple(positions)
