"""Hot-path SQL: compiled once per dialect, executed on the driver cursor of a SQLAlchemy connection.

SQLAlchemy's per-execute machinery (result metadata, events, parameter processing) costs
several times what SQLite spends running a small indexed statement, and a transfer runs
four of them. A `Statement` keeps SQLAlchemy for what it is good at here (turning one
portable `:name` SQL text into each driver's named parameters: sqlite3's `:name`, psycopg's
`%(name)s`, so the caller's `dict` goes to the driver as it is) and then talks to the
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

A read whose parameters are known before its result is needed can go ahead too (`prefetch`): it
travels with the next round trip, after the statement that makes it, and the `one`/`all` that asks
for it later takes the result already there. Such a read is never older than anything sent before
its consumer asks: a statement sent after it (a write, a lock) drops the result, and it is read
again then.
"""

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect, RootTransaction, text
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError, StatementError

from mcp_server.storage import prepared
from mcp_server.storage.round_trip import Sent, send_together

_Bound = tuple[str, dict[str, Any]]  # driver SQL and its arguments
_Key = tuple[str, frozenset[tuple[str, Any]]]  # a read's identity among those sent ahead (`_key`)
_NO_PARAMETERS: dict[str, Any] = {}
"""The parameters of a statement that takes none: a `dict`, as sqlite3 takes named ones; no driver writes it."""
_QUEUE = "bankgate.queued_writes"
"""`Connection.info` key of the writes waiting for the next round trip, present inside `pipelined`."""
_CURSOR = "bankgate.cursor"
"""`Connection.info` key of the cursor statements run on, with its driver connection (PostgreSQL, see `_cursor`)."""
_AHEAD = "bankgate.reads_ahead"
"""`Connection.info` key of the reads sent ahead (`prefetch`): `_Ahead` by statement and arguments, present
inside `pipelined` and `reading_ahead`."""
_SPARE = "bankgate.spare_cursors"
"""`Connection.info` key of the cursors reads ahead ran on, free again (a new one costs about 20 µs)."""
_TRIPS = "bankgate.round_trips"
"""`Connection.info` key of the `RoundTrips` of the unit of work on the connection (PostgreSQL, see `counted`)."""


