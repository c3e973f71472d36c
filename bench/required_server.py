"""The load's required-work bound: the floor's durable work plus the checks and records any gate
keeping bankgate's promises must make, done the cheapest correct way, on the same database.

`bench.floor_server` shows the most any gate that keeps records could reach on `bench.load`'s
mix, but it decides nothing. A goal stated against the bare SDK server can still ask more than a
correct gate can give, so `bench.load` drives this server too; per kind of call it does what
`bench.required_work` does in memory:

- a balance: one read of the account with the caller's relations and roles, the policy's
  visibility and read conditions (CEL, compiled once), the result in the balance schema;
- a transfer or a close, first round: the policy's decision on the accounts as they are (one
  read), then the question committed bound to the digest of the exact arguments (not waiting
  for the disk, as bankgate's is not); the close's form asks for its account id typed back;
- the answer: a refusal recorded durably on its approval; a yes settled in one durable
  transaction that claims the pending approval of exactly these arguments (once), locks both
  accounts, decides again on them as they are then, moves the money and appends the outcome
  and a signed audit record. On PostgreSQL that transaction is two round trips (psycopg's
  pipeline: claim and read, then the writes and COMMIT); the decision between them is Python's.

Left out, though bankgate does them, so this stays a bound bankgate cannot beat: idempotency
keys, audit records of questions and refusals, the chain and its signed heads, rate limits,
the desk. The clients' principal is `local`, an operator (as in bankgate's load ledger).

    python -m bench.required_server --db URL [--transport stdio|http] [--port N]
"""

import argparse
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, NamedTuple, Protocol

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from bench.bare_parts import Approval, ask, balance_result
from bench.bare_server import serve
from bench.floor_server import Connections, seed
from bench.required_work import CEILING, MAY_DEBIT, MAY_READ, VISIBLE, holds
from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.money import DEFAULT_MAX_AMOUNT_MINOR, parse_amount
from mcp_server.tools.balance import BalanceResult
from policy.canonical import canonical_json, digest
from policy.cel_engine import cel

PRINCIPAL = "local"
MAY_CLOSE = cel.compile("!('operator' in roles || 'owner' in account.access)")
"""The shipped policy's close rule (`policy/default_policy.toml`); the others are `bench.required_work`'s."""


class Facts(NamedTuple):
    """An account as a decision sees it: its balance, whether it is open, the caller's relations and roles."""

    balance: int
    open: bool
    relations: list[str]
    roles: list[str]

    @classmethod
    def of(cls, row: tuple[object, ...]) -> "Facts":
        minor, is_open, relations, roles = row
        assert isinstance(minor, int)
        return cls(
            minor, bool(is_open), str(relations).split(",") if relations else [], str(roles).split(",") if roles else []
        )


@dataclass(frozen=True)
class Outcome:
    """What a settled approval writes: balance changes, accounts closed, the outcome and its signed record."""

    moves: tuple[tuple[str, int], ...]
    closes: tuple[str, ...]
    what: str
    memo: str
    record: str
    signature: str


Decide = Callable[[int, dict[str, Facts]], Outcome]
"""From the claimed approval's id and the locked accounts, the outcome to write, or a `ToolError` (nothing written)."""


class Store(Protocol):
    async def accounts(self, *ids: str) -> dict[str, Facts]: ...
    async def asked(self, bound: str) -> None: ...
    async def refused(self, bound: str) -> None: ...
    async def settle(self, bound: str, ids: tuple[str, str], decide: Decide) -> None: ...


_TABLES = """
CREATE TABLE required_accounts (id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0),
                                open BOOLEAN NOT NULL DEFAULT TRUE);
CREATE TABLE required_access (principal TEXT, account_id TEXT, relation TEXT, PRIMARY KEY (principal, account_id));
CREATE TABLE required_roles (principal TEXT, role TEXT, PRIMARY KEY (principal, role));
CREATE TABLE required_approvals (id {serial} PRIMARY KEY, digest TEXT NOT NULL, status TEXT NOT NULL);
CREATE INDEX required_pending ON required_approvals (digest, status);
CREATE TABLE required_outcomes (id {serial} PRIMARY KEY, what TEXT NOT NULL, memo TEXT NOT NULL, approval BIGINT);
CREATE TABLE required_audit (id {serial} PRIMARY KEY, record TEXT NOT NULL, signature TEXT NOT NULL);
INSERT INTO required_roles VALUES ('local', 'operator');
"""
_NAMES = ("required_accounts", "required_access", "required_roles", "required_approvals", "required_outcomes",
          "required_audit")  # fmt: skip
