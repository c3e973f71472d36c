"""The load floor: a bare `MCPServer` doing the durable work `bench.load`'s mix must do, and no more.

Per kind of call, what any gate on this SDK must do:
- a balance: one indexed read, answered in the published balance schema;
- a transfer or a close: the question committed before asking (not waiting for the disk, as
  bankgate's is not), the SDK's approval form, then one durable transaction: the money moved and
  the outcome recorded, or the refusal recorded; the outcome answered in the published transfer or close
  output schema, which the client validates (as the balance's).
No policy, entitlements, idempotency, binding of the answer to the arguments, audit chain or
signatures, all of which bankgate must do as well: this server's rate over the bare SDK server's
is the most a ratio goal against that server can ask of any gate that keeps its records in a
database. The database is reached the cheapest correct way: on PostgreSQL, psycopg's async
connections on the event loop (no thread hops) and each transaction one statement (a function
on the server); on SQLite, one connection on the event loop, as bankgate's own prompt writes.

    python -m bench.floor_server --db URL [--transport stdio|http] [--port N]
"""

import argparse
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Protocol

import anyio
import psycopg
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp_types import CallToolResult

from bench.bare_parts import Approval, ask, balance_result, outcome_result
from bench.bare_server import serve
from mcp_server.tools.balance import BalanceResult
from mcp_server.tools.close import CloseResult
from mcp_server.tools.transfer import TransferResult

SHARED = tuple(f"ACC-{n:03}" for n in range(64))
"""The accounts transfers move money between (`bench.load` seeds as many in bankgate's ledger)."""
OPENING_MINOR = 2_000_000


def closable(client: int) -> list[str]:
    """The accounts client number `client` may close: the first holds money to sweep, the others are empty."""
    return [f"CLOSE-{client:03}-{n}" for n in range(3)]


MOST_CLIENTS = 256
"""Clients over all of a run's phases (each has its own closable accounts)."""


class Store(Protocol):
    """The four writes and one read of the floor, each one transaction."""

    async def balance(self, account_id: str) -> int: ...
    async def asked(self, memo: str) -> None: ...
    async def refused(self, memo: str) -> None: ...
    async def moved(self, source: str, target: str, minor: int, memo: str) -> None: ...
    async def closed(self, account_id: str, sweep_to: str, memo: str) -> None: ...


def seed() -> list[tuple[str, int]]:
    """Every account a load run may touch, with its opening balance in minor units."""
    closable_ones = [(a, 500 if a.endswith("-0") else 0) for c in range(MOST_CLIENTS) for a in closable(c)]
    return [(a, OPENING_MINOR) for a in SHARED] + closable_ones


_POSTGRES_SCHEMA = """
DROP TABLE IF EXISTS floor_accounts, floor_journal;
CREATE TABLE floor_accounts (
    id text PRIMARY KEY, balance_minor bigint NOT NULL CHECK (balance_minor >= 0), open boolean NOT NULL DEFAULT true
);
CREATE TABLE floor_journal (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text NOT NULL,
                            memo text NOT NULL);
-- A question need not wait for the disk (the setting holds until this statement's own commit).
CREATE OR REPLACE FUNCTION floor_asked(memo text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO floor_journal (what, memo) VALUES ('asked', memo);
END $$;
-- Both rows are locked in key order by the one UPDATE (no deadlock); the CHECK refuses an overdraft,
-- the row count a closed account or a transfer to itself (one row).
CREATE OR REPLACE FUNCTION floor_moved(source text, target text, minor bigint, memo text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE touched int;
BEGIN
    UPDATE floor_accounts SET balance_minor = balance_minor + CASE WHEN id = source THEN -minor ELSE minor END
     WHERE id IN (source, target) AND open;
    GET DIAGNOSTICS touched = ROW_COUNT;
    IF touched <> 2 THEN RAISE EXCEPTION 'transfer % refused', memo; END IF;
    INSERT INTO floor_journal (what, memo) VALUES ('executed', memo);
END $$;
CREATE OR REPLACE FUNCTION floor_closed(account text, sweep_to text, memo text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE swept bigint;
BEGIN
    SELECT balance_minor INTO swept FROM floor_accounts WHERE id = account AND open FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'account % is not open', account; END IF;
    UPDATE floor_accounts SET balance_minor = 0, open = false WHERE id = account;
    UPDATE floor_accounts SET balance_minor = balance_minor + swept WHERE id = sweep_to AND open;
    IF NOT FOUND THEN RAISE EXCEPTION 'account % is not open', sweep_to; END IF;
    INSERT INTO floor_journal (what, memo) VALUES ('closed', memo);
END $$;
"""