class Statement:
    """One SQL text with `:name` parameters, portable across the ledger's backends."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self._compiled: dict[str, str] = {}
        """The driver's SQL by dialect name, its parameters named (`_driver_sql`)."""

    def one(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> tuple[Any, ...] | None:
        """The first row, or `None`."""
        row: tuple[Any, ...] | None = self._execute(conn, params).fetchone()
        return row

    def all(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._execute(conn, params).fetchall()
        return rows

    def run(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> int:
        """Execute a write; return the number of rows it touched."""
        if conn.dialect.name == "postgresql":
            _forget_sent(conn.info)
        count: int = self._execute(conn, params).rowcount
        return count

    def send(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> None:
        """Execute a write whose outcome the caller does not read: inside `pipelined`, on the next
        round trip; otherwise now. Its error, if any, aborts the transaction either way."""
        if conn.dialect.name == "postgresql" and _QUEUE in conn.info:
            self._queue(conn, params)
        else:
            self._execute(conn, params)

    def prefetch(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> None:
        """Send this read with the next round trip (PostgreSQL, inside `pipelined` or `reading_ahead`), so that
        `one`/`all` with the same `params`, later in the transaction, takes its result without a round trip of
        its own; elsewhere nothing happens until they run it. For a read whose locks, if any, may be taken
        there: it runs after whatever was sent before that round trip, and before what is sent after."""
        if conn.dialect.name != "postgresql":
            return
        ahead: dict[_Key, _Ahead] | None = conn.info.get(_AHEAD)
        if ahead is not None:
            bound = self._bound(conn, params)
            ahead.setdefault(_key(bound), _Ahead(bound))

    def arrived(self, conn: Connection, params: dict[str, Any] = _NO_PARAMETERS) -> bool:
        """Whether this read, sent ahead, has its result here already: asking for it waits on nothing."""
        ahead: dict[_Key, _Ahead] | None = conn.info.get(_AHEAD)
        went = ahead.get(_key(self._bound(conn, params))) if ahead else None
        return went is not None and went.cursor is not None

    def _queue(self, conn: Connection, params: dict[str, Any]) -> None:
        info = conn.info
        info[_QUEUE].append(self._bound(conn, params))
        _forget_sent(info)

    def _execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Every statement of a call passes here (two dozen in a gated transfer), so it stays plain: no
        context manager, no call that is not the driver's, and on SQLite no look for a queue or a read
        ahead, which only PostgreSQL keeps. `params` go to the driver as given (`_driver_sql`)."""
        dialect, compiled = conn.dialect, self._compiled
        sql = compiled[dialect.name] if dialect.name in compiled else self._driver_sql(dialect)
        # `conn.connection`'s own answer while connected, without its property call; else the property's.
        driver: Any = (conn._dbapi_connection or conn.connection).dbapi_connection
        if dialect.name != "postgresql":
            try:
                return driver.execute(sql, params)  # sqlite3: a cursor of its own, executed
            except dialect.loaded_dbapi.Error as exc:
                raise _translated(conn, driver, None, sql, params, exc) from exc
        info = conn.info
        cursor, queue, ahead = _cursor(info, driver), info.get(_QUEUE), info.get(_AHEAD)
        waiting: list[_Ahead] | None = None
        if ahead:
            went = ahead.pop(_key((sql, params)), None)
            if went is not None and went.cursor is not None:
                return _spared(info, went.cursor)  # its result came back with an earlier round trip
            waiting = [read for read in ahead.values() if read.cursor is None]
        trips = info.get(_TRIPS)
        if trips is not None:
            trips.begun += 1
        try:
            if not queue and not waiting:
                cursor.execute(sql, params)
            else:  # the writes waiting go first, reads ahead after; this statement's result is the cursor's last
                send_together(
                    driver, _queued_then(cursor, queue, [(cursor, sql, params), *_ahead(info, driver, waiting)])
                )
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, driver, cursor, sql, params, exc) from exc
        return cursor

    def _bound(self, conn: Connection, params: dict[str, Any]) -> _Bound:
        """The driver's SQL for this dialect, with `params` (a read sent ahead, a write queued)."""
        dialect = conn.dialect
        compiled = self._compiled
        return (compiled[dialect.name] if dialect.name in compiled else self._driver_sql(dialect)), params

    def _driver_sql(self, dialect: Dialect) -> str:
        """This statement in `dialect`'s driver SQL, compiled on first use, with named parameters on every
        backend (sqlite3's `:name`, psycopg's `%(name)s`): the caller's `dict` goes to the driver as it is."""
        sql = self._compiled.get(dialect.name)
        if sql is None:
            named = _SQLITE_NAMED if dialect.name == "sqlite" else dialect
            compiled = text(self.sql).compile(dialect=named)
            assert compiled.positiontup is None, f"{dialect.name} takes named parameters"
            sql = self._compiled[dialect.name] = str(compiled)
        return sql


_SQLITE_NAMED = SQLiteDialect_pysqlite(paramstyle="named")
"""SQLite's dialect with sqlite3's named parameters (`:name`, from a `dict`), which the engine's (`?`) is not."""

_PIPELINES = psycopg.capabilities.has_pipeline()
"""Whether this libpq has pipeline mode (14 and later); without it, `send` runs each write at once."""


class RoundTrips:
    """The round trips a unit of work has begun on its connection (`counted`): a failure in the first met the
    connection as the unit found it, the server having answered nothing of the unit."""

    __slots__ = ("begun",)

    def __init__(self) -> None:
        self.begun = 0


def counted(conn: Connection) -> RoundTrips:
    """Count the round trips of the unit of work starting on `conn` (PostgreSQL; SQLAlchemy's own statements too,
    through `send_queued_before`). The count is an object of its own: a lost connection's `info` may be emptied."""
    trips = conn.info[_TRIPS] = RoundTrips()
    return trips


class _Ahead:
    """A read sent ahead (`Statement.prefetch`): its driver SQL and arguments, and once sent, its cursor."""

    __slots__ = ("bound", "cursor")

    def __init__(self, bound: _Bound) -> None:
        self.bound = bound
        self.cursor: psycopg.Cursor[Any] | None = None


def _key(bound: _Bound) -> _Key:
    """A read's identity among those sent ahead: its SQL and its arguments, hashable."""
    sql, arguments = bound
    return sql, frozenset(arguments.items())


def _ahead(info: dict[Any, Any], driver: psycopg.Connection[Any], waiting: list[_Ahead] | None) -> list[Sent]:
    """The reads waiting to go ahead, each on a cursor of its own (spare, else new), to be sent now."""
    if not waiting:
        return []
    spare: list[psycopg.Cursor[Any]] = info.setdefault(_SPARE, [])
    sent: list[Sent] = []
    for read in waiting:
        while spare and spare[-1].connection is not driver:
            spare.pop()
        read.cursor = spare.pop() if spare else driver.cursor()
        sent.append((read.cursor, *read.bound))
    return sent


def _spared(info: dict[Any, Any], cursor: psycopg.Cursor[Any]) -> psycopg.Cursor[Any]:
    """`cursor`, whose result its caller reads at once, then free for the next read ahead."""
    info.setdefault(_SPARE, []).append(cursor)
    return cursor


def _forget_sent(info: dict[Any, Any]) -> None:
    """A statement is about to be sent that may change what the reads already sent ahead found: drop them
    (their cursors are free again), so that each is read afresh, after it, when asked for."""
    ahead: dict[_Key, _Ahead] | None = info.get(_AHEAD)
    if ahead:
        for key, read in list(ahead.items()):
            if read.cursor is not None:
                _spared(info, ahead.pop(key).cursor)  # type: ignore[arg-type]


def reading_ahead(conn: Connection) -> AbstractContextManager[None]:
    """Let `prefetch` send reads ahead on `conn` for the block (PostgreSQL; a read-only block outside
    `pipelined`, which allows it too); what was not asked for is dropped at its end."""
    if conn.dialect.name != "postgresql" or not _PIPELINES:
        return _AS_IS
    return _ReadingAhead(conn.info)


def pipelined(conn: Connection) -> AbstractContextManager[None]:
    """Queue `send`s on `conn` until the next round trip, for one PostgreSQL transaction; end it
    with `commit`. Nothing queued outlives the block: a transaction that fails is rolled back.

    The transaction's BEGIN is queued first, so it travels with the first statement whose result is
    read: the driver is in autocommit for the block, because psycopg, left to begin by itself, sends
    its BEGIN and waits for the answer (even in pipeline mode), a round trip of its own. Its commit
    and rollback still end the transaction (they look at the server's state, not at autocommit). Without
    pipeline mode, the driver begins the transaction itself (a connection resting in autocommit is taken out
    of it for the block)."""
    if conn.dialect.name != "postgresql":
        return _AS_IS
    return _Pipelined(conn) if _PIPELINES else _DriverMode(conn, False, None)


def driver_mode(
    conn: Connection, *, autocommit: bool = False, isolation: psycopg.IsolationLevel | None = None
) -> AbstractContextManager[None]:
    """The PostgreSQL driver in `autocommit` (or not), beginning its transactions at `isolation` (`None`: as it
    is, the engines' READ COMMITTED), for the block; then as it was. Only a setting that differs is touched:
    each change costs the driver a wait of its own (the loop's connection rests in autocommit, as its writes
    and reads want it: `loop_connection`; a pooled one in READ COMMITTED transactions).

    Set on the psycopg connection itself: SQLAlchemy's `execution_options(isolation_level=...)` queues a
    reset for the connection's return to its pool at every change, and the loop's connection, never
    returned, kept them all (two more each call, without end). A connection that cannot be put back
    (lost, or still in a transaction) is invalidated, so that no pool hands it out in this mode."""
    return _DriverMode(conn, autocommit, isolation)


# The three blocks above are classes, not generators, as `database._Turn`: every PostgreSQL transaction enters
# two or three of them, and a generator's machinery cost some 6 more calls each.


class _ReadingAhead:
    __slots__ = ("_info",)

    def __init__(self, info: dict[Any, Any]) -> None:
        self._info = info

    def __enter__(self) -> None:
        self._info[_AHEAD] = {}

    def __exit__(self, *exc_info: object) -> None:
        self._info.pop(_AHEAD, None)


class _DriverMode:
    __slots__ = ("_autocommit", "_conn", "_driver", "_isolation", "_was")

    def __init__(self, conn: Connection, autocommit: bool, isolation: psycopg.IsolationLevel | None) -> None:
        self._conn = conn
        self._driver = _driver(conn)
        self._autocommit = autocommit
        self._isolation = isolation
        self._was: tuple[bool, psycopg.IsolationLevel | None] | None = None
        """The settings before the block, once one of them was changed."""

    def __enter__(self) -> None:
        driver, autocommit, isolation = self._driver, self._autocommit, self._isolation
        was = driver.autocommit, driver.isolation_level
        if isolation is not None and was[1] != isolation:
            self._was = was
            driver.isolation_level = isolation
        if was[0] != autocommit:
            self._was = was
            try:
                driver.autocommit = autocommit
            except BaseException:  # the isolation set above goes back with it: the block does not run
                self.__exit__()
                raise

    def __exit__(self, *exc_info: object) -> None:
        conn, driver, was = self._conn, self._driver, self._was
        if was is None or conn.invalidated:
            return
        try:
            if driver.autocommit != was[0]:
                driver.autocommit = was[0]
            if driver.isolation_level != was[1]:
                driver.isolation_level = was[1]
        except psycopg.Error:
            conn.invalidate()


class _Pipelined:
    __slots__ = ("_conn", "_info", "_mode")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._info = conn.info  # read once: on a connection invalidated meanwhile, `conn.info` would reconnect
        self._mode = _DriverMode(conn, True, None)  # its BEGIN is queued (`pipelined`)

    def __enter__(self) -> None:
        self._mode.__enter__()
        info = self._info
        info[_QUEUE], info[_AHEAD] = [], {}
        try:
            _BEGIN.send(self._conn)  # queued
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info: object) -> None:
        info = self._info
        info.pop(_QUEUE, None)
        info.pop(_AHEAD, None)
        self._mode.__exit__(*exc_info)


_AS_IS: AbstractContextManager[None] = nullcontext()
"""A block that does nothing (another backend, or a libpq without pipeline mode); shared: it keeps no state."""


_BEGIN = Statement("BEGIN ISOLATION LEVEL READ COMMITTED")
"""What psycopg would send: the isolation the ledger's locking is designed for (`database`), whatever the
server's default."""


def commit(conn: Connection, transaction: RootTransaction) -> None:
    """Commit `transaction`; the writes still queued go with the COMMIT, in one round trip (reads ahead
    that nothing asked for do not)."""
    info = conn.info
    info.pop(_AHEAD, None)
    queue: list[_Bound] | None = info.get(_QUEUE)
    if queue:
        driver = _driver(conn)
        cursor = _cursor(info, driver)
        try:
            send_together(driver, _queued_then(cursor, queue, [(cursor, "COMMIT", _NO_PARAMETERS)]))
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, driver, cursor, "COMMIT", (), exc) from exc
    transaction.commit()


def send_queued_before(conn: Connection, *_event: Any) -> None:
    """`before_cursor_execute` listener: SQLAlchemy's own statements run after the writes queued before them
    (and, since they may write, the reads already sent ahead are read again when asked for), each counted as a
    round trip of its unit of work (`counted`), as is sending the queue first."""
    info = conn.info
    _forget_sent(info)
    trips: RoundTrips | None = info.get(_TRIPS)
    queue: list[_Bound] | None = info.get(_QUEUE)
    if queue:
        if trips is not None:
            trips.begun += 1
        driver = _driver(conn)
        cursor = _cursor(info, driver)
        sql, arguments = queue[0]
        try:
            send_together(driver, _queued_then(cursor, queue, []))
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, driver, cursor, sql, arguments, exc) from exc
    if trips is not None:
        trips.begun += 1  # SQLAlchemy's statement, next


def _queued_then(cursor: psycopg.Cursor[Any], queue: list[_Bound] | None, then: list[Sent]) -> list[Sent]:
    """The queued writes (on `cursor`), emptying the queue, followed by `then`."""
    if not queue:
        return then
    sent: list[Sent] = [(cursor, sql, arguments) for sql, arguments in queue]
    queue.clear()
    return sent + then


def _cursor(info: dict[Any, Any], driver: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """The PostgreSQL connection's one cursor for statements, kept in its `Connection.info`: a new psycopg
    cursor per statement cost about 20 µs of the event loop's time (its adapters are copied). Each statement
    reads its result before the next is sent, and in a pipeline the cursor keeps the last one's."""
    kept: tuple[psycopg.Connection[Any], psycopg.Cursor[Any]] | None = info.get(_CURSOR)
    if kept is not None and kept[0] is driver:
        return kept[1]
    cursor = driver.cursor()
    info[_CURSOR] = driver, cursor
    return cursor


def _driver(conn: Connection) -> Any:
    driver = conn.connection.dbapi_connection
    assert driver is not None, "a checked-out connection has a driver connection"
    return driver


def _translated(conn: Connection, driver: Any, cursor: Any, sql: str, arguments: Any, exc: Any) -> StatementError:
    """The driver's error `exc` as SQLAlchemy's (naming `sql`); `conn` is invalidated if the error lost it, its
    prepared statements forgotten if the server lacks them (`prepared.forget_if_gone`)."""
    dialect = conn.dialect
    prepared.forget_if_gone(driver, exc)
    disconnected = dialect.is_disconnect(exc, driver, cursor)
    if disconnected:
        conn.invalidate(exc)
    error: StatementError = DBAPIError.instance(
        sql, arguments, exc, dialect.loaded_dbapi.Error, connection_invalidated=disconnected, dialect=dialect
    )
    return error
