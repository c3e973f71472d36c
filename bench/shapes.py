"""The transaction shapes of bankgate's calls, captured from the real server.

    python -m bench.shapes [--postgres-url URL]

One gated transfer (asked, approved, executed), one allowed balance read and one rejected
transfer are made through the in-memory MCP server, and every statement the ledger database
receives is recorded, grouped into transactions: statements, BEGIN/COMMIT, locks taken
(`FOR UPDATE`, advisory turns), audit statements, and round trips: the waits for the database
(a statement whose result is read, with the writes queued before it and the reads sent ahead
after it, or a COMMIT; see `storage.statement`): a read sent ahead is listed where its result is
read. `bench.db_ceiling` replays these shapes,
and a test checks that they are still what the server runs.

Statements reach the driver two ways: through SQLAlchemy's `execute` (seen by its engine
events) and through `Statement` on the driver cursor (seen by wrapping its `_execute` and,
for the writes queued by `send`, `_queue` while capturing).
"""

import argparse
import asyncio
import itertools
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mcp import Client
from mcp_types import RequestParamsMeta
from sqlalchemy import Connection, event

from bench.load import database
from bench.servers import bench_audit, bench_settings
from mcp_server.app import build_server, open_state
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.storage.database import Database
from mcp_server.storage.statement import Statement
from policy.idempotency_key import IDEMPOTENCY_KEY_META
from policy.testing import ScriptedResponder, approve, reject

_BOUNDARY = ("BEGIN", "COMMIT", "ROLLBACK")


@dataclass(frozen=True)
class Sent:
    """One statement as the driver received it (SQL in the driver's parameter style)."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any]

    @property
    def verb(self) -> str:
        return self.sql.lstrip().split(None, 1)[0].upper()

    @property
    def locks(self) -> bool:
        """Whether it takes a lock another writer waits on: a row lock, an advisory turn, the audit head."""
        sql = self.sql.upper()
        return "FOR UPDATE" in sql or "PG_ADVISORY_XACT_LOCK" in sql or "UPDATE AUDIT_HEAD" in sql

    @property
    def audit(self) -> bool:
        """Whether it writes the audit log (the part `bench.db_ceiling` leaves out to price it)."""
        sql = self.sql.upper()
        return sql.startswith(("INSERT INTO AUDIT_", "UPDATE AUDIT_"))


AUTOCOMMIT = "AUTOCOMMIT"
"""How a read ends: its statements ran with no BEGIN or COMMIT (see `Database.read`)."""


@dataclass
class Transaction:
    """The statements between one BEGIN and its COMMIT (or ROLLBACK); or a read's statements on one
    connection checkout, or on SQLite's kept reader connection (`end` AUTOCOMMIT)."""

    statements: list[Sent] = field(default_factory=list)
    end: str = "COMMIT"
    autocommit: bool = False
    """Whether it began outside any transaction (a read)."""
    round_trips: int = 0
    began: int = 0
    """Its place among the recorded transactions by first statement (a read on a kept connection ends last)."""

    @property
    def body(self) -> list[Sent]:
        """The statements proper: no BEGIN, COMMIT, ROLLBACK, savepoints or session settings."""
        return [s for s in self.statements if s.verb not in (*_BOUNDARY, "SAVEPOINT", "SET", "PRAGMA")]

    @property
    def locks(self) -> int:
        return sum(s.locks for s in self.statements)


@dataclass
class Shape:
    """One call's transactions, in order."""

    name: str
    transactions: list[Transaction]

    def counts(self) -> dict[str, int]:
        return {
            "transactions": len(self.transactions),
            "statements": sum(len(t.body) for t in self.transactions),
            "begin": sum(t.end != AUTOCOMMIT for t in self.transactions),
            "commit": sum(t.end == "COMMIT" for t in self.transactions),
            "locks": sum(t.locks for t in self.transactions),
            "audit": sum(s.audit for t in self.transactions for s in t.body),
            "round_trips": sum(t.round_trips for t in self.transactions),
        }


_Key = tuple[int, int]
"""Whose statements: a driver connection's id and a thread's (see `_key`)."""