class Connections:
    """Async psycopg connections on the event loop, opened on demand up to `size`, one call each at a time."""

    def __init__(self, url: str, size: int = 16) -> None:
        self._url = url
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = anyio.Semaphore(size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            try:
                yield conn
            except BaseException:
                await conn.close()  # never hand on a connection left mid-statement
                raise
            self._idle.append(conn)


class PostgresStore:
    """Each call one statement on a connection of `Connections`."""

    def __init__(self, url: str) -> None:
        self._connections = Connections(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_POSTGRES_SCHEMA)
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO floor_accounts (id, balance_minor) VALUES (%s, %s)", seed())

    async def _call(self, statement: str, *args: object) -> list[tuple[object, ...]]:
        async with self._connections.connection() as conn:
            cursor = await conn.execute(statement, args)
            return await cursor.fetchall()

    async def balance(self, account_id: str) -> int:
        rows = await self._call("SELECT balance_minor FROM floor_accounts WHERE id = %s", account_id)
        (minor,) = rows[0]
        assert isinstance(minor, int)  # balance_minor is bigint
        return minor

    async def asked(self, memo: str) -> None:
        await self._call("SELECT floor_asked(%s)", memo)

    async def refused(self, memo: str) -> None:
        await self._call("INSERT INTO floor_journal (what, memo) VALUES ('refused', %s) RETURNING id", memo)

    async def moved(self, source: str, target: str, minor: int, memo: str) -> None:
        await self._call("SELECT floor_moved(%s, %s, %s, %s)", source, target, minor, memo)

    async def closed(self, account_id: str, sweep_to: str, memo: str) -> None:
        await self._call("SELECT floor_closed(%s, %s, %s)", account_id, sweep_to, memo)


class SqliteStore:
    """One connection on the event loop: WAL, `synchronous=NORMAL` for a question and FULL for an outcome."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.executescript(
            "PRAGMA journal_mode = WAL;"
            "DROP TABLE IF EXISTS floor_accounts; DROP TABLE IF EXISTS floor_journal;"
            "CREATE TABLE floor_accounts (id TEXT PRIMARY KEY, balance_minor INTEGER NOT NULL"
            " CHECK (balance_minor >= 0), open INTEGER NOT NULL DEFAULT 1);"
            "CREATE TABLE floor_journal (id INTEGER PRIMARY KEY, what TEXT NOT NULL, memo TEXT NOT NULL);"
        )
        self._conn.executemany("INSERT INTO floor_accounts (id, balance_minor) VALUES (?, ?)", seed())

    def _write(self, durable: bool, *statements: tuple[str, tuple[object, ...], int | None]) -> None:
        """Run `statements` in one transaction; each that names a row count must touch exactly that many."""
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args, rows in statements:
                if (touched := self._conn.execute(sql, args).rowcount) != rows and rows is not None:
                    raise ValueError(f"{sql!r} touched {touched} rows, not {rows}")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    async def balance(self, account_id: str) -> int:
        row = self._conn.execute("SELECT balance_minor FROM floor_accounts WHERE id = ?", (account_id,)).fetchone()
        return int(row[0])

    async def asked(self, memo: str) -> None:
        self._write(False, ("INSERT INTO floor_journal (what, memo) VALUES ('asked', ?)", (memo,), 1))

    async def refused(self, memo: str) -> None:
        self._write(True, ("INSERT INTO floor_journal (what, memo) VALUES ('refused', ?)", (memo,), 1))

    async def moved(self, source: str, target: str, minor: int, memo: str) -> None:
        if source == target:
            raise ValueError(f"transfer {memo} refused: {source} to itself")
        move = "UPDATE floor_accounts SET balance_minor = balance_minor + ? WHERE id = ? AND open"
        self._write(
            True,
            (move, (-minor, source), 1),
            (move, (minor, target), 1),
            ("INSERT INTO floor_journal (what, memo) VALUES ('executed', ?)", (memo,), 1),
        )

    async def closed(self, account_id: str, sweep_to: str, memo: str) -> None:
        self._write(
            True,
            ("UPDATE floor_accounts SET balance_minor = balance_minor + (SELECT balance_minor FROM floor_accounts"
             " WHERE id = ? AND open) WHERE id = ? AND open", (account_id, sweep_to), 1),
            ("UPDATE floor_accounts SET balance_minor = 0, open = 0 WHERE id = ? AND open", (account_id,), 1),
            ("INSERT INTO floor_journal (what, memo) VALUES ('closed', ?)", (memo,), 1),
        )  # fmt: skip


def open_store(url: str) -> Store:
    """`postgresql://…` (libpq form) or `sqlite:///path`."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1))


def floor_server(store: Store) -> MCPServer:
    server = MCPServer("floor")

    async def recorded(ctx: Context, memo: str) -> bool:
        if ctx.request_state is None:  # the first round; a round bringing the answer only reads
            await store.asked(memo)
        return True

    async def ask_transfer(
        from_account: str, to_account: str, amount: str, memo: str, asked: Annotated[bool, Resolve(recorded)]
    ) -> Elicit[Approval]:
        return await ask(from_account, to_account, amount)

    async def ask_close(
        account_id: str, sweep_to: str, memo: str, asked: Annotated[bool, Resolve(recorded)]
    ) -> Elicit[Approval]:
        return Elicit(f"Close {account_id}, sweeping its balance to {sweep_to}?", Approval)

    @server.tool(structured_output=True)
    async def floor_balance(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        return balance_result(account_id, await store.balance(account_id))

    @server.tool(structured_output=True)
    async def floor_transfer(
        from_account: str,
        to_account: str,
        amount: str,
        memo: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_transfer)],
    ) -> Annotated[CallToolResult, TransferResult]:
        receipt = {"from_account": from_account, "to_account": to_account, "amount": amount, "memo": memo}
        if answer.action != "accept" or not answer.data.approve:
            await store.refused(memo)
            return outcome_result(TransferResult, "rejected", None, receipt)
        await store.moved(from_account, to_account, int(Decimal(amount).scaleb(2)), memo)
        return outcome_result(TransferResult, "executed", None, receipt)

    @server.tool(structured_output=True)
    async def floor_close(
        account_id: str, sweep_to: str, memo: str, *, answer: Annotated[ElicitationResult[Approval], Resolve(ask_close)]
    ) -> Annotated[CallToolResult, CloseResult]:
        receipt = {"account_id": account_id, "sweep_to": sweep_to, "memo": memo}
        if answer.action != "accept" or not answer.data.approve:
            await store.refused(memo)
            return outcome_result(CloseResult, "rejected", None, receipt)
        await store.closed(account_id, sweep_to, memo)
        return outcome_result(CloseResult, "executed", None, receipt)

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="postgresql://… or sqlite:///path (its floor tables are replaced)")
    parser.add_argument("--transport", choices=["stdio", "http"], default="http")
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    serve(floor_server(open_store(args.db)), args.transport, args.port)


if __name__ == "__main__":
    main()
