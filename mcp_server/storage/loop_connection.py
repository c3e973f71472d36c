"""The event loop's own PostgreSQL connection, whose every wait on the server is bounded.

A worker thread per gate transaction costs more than the transaction on PostgreSQL: thread
hops, and every statement handing the GIL to the busy event loop and waiting to take it back
(`bench.load` counted 77–122 thread switches a call; CHANGELOG has the figures). So gate
transactions run on the loop itself, as they do on SQLite, on this one connection (the loop
runs one at a time). Three rules keep a database that misbehaves from stopping the server:

* every wait on the server ends within `WAIT_S`; past it the connection is closed (which rolls
  back what it had sent), work whose COMMIT was not yet sent moves to a worker thread (within the
  call's deadline: a pause of the database costs the loop one wait, not the call), and the loop
  leaves the database to worker threads for `REST_S` (`failed`);
* a lock another transaction holds is waited on for `LOCK_TIMEOUT` at most: the transaction
  then rolls back and `Database` runs it again in a worker thread, where waiting is harmless (a
  startup option: a connection opened without it, behind a pooler that drops options, is not used);
* the connection is opened, and reopened after a failure, on a background thread, never on
  the loop; until it is ready, gate work goes to worker threads;
* one the server closed while it sat idle (a restart, `pg_terminate_backend`) fails the first
  round trip of the next unit: that unit goes to a worker thread (`Database`: a fresh pooled
  connection) and the connection is reopened at once, without resting.

All this pays only while a round trip is short: the loop waits out each one, where threads
would overlap them. So the connection is kept only if its round trip, measured on the loop
itself when it first borrows the new connection (a thread would time its own wait for the GIL),
is under `ROUND_TRIP_LIMIT_S` (a database on this host or next to it); a farther one leaves the
work to worker threads, measured again every `FAR_REST_S`.

Why the loop waits instead of awaiting: store work run in a greenlet on this one connection, each
wait handed to the loop (psycopg's `wait_async`, with an interval: its default of 0 spins), was
measured under `bench.load` at 32 clients. It served 2025-11-25 clients as fast as 2026-07-28
ones (they wait 3–4× longer while the loop blocks: a call of theirs takes more turns of the loop),
but made about 15 % fewer calls a second (0–29 % in five interleaved pairs). A loop that never
blocks runs about 11 iterations and 36 callbacks a call, against 1 and 22: 1.5–2 ms more CPU a call
than the waits it saves.

Why 2025-11-25 clients wait longer (server timed per phase, 32 clients): the SDK's 2025-11-25 transport hands
a call between tasks over anyio memory streams, two turns of the loop a hop (`send` yields before it
delivers). A balance read takes 9 turns from arrival to its result on the wire (3 in, 6 out), against 1; a
transfer asked inline about 23 (its question 6 more, the answer back ~8), against 2 over its two rounds; the
gate's own work is the same 2–4 ms. Each turn runs every ready call's step, database waits included (38–45 %
of the loop's time on PostgreSQL): 17–25 ms a turn at 86–136 calls/s, so the 9 turns cost ~250 ms. The gap
shows on SQLite and in memory too (3.5×; 7× on the bare SDK server, one loop for both ends). Letting at most
one transaction (or 2 ms of them) run a turn cut their p50 1.3–5× but raised approved transfers' by ~20 % (−5
to +66 % in 12 interleaved pairs) and cost ~5 % of the calls a second: with the rate and the clients fixed the
mean wait is fixed (Little's law), so scheduling only moves it. Fewer hops in the SDK's transport, or a loop
that overlaps its waits (above), would shorten it.
"""

import logging
import threading
import time
from collections.abc import Mapping
from contextlib import closing
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool

from mcp_server.storage import prepared

WAIT_S = 1.0
"""The longest the event loop waits on the server for one step (a statement, a commit)."""
REST_S = 5.0
"""After a failure, how long gate work stays in worker threads before the connection is reopened."""
LOCK_TIMEOUT = "10ms"
"""How long a statement on the loop waits for a lock before its transaction moves to a worker thread."""
ROUND_TRIP_LIMIT_S = 0.00025
"""The longest round trip (`SELECT 1`, the fastest of ten: a busy machine slows some, never the network's
floor) at which the loop runs transactions itself: a mixed call makes about a dozen, so the loop then
idles ~3 ms a call, about what the threads' hand-offs cost."""
FAR_REST_S = 60.0
"""How long work stays in worker threads after the round trip was measured too long."""

_log = logging.getLogger(__name__)


class Unanswered(psycopg.OperationalError):
    """The server did not answer within `WAIT_S`: it is slow or silent, not known to have closed the connection
    (so the pool's connections are kept). Work whose COMMIT was not sent moves to a worker thread (see `Database`)."""


class BoundedConnection(psycopg.Connection[Any]):
    """psycopg's connection, except that no wait on the server outlasts `WAIT_S`."""

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            return super().wait(gen, interval, WAIT_S if timeout is None else timeout)
        except psycopg.errors._WaitTimeout as exc:
            self.close()  # mid-protocol: the connection cannot be used again
            raise Unanswered(f"the database did not answer within {WAIT_S:g} s") from exc