class Recorder:
    """Statements sent on one database while `recording`; a connection's open transaction is kept apart."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.done: list[Transaction] = []
        self._open: dict[_Key, Transaction] = {}
        self._lock = threading.RLock()
        self._began = itertools.count()

    def _sent(self, conn: Connection, sql: str, params: Any, *, waits: bool = True) -> None:
        """`waits`: the statement is a round trip of its own (not queued for the next one)."""
        dbapi_connection = conn.connection.dbapi_connection
        sent, key = Sent(sql, params), _key(dbapi_connection)
        autocommit = _autocommit(dbapi_connection, sent)
        with self._lock:
            open_ = self._open.get(key)
            if open_ is not None and open_.autocommit and not autocommit:
                self._end(key, AUTOCOMMIT)  # a kept connection (the loop's) read, then began a transaction
            if sent.verb == "BEGIN" or (sent.verb not in _BOUNDARY and key not in self._open):
                # The driver's own BEGIN (PostgreSQL outside autocommit) is a round trip of its own.
                implicit_begin = sent.verb != "BEGIN" and not autocommit
                self._open[key] = Transaction(
                    autocommit=autocommit, round_trips=int(implicit_begin), began=next(self._began)
                )
            if sent.verb in _BOUNDARY and sent.verb != "BEGIN":
                self._end(key, sent.verb)
                return
            self._open[key].statements.append(sent)
            self._open[key].round_trips += waits

    def _end(self, key: _Key, how: str) -> None:
        """`key`: see `_key`."""
        with self._lock:
            open_ = self._open.pop(key, None)
            if how == AUTOCOMMIT and open_ is not None and not open_.body:
                return  # only settings left after a transaction (SQLite's `PRAGMA synchronous` back to FULL)
            if open_ is not None and not _sequencers(open_):
                # A pooled SQLite read ends in the driver's commit, which sends nothing outside a transaction.
                open_.end = AUTOCOMMIT if open_.autocommit else how
                open_.round_trips += open_.end != AUTOCOMMIT
                self.done.append(open_)

    @contextmanager
    def recording(self) -> Iterator[list[Transaction]]:
        """Record until the block ends; yields the list the finished transactions land in."""
        engines = self.db.engines
        original, original_queue = Statement._execute, Statement._queue
        recorder = self

        # Named `self` as the methods they replace name it (so they match `Statement`'s signatures).
        def traced(self: Statement, conn: Connection, params: dict[str, Any]) -> Any:
            recorder._sent(conn, self.sql, dict(params), waits=not self.arrived(conn, params))
            return original(self, conn, params)

        def traced_queue(self: Statement, conn: Connection, params: dict[str, Any]) -> None:
            recorder._sent(conn, self.sql, dict(params), waits=False)
            original_queue(self, conn, params)

        def before(conn: Connection, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> None:
            self._sent(conn, sql, params)

        def commit(conn: Connection) -> None:
            self._end(_key(conn.connection.dbapi_connection), "COMMIT")

        def rollback(conn: Connection) -> None:
            self._end(_key(conn.connection.dbapi_connection), "ROLLBACK")

        def checkin(dbapi_connection: Any, _record: Any) -> None:
            self._end(_key(dbapi_connection), AUTOCOMMIT)  # what is still open ran without a transaction

        listeners: dict[str, Callable[..., None]] = {
            "before_cursor_execute": before,
            "commit": commit,
            "rollback": rollback,
            "checkin": checkin,
        }
        self.done = []
        Statement._execute = traced  # type: ignore[method-assign]
        Statement._queue = traced_queue  # type: ignore[method-assign]
        for engine in engines:
            for name, listener in listeners.items():
                event.listen(engine, name, listener)
        try:
            yield self.done
            for key in [key for key, open_ in self._open.items() if open_.autocommit]:
                self._end(key, AUTOCOMMIT)  # a read on a kept connection: never checked in
            self.done.sort(key=lambda tx: tx.began)
        finally:
            Statement._execute = original  # type: ignore[method-assign]
            Statement._queue = original_queue  # type: ignore[method-assign]
            for engine in engines:
                for name, listener in listeners.items():
                    event.remove(engine, name, listener)


def _key(dbapi_connection: Any) -> _Key:
    """Whose statements these are: the driver connection's id (a checkout's SQLAlchemy `Connection` may share
    one with another) and the thread's. SQLite's long-lived reader serves the loop's reads and the audit
    sequencer's in turn, and a read outside a transaction has no end of its own: by connection alone, the
    sequencer's next read joined the call's, and the call's read was then taken for the sequencer's."""
    return id(dbapi_connection), threading.get_ident()


def _autocommit(dbapi_connection: Any, sent: Sent) -> bool:
    """Whether `sent` runs outside a transaction: the PostgreSQL driver is in autocommit, or SQLite's
    (which begins only where BEGIN is sent) has none open."""
    if sent.verb == "BEGIN":
        return False
    if isinstance(dbapi_connection, sqlite3.Connection):
        return not dbapi_connection.in_transaction
    return getattr(dbapi_connection, "autocommit", None) is True


def _sequencers(tx: Transaction) -> bool:
    """Whether `tx` is the audit sequencer's (it runs beside the calls, chaining what they wrote), not a call's."""
    return any("audit_heads" in s.sql or "seq IS NULL" in s.sql for s in tx.statements)


@dataclass(frozen=True)
class Shapes:
    backend: str
    gated_transfer: Shape
    balance: Shape
    rejection: Shape

    def all(self) -> tuple[Shape, ...]:
        return (self.gated_transfer, self.balance, self.rejection)


async def _capture(url: str, workdir: Path) -> Shapes:
    setup = Database.open(url)
    audit = bench_audit(workdir)
    ledger = Ledger(setup, audit=audit)
    EntitlementAdmin(setup, "bench", audit).grant_role("local", "operator")
    payer, payee = (ledger.create_account(f"Shapes {n}").id for n in (1, 2))
    ledger.deposit(payer, "100.00")
    setup.close()
    settings = bench_settings(workdir, url, seed_demo=False, principal="local")
    state = open_state(settings)
    recorder = Recorder(state.ledger.db)
    responder = ScriptedResponder(approve(), reject())
    transfer = {"from_account": payer, "to_account": payee, "amount": "1.00"}
    async with Client(build_server(state, settings), elicitation_callback=responder, mode="auto") as client:  # type: ignore[arg-type]
        await client.call_tool("get_account_balance", {"account_id": payer})  # warm: caches, pools
        shapes = []
        for name, tool, arguments, key in (
            ("gated transfer", "transfer_funds", transfer, "shapes-approved"),
            ("balance", "get_account_balance", {"account_id": payer}, None),
            ("rejection", "transfer_funds", transfer, "shapes-rejected"),
        ):
            with recorder.recording() as done:
                # RequestParamsMeta is an open TypedDict (extra_items), which mypy cannot check a custom key against
                meta = cast(RequestParamsMeta, {IDEMPOTENCY_KEY_META: key}) if key else None
                result = await client.call_tool(tool, arguments, meta=meta)
            status = (result.structured_content or {}).get("status")
            expected = "rejected" if name == "rejection" else "executed"
            if status != expected:
                raise RuntimeError(f"{name}: {status}, not {expected}: {result.structured_content}")
            shapes.append(Shape(name, list(done)))
    state.ledger.db.close()
    return Shapes(state.ledger.db.dialect, *shapes)


def capture(postgres_url: str | None = None) -> Shapes:
    """The shapes of a gated transfer, a balance read and a rejection, on a fresh ledger
    (SQLite, or a throwaway schema of `postgres_url`)."""
    with tempfile.TemporaryDirectory() as work, database(postgres_url, Path(work)) as url:
        return capture_on(url, Path(work))


def capture_on(url: str, workdir: Path) -> Shapes:
    """The shapes, captured on the (empty or bankgate) database at `url`, which keeps what they wrote (its audit
    records signed with the key in `workdir`)."""
    return asyncio.run(_capture(url, workdir))


def print_shapes(shapes: Shapes, *, verbose: bool) -> None:
    print(f"{shapes.backend}:")
    for shape in shapes.all():
        c = shape.counts()
        print(
            f"  {shape.name:15} {c['transactions']} transactions, {c['statements']} statements "
            f"+ {c['begin']} BEGIN + {c['commit']} COMMIT, {c['round_trips']} round trips, {c['locks']} locks, "
            f"{c['audit']} audit statements"
        )
        if verbose:
            for n, tx in enumerate(shape.transactions, 1):
                print(f"    transaction {n} ({tx.end}, {tx.round_trips} round trips):")
                for sent in tx.statements:
                    print(f"      {' '.join(sent.sql.split())[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", help="capture on a throwaway schema of this PostgreSQL too")
    parser.add_argument("--verbose", action="store_true", help="print every statement")
    args = parser.parse_args()
    print_shapes(capture(), verbose=args.verbose)
    if args.postgres_url:
        print_shapes(capture(args.postgres_url), verbose=args.verbose)


if __name__ == "__main__":
    main()