_ACCOUNTS = (
    "SELECT a.id, a.balance_minor, a.open,"
    " (SELECT {agg}(relation, ',') FROM required_access WHERE principal = {p} AND account_id = a.id),"
    " (SELECT {agg}(role, ',') FROM required_roles WHERE principal = {p})"
    " FROM required_accounts a WHERE a.id IN ({p}, {p}) ORDER BY a.id"
)
_CLAIM = (
    "UPDATE required_approvals SET status = 'approved' WHERE status = 'pending' AND id ="
    " (SELECT min(id) FROM required_approvals WHERE digest = {p} AND status = 'pending') RETURNING id"
)
"""Once: a claim that waited on another's lock sees the row as that one left it (PostgreSQL re-checks the
outer condition, not the subquery), so a second claim of one approval finds it no longer pending."""
_REFUSE = _CLAIM.replace("'approved'", "'rejected'")
_ASK = "INSERT INTO required_approvals (digest, status) VALUES ({p}, 'pending')"
_MOVE = "UPDATE required_accounts SET balance_minor = balance_minor + {p} WHERE id = {p}"
_CLOSE = "UPDATE required_accounts SET open = FALSE WHERE id = {p}"
_OUTCOME = "INSERT INTO required_outcomes (what, memo, approval) VALUES ({p}, {p}, {p})"
_AUDIT = "INSERT INTO required_audit (record, signature) VALUES ({p}, {p})"


def _facts(rows: list[tuple[object, ...]]) -> dict[str, Facts]:
    return {str(row[0]): Facts.of(row[1:]) for row in rows}


def _writes(outcome: Outcome, approval: int) -> list[tuple[str, tuple[object, ...]]]:
    """The settlement's writes, as (statement template, arguments)."""
    return [
        *((_MOVE, (delta, account)) for account, delta in outcome.moves),
        *((_CLOSE, (account,)) for account in outcome.closes),
        (_OUTCOME, (outcome.what, outcome.memo, approval)),
        (_AUDIT, (outcome.record, outcome.signature)),
    ]