class LoopConnection:
    """The loop's connection: ready, being opened in the background, or resting after a failure."""

    def __init__(self, engine: Engine, connect_args: Mapping[str, Any]) -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params = prepared.for_driver({**cparams, **connect_args})
        params["options"] = " ".join(filter(None, [params.get("options"), f"-c lock_timeout={LOCK_TIMEOUT}"]))
        self.engine = create_engine(
            engine.url,
            poolclass=NullPool,
            creator=lambda: BoundedConnection.connect(*cargs, **params),
            isolation_level="READ COMMITTED",
        )
        self._conn: Connection | None = None
        self._fresh: Connection | None = None
        """Opened in the background, its round trip not measured yet."""
        self._opening = threading.Lock()
        self._in_use = threading.Lock()
        self._rest_until = 0.0
        self._refused: str | None = None
        """Why the last open failed, as logged (`_refusal`); `None` once one succeeded."""

    def take(self) -> Connection | None:
        """The connection for one unit of work, held until `give_back`, or `None` (nothing held): not ready
        (then, unless resting, it starts to open), or in use (by a thread other than the loop's, say: never
        two units at once). Two calls, not a context manager: every gate transaction takes it."""
        if not self._in_use.acquire(blocking=False):
            return None
        try:
            if self._conn is not None and self._conn.invalidated:  # a statement found it broken
                self._discard()
            conn = self._conn or self._adopted()
            if conn is None and time.monotonic() >= self._rest_until and self._opening.acquire(blocking=False):
                threading.Thread(target=self._open, name="bankgate-loop-connection", daemon=True).start()
        except BaseException:
            self._in_use.release()
            raise
        if conn is None:
            self._in_use.release()
        return conn

    def give_back(self) -> None:
        """End the unit of work that `take` returned the connection to."""
        self._in_use.release()

    def failed(self, *, rest: bool = True) -> None:
        """Drop the connection after an error that was not contention, and rest before reopening it; without
        `rest` (the server had closed it while it sat idle, and may well be up), reopen it at the next borrow."""
        with self._in_use:  # never under a unit another thread is running on it
            if rest:
                self._rest_until = time.monotonic() + REST_S
            self._discard()

    def close(self) -> None:
        self._discard()
        fresh, self._fresh = self._fresh, None
        if fresh is not None:
            fresh.close()
        self.engine.dispose()

    def _open(self) -> None:
        try:
            self._fresh = self.engine.connect()
            self._refused = None
        except Exception as exc:
            self._refusal(exc)
            self._rest_until = time.monotonic() + REST_S
        finally:
            self._opening.release()

    def _refusal(self, exc: Exception) -> None:
        """Log why the connection could not be opened: as a warning, with its traceback, when the reason is new; at
        DEBUG when it is the one logged last. A refusal that lasts (a pooler that takes no startup `options`) is
        tried again every `REST_S` for as long as the server runs, and would otherwise fill the log."""
        reason = f"{type(exc).__name__}: {exc}"
        if reason == self._refused:
            _log.debug("could not open the event loop's database connection, again: %s", reason)
            return
        self._refused = reason
        _log.warning("could not open the event loop's database connection; worker threads serve", exc_info=True)

    def _adopted(self) -> Connection | None:
        """The connection opened in the background, once its round trip (timed here) is short enough and its
        lock timeout is `LOCK_TIMEOUT`."""
        fresh, self._fresh = self._fresh, None
        if fresh is None:
            return None
        try:
            round_trip = _round_trip_s(fresh)
            lock_timeout = _lock_timeout(fresh)
            _rest_in_autocommit(fresh)
        except Exception:
            _log.warning("the event loop's new database connection failed; worker threads serve", exc_info=True)
            fresh.invalidate()
            fresh.close()
            self._rest_until = time.monotonic() + REST_S
            return None
        if lock_timeout != LOCK_TIMEOUT:
            _log.warning(
                "the event loop's database connection has lock_timeout %s, not %s: its startup options were dropped "
                "(a connection pooler's ignore_startup_parameters?); worker threads run the transactions",
                lock_timeout,
                LOCK_TIMEOUT,
            )
        elif round_trip > ROUND_TRIP_LIMIT_S:
            _log.info("database round trip %.2f ms: worker threads run the transactions", round_trip * 1000)
        else:
            self._conn = fresh
            return fresh
        fresh.close()
        self._rest_until = time.monotonic() + FAR_REST_S
        return None

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()


def _round_trip_s(conn: Connection, samples: int = 10) -> float:
    """The shortest time of a trivial statement on `conn` out of `samples`."""
    driver = conn.connection.dbapi_connection
    assert driver is not None, "an open connection has a driver connection"
    times = []
    with closing(driver.cursor()) as cursor:
        for _ in range(samples):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            times.append(time.perf_counter() - started)
    driver.rollback()
    return min(times)


def _lock_timeout(conn: Connection) -> str:
    """The connection's `lock_timeout`: a pooler that drops startup options (PgBouncer's
    `ignore_startup_parameters = options`) leaves the server's default, and a statement on the loop would then
    wait for a lock until `WAIT_S`, closing the connection, instead of moving to a worker thread at once."""
    driver = conn.connection.dbapi_connection
    assert driver is not None, "an open connection has a driver connection"
    with closing(driver.cursor()) as cursor:
        cursor.execute("SHOW lock_timeout")
        row = cursor.fetchone()
    driver.rollback()
    return str(row[0]) if row else ""


def _rest_in_autocommit(conn: Connection) -> None:
    """Leave the driver in autocommit between units: a write queues its own BEGIN and a read runs without one
    (`statement.pipelined`, `database._postgres_read`), so neither changes a setting, which costs the driver
    a wait each way (14 Python calls a unit); a read of one snapshot sets what it needs, and puts it back."""
    driver = conn.connection.dbapi_connection
    assert driver is not None, "an open connection has a driver connection"
    driver.autocommit = True