class PostgresStore:
    """Async psycopg connections on the event loop (`floor_server.Connections`); a settlement is one pipelined
    transaction of two round trips."""

    def __init__(self, url: str) -> None:
        self._connections = Connections(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {', '.join(_NAMES)}")
            conn.execute(_TABLES.format(serial="BIGSERIAL"))
            conn.execute(
                "CREATE OR REPLACE FUNCTION required_asked(bound text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN"
                " PERFORM set_config('synchronous_commit', 'off', true);"
                f" {_ASK.format(p='bound')}; END $$"
            )
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO required_accounts (id, balance_minor) VALUES (%s, %s)", seed())

    @staticmethod
    def _sql(template: str) -> str:
        return template.format(p="%s", agg="string_agg")

    async def accounts(self, *ids: str) -> dict[str, Facts]:
        async with self._connections.connection() as conn:
            cursor = await conn.execute(self._sql(_ACCOUNTS), (PRINCIPAL, PRINCIPAL, *ids))
            return _facts(await cursor.fetchall())

    async def asked(self, bound: str) -> None:
        async with self._connections.connection() as conn:
            await conn.execute("SELECT required_asked(%s)", (bound,))

    async def refused(self, bound: str) -> None:
        async with self._connections.connection() as conn:
            await conn.execute(self._sql(_REFUSE), (bound,))

    async def settle(self, bound: str, ids: tuple[str, str], decide: Decide) -> None:
        async with self._connections.connection() as conn, conn.pipeline(), conn.transaction():
            claimed = await conn.execute(self._sql(_CLAIM), (bound,))
            locked = await conn.execute(self._sql(_ACCOUNTS) + " FOR UPDATE OF a", (PRINCIPAL, PRINCIPAL, *ids))
            approval = await claimed.fetchone()  # the first round trip: BEGIN, the claim and the locked read
            if approval is None:
                raise ToolError("no pending approval for these arguments")
            (approval_id,) = approval
            assert isinstance(approval_id, int)
            outcome = decide(approval_id, _facts(await locked.fetchall()))
            for template, args in _writes(outcome, approval_id):
                await conn.execute(self._sql(template), args)  # sent with the COMMIT: the second round trip


class SqliteStore:
    """One connection on the event loop, WAL: a question committed with `synchronous=NORMAL`, outcomes with FULL."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        for table in _NAMES:  # one at a time: SQLite drops no list
            self._conn.execute(f"DROP TABLE IF EXISTS {table}")
        self._conn.executescript(_TABLES.format(serial="INTEGER"))
        self._conn.executemany("INSERT INTO required_accounts (id, balance_minor) VALUES (?, ?)", seed())

    @staticmethod
    def _sql(template: str) -> str:
        return template.format(p="?", agg="group_concat")

    async def accounts(self, *ids: str) -> dict[str, Facts]:
        return _facts(self._conn.execute(self._sql(_ACCOUNTS), (PRINCIPAL, PRINCIPAL, *ids)).fetchall())

    async def asked(self, bound: str) -> None:
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(self._sql(_ASK), (bound,))  # autocommit: one transaction

    async def refused(self, bound: str) -> None:
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute(self._sql(_REFUSE), (bound,)).fetchall()

    async def settle(self, bound: str, ids: tuple[str, str], decide: Decide) -> None:
        conn = self._conn
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")  # the write lock: the accounts read below cannot change before COMMIT
        try:
            approval = conn.execute(self._sql(_CLAIM), (bound,)).fetchone()
            if approval is None:
                raise ToolError("no pending approval for these arguments")
            outcome = decide(
                approval[0], _facts(conn.execute(self._sql(_ACCOUNTS), (PRINCIPAL, PRINCIPAL, *ids)).fetchall())
            )
            for template, args in _writes(outcome, approval[0]):
                conn.execute(self._sql(template), args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def open_store(url: str) -> Store:
    """`postgresql://…` (libpq form) or `sqlite:///path`; the `required_` tables are replaced."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1))


class Confirmation(Approval):
    """A close's form: the yes, and the account id typed back (as the shipped policy's `confirm` asks)."""

    account_id: str


def amount_minor(amount: str) -> int:
    """`amount` in cents, parsed as bankgate's ledger parses it (`money.parse_amount`: a clear refusal for
    text, non-finite, non-positive, too many decimals or past the ledger's ceiling)."""
    try:
        return parse_amount(amount, "USD", ceiling_minor=DEFAULT_MAX_AMOUNT_MINOR)
    except LedgerError as refused:
        raise ToolError(f"amount {amount!r} is not a positive amount in cents: {refused.message}") from refused


def _acted_on(facts: dict[str, Facts], account: str, other: str) -> Facts | str:
    """The account a call acts on, if the caller may know of it and the two accounts are distinct and
    open; else why not."""
    found = facts.get(account)
    if found is None or not holds(VISIBLE, {"roles": found.roles, "account": {"access": found.relations}}):
        return f"unknown account {account}"
    if account == other or other not in facts or not facts[other].open or not found.open:
        return "the accounts must be two different open accounts"
    return found


def transfer_verdict(facts: dict[str, Facts], source: str, target: str, minor: int) -> str:
    """The shipped policy's decision on a transfer, on the accounts as read."""
    found = _acted_on(facts, source, target)
    if isinstance(found, str):
        return found
    if holds(MAY_DEBIT, {"roles": found.roles, "from_account": {"access": found.relations}}):
        return "not entitled"
    if holds(CEILING, {"amount_minor": minor}, minor=True):
        return "above ceiling"
    return "allow" if found.balance >= minor else "insufficient funds"


def close_verdict(facts: dict[str, Facts], account: str, sweep_to: str) -> str:
    """The shipped policy's decision on a close (its sweep is money moving, under the same ceiling)."""
    found = _acted_on(facts, account, sweep_to)
    if isinstance(found, str):
        return found
    if holds(MAY_CLOSE, {"roles": found.roles, "account": {"access": found.relations}}):
        return "not entitled"
    return "above ceiling" if holds(CEILING, {"amount_minor": found.balance}, minor=True) else "allow"


def required_server(store: Store, key: Ed25519PrivateKey | None = None) -> MCPServer:
    """The three tools over `store`, signing audit records with `key` (a new one by default)."""
    server = MCPServer("required")
    key = key or Ed25519PrivateKey.generate()

    def signed(event: str, tool: str, arguments: dict[str, str], approval: int) -> tuple[str, str]:
        record = canonical_json(
            {"event": event, "principal": PRINCIPAL, "tool": tool, "arguments": arguments, "approval": approval}
        )
        return record, key.sign(record.encode()).hex()

    async def ask_first(ctx: Context, verdict: str, bound: str) -> None:
        if ctx.request_state is None:  # the first round; a round bringing the answer only reads
            if verdict != "allow":
                raise ToolError(verdict)
            await store.asked(bound)

    async def transfer_asked(ctx: Context, from_account: str, to_account: str, amount: str, memo: str) -> bool:
        if ctx.request_state is None:
            verdict = transfer_verdict(await store.accounts(from_account, to_account), from_account, to_account,
                                       amount_minor(amount))  # fmt: skip
            await ask_first(ctx, verdict, digest(["transfer", from_account, to_account, amount, memo]))
        return True

    async def close_asked(ctx: Context, account_id: str, sweep_to: str, memo: str) -> bool:
        if ctx.request_state is None:
            verdict = close_verdict(await store.accounts(account_id, sweep_to), account_id, sweep_to)
            await ask_first(ctx, verdict, digest(["close", account_id, sweep_to, memo]))
        return True

    async def ask_transfer(
        from_account: str, to_account: str, amount: str, memo: str, asked: Annotated[bool, Resolve(transfer_asked)]
    ) -> Elicit[Approval]:
        return await ask(from_account, to_account, amount)

    async def ask_close(
        account_id: str, sweep_to: str, memo: str, asked: Annotated[bool, Resolve(close_asked)]
    ) -> Elicit[Confirmation]:
        return Elicit(f"Close {account_id}, sweeping its balance to {sweep_to}? Type its id to confirm.", Confirmation)

    @server.tool(structured_output=True)
    async def required_balance(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        found = (await store.accounts(account_id, account_id)).get(account_id)
        if found is None or not holds(
            VISIBLE, variables := {"roles": found.roles, "account": {"access": found.relations}}
        ):
            raise ToolError(f"unknown account {account_id}")
        if holds(MAY_READ, variables):
            raise ToolError("not entitled")
        return balance_result(account_id, found.balance)

    @server.tool()
    async def required_transfer(
        from_account: str,
        to_account: str,
        amount: str,
        memo: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_transfer)],
    ) -> str:
        arguments = {"from_account": from_account, "to_account": to_account, "amount": amount, "memo": memo}
        bound = digest(["transfer", from_account, to_account, amount, memo])
        if not isinstance(answer, AcceptedElicitation) or not answer.data.approve:
            await store.refused(bound)
            return "rejected"
        minor = amount_minor(amount)

        def decide(approval: int, facts: dict[str, Facts]) -> Outcome:
            if (verdict := transfer_verdict(facts, from_account, to_account, minor)) != "allow":
                raise ToolError(verdict)
            moves = ((from_account, -minor), (to_account, minor))
            return Outcome(moves, (), "executed", memo, *signed("executed", "transfer", arguments, approval))

        await store.settle(bound, (from_account, to_account), decide)
        return "executed"

    @server.tool()
    async def required_close(
        account_id: str,
        sweep_to: str,
        memo: str,
        *,
        answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_close)],
    ) -> str:
        arguments = {"account_id": account_id, "sweep_to": sweep_to, "memo": memo}
        bound = digest(["close", account_id, sweep_to, memo])
        if not isinstance(answer, AcceptedElicitation) or not answer.data.approve:
            await store.refused(bound)
            return "rejected"
        if answer.data.account_id != account_id:
            await store.refused(bound)
            raise ToolError(f"the account id typed back, {answer.data.account_id!r}, is not {account_id}")

        def decide(approval: int, facts: dict[str, Facts]) -> Outcome:
            if (verdict := close_verdict(facts, account_id, sweep_to)) != "allow":
                raise ToolError(verdict)
            swept = facts[account_id].balance
            moves = ((account_id, -swept), (sweep_to, swept))
            return Outcome(moves, (account_id,), "closed", memo, *signed("closed", "close", arguments, approval))

        await store.settle(bound, (account_id, sweep_to), decide)
        return "executed"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db", required=True, help="postgresql://… or sqlite:///path (its required_ tables are replaced)"
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="http")
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    serve(required_server(open_store(args.db)), args.transport, args.port)


if __name__ == "__main__":
    main()
