"""The load's required-work bound: the floor's durable work plus the checks and records any gate
keeping bankgate's promises must make, done the cheapest correct way, on the same database.

`bench.floor_server` shows the most any gate that keeps records could reach on `bench.load`'s
mix, but it decides nothing. A goal stated against the bare SDK server can still ask more than a
correct gate can give, so `bench.load` drives this server too; per kind of call it keeps the
promises `bench.required_work` keeps in memory (sharing its questions, signed records and SQLite
transactions), on SQLite or PostgreSQL:

- a balance: one read of the account with the caller's relations and roles, the policy's
  visibility and read conditions (CEL, compiled once), the result in the balance schema ("only
  the entitled act; a hidden account looks missing"). Nothing is recorded.
- a transfer or a close, first round: the policy's decision on both accounts as they are (one
  read: a missing or closed payee, or the payer itself, is refused); a refusal signed and
  recorded durably (`denied`). Then the question's transaction, not waiting for the disk (as
  bankgate's): the caller's open questions counted under the caller's lock and a new one
  refused past `max_pending_approvals` (bankgate's setting: `--max-pending-approvals`, its
  default by default) ("limits on pending questions hold under concurrency");
  the question rendered once, stating its reference and deadline, stored as shown with its
  principal, deadline, the digest of its exact arguments and, on 2026-07-28, the digest the SDK
  records for it ("what runs is what was shown", "every question ends"); a signed `requested` record with the
  question's hash. The close's form asks for its account id typed back.
- the answering round (2026-07-28) finds the question it was shown by that digest (one read: "two
  requests are two requests"). A no, or an answer past the deadline, settles the approval
  `rejected` or `expired` with its signed record, durably, if it is still pending for these
  arguments, caller, question and deadline. A yes is settled in one durable transaction that
  claims the approval likewise ("nothing approved runs twice"), locks both accounts, decides
  again on them as they are then, and on `allow` posts the journal's two entries keyed by the
  approval (they sum to zero; the database refuses a second movement for one approval), moves
  both balances (never negative), closes the account if it is a close, and signs `executed`;
  otherwise settles it `failed` with its signed record ("every outcome is remembered").

PostgreSQL round trips (psycopg's pipeline; before this bound kept these promises: 2 for a
question, 2 for a yes, 1 for a no): a balance 1; a question 2 (the read, then one function that
counts, stores and records), a refusal before asking 2; the answering round's lookup 1; a yes 2
(the claim and the locked read, then the writes and COMMIT; the decision between them is
Python's); a no or a late answer 1 (the claim and its record in one statement).

Under an idempotency key (`bench.load` sends every call one, as bankgate's clients do): the first round's
read brings the outcome kept under it (a retry is told it, and asks no one; another request under it is
refused), every outcome is kept under it in the transaction that records it, the key's primary key refusing a
second ("a retried key moves money once"), and the key is bound with the arguments; no round trip more.

Left out, though bankgate does them, so this stays a bound bankgate cannot beat: the key's pending question
shared by a retry (a second question is asked; the key's primary key still lets one outcome run), the chain and
its signed heads (the sequencer's,
batched, off the call path), the expiry sweep (off the call path), the desk (the shipped policy
routes none of these calls to it), daily totals (no shipped rule reads them), rate limits, and a
history row with the memo (the memo is in the signed record). The clients' principal is
`local`, an operator (as in bankgate's load ledger): every load client is that one principal, so
`bench.load` runs this server with bankgate's cap (`bench.servers.required_args`).

    python -m bench.required_server --db URL [--transport stdio|http] [--port N] [--max-pending-approvals N]
"""

import argparse
import sqlite3
import time
from collections.abc import Callable
from typing import Annotated, NamedTuple, Protocol

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import BaseModel

from bench.bare_parts import Approval, balance_result, outcome_result
from bench.bare_server import serve
from bench.floor_server import Connections, seed
from bench.required_work import (
    CEILING,
    MAX_PENDING,
    MAY_DEBIT,
    MAY_READ,
    PRINCIPAL,
    VISIBLE,
    Question,
    Signed,
    amount_minor,
    bind,
    holds,
    sign,
    too_many,
    transaction,
)
from mcp_server.tools.balance import BalanceResult
from mcp_server.tools.close import CloseResult
from mcp_server.tools.transfer import TransferResult
from policy.canonical import digest
from policy.cel_engine import cel
from policy.idempotency_key import IDEMPOTENCY_KEY_META, IDEMPOTENCY_KEY_RULE, is_idempotency_key
from policy.mcp.asked import answered_digest
from policy.mcp.round import INPUT_REQUIRED_VERSIONS

MAY_CLOSE = cel.compile("!('operator' in roles || 'owner' in account.access)")
"""The shipped policy's close rule (`policy/default_policy.toml`); the others are `bench.required_work`'s."""
NOT_PENDING = "the approval is not pending for these arguments with the question shown; nothing was done"


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


class Settled(NamedTuple):
    """What a yes settles to, decided on the locked accounts: `failure` empty, the money moved from the first
    account to the second (0: none) and whether the first is closed; else why it failed. With its signed record."""

    record: Signed
    moved: int = 0
    closes: bool = False
    failure: str = ""


Verdict = Callable[[dict[str, Facts]], str]
"""The policy's decision on a call's accounts as read: `allow`, or why not."""
Decide = Callable[[dict[str, Facts]], Settled]
"""From the locked accounts (the claimed approval's), what the yes settles to."""


class Claim(NamedTuple):
    """An approval claimed for an outcome: held to the caller, the exact arguments, the question and deadline shown."""

    status: str
    question: Question
    bound: str
    key: str | None = None
    """The call's idempotency key, under which its outcome is kept."""

    def parameters(self) -> tuple[object, ...]:
        shown = self.question
        return self.status, shown.approval, PRINCIPAL, self.bound, shown.text, shown.deadline


class Kept(NamedTuple):
    """The outcome kept under an idempotency key, with the binding of the request that settled it."""

    bound: str
    outcome: str

    def replayed(self, bound: str) -> str:
        """What a call under the key is told: the kept outcome if it is the same request, else a refusal."""
        if bound != self.bound:
            return "this idempotency key was used for another request; nothing was done"
        return f"{self.outcome} (kept under this idempotency key; nothing was done again)"


class Store(Protocol):
    async def accounts(self, *ids: str) -> dict[str, Facts]: ...
    async def opening(self, key: str, *ids: str) -> tuple[dict[str, Facts], Kept | None]: ...
    async def ask(self, question: Question, bound: str, now: float, requested: Signed, cap: int) -> bool: ...
    async def answered(self, asked: str) -> Question | None: ...
    async def denied(self, record: Signed, key: str | None, bound: str) -> None: ...
    async def end(self, claim: Claim, record: Signed) -> bool: ...
    async def settle(self, claim: Claim, ids: tuple[str, str], decide: Decide) -> Settled: ...


_AUDIT = "INSERT INTO required_audit (record, signature) VALUES ({p}, {p})"

_TABLES = """
CREATE TABLE required_accounts (id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0),
                                open BOOLEAN NOT NULL DEFAULT TRUE);
CREATE TABLE required_access (principal TEXT, account_id TEXT, relation TEXT, PRIMARY KEY (principal, account_id));
CREATE TABLE required_roles (principal TEXT, role TEXT, PRIMARY KEY (principal, role));
CREATE TABLE required_approvals (
    id BIGINT PRIMARY KEY, principal TEXT NOT NULL, binding TEXT NOT NULL, question TEXT NOT NULL,
    asked TEXT, expires_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL
);
CREATE INDEX required_pending ON required_approvals (principal, expires_at) WHERE status = 'pending';
CREATE UNIQUE INDEX required_by_asked ON required_approvals (asked) WHERE asked IS NOT NULL;
CREATE TABLE required_entries (
    approval BIGINT NOT NULL, leg SMALLINT NOT NULL CHECK (leg IN (0, 1)), account_id TEXT NOT NULL,
    minor BIGINT NOT NULL CHECK (minor <> 0), PRIMARY KEY (approval, leg)
);
CREATE TABLE required_audit (id {serial} PRIMARY KEY, record TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE required_keys (principal TEXT, idempotency_key TEXT, binding TEXT NOT NULL, outcome TEXT NOT NULL,
                            PRIMARY KEY (principal, idempotency_key));
INSERT INTO required_roles VALUES ('local', 'operator');
"""
"""One partial index serves the count of open questions (and bankgate's expiry sweep), another the answering
round's lookup (a 2025-11-25 question, answered inline, has no digest); the journal's key refuses a second
movement for one approval, and the kept keys' a second outcome under one idempotency key."""
_NAMES = ("required_accounts", "required_access", "required_roles", "required_approvals", "required_entries",
          "required_audit", "required_keys")  # fmt: skip
_BOTH = (
    "SELECT a.id, a.balance_minor, a.open,"
    " (SELECT {agg}(relation, ',') FROM required_access WHERE principal = {p} AND account_id = a.id),"
    " (SELECT {agg}(role, ',') FROM required_roles WHERE principal = {p})"
    " FROM required_accounts a WHERE a.id IN ({p}, {p})"
)
_ACCOUNTS = _BOTH + " ORDER BY a.id"
_OPENING = (
    _BOTH + " UNION ALL SELECT '', 0, FALSE, binding, outcome FROM required_keys"
    " WHERE principal = {p} AND idempotency_key = {p}"
)
"""A keyed call's first read: both accounts and, as a row of id '', the outcome kept under its key (one statement)."""
_KEEP = "INSERT INTO required_keys (principal, idempotency_key, binding, outcome) VALUES ({p}, {p}, {p}, {p})"
"""An outcome kept under its idempotency key, in the transaction that records it; a second one is refused."""
_ASK = (
    "INSERT INTO required_approvals (id, principal, binding, question, asked, expires_at, status)"
    " SELECT {p}, {p}, {p}, {p}, {p}, {p}, 'pending' WHERE (SELECT count(*) FROM required_approvals"
    " WHERE principal = {p} AND status = 'pending' AND expires_at > {p}) < {p}"
)
"""A question stored unless its caller already has as many open as its last argument: the count and the insert one
statement."""
_BY_ASKED = "SELECT id, question, expires_at, asked FROM required_approvals WHERE asked = {p}"
_CLAIM = (
    "UPDATE required_approvals SET status = {p} WHERE id = {p} AND status = 'pending' AND principal = {p}"
    " AND binding = {p} AND question = {p} AND expires_at = {p} RETURNING id"
)
"""Once: a claim that waited on another's lock sees the row as that one left it, no longer pending."""
_ENDED = (
    f"WITH claimed AS ({_CLAIM}) INSERT INTO required_audit (record, signature) SELECT {{p}}, {{p}} FROM claimed"
    " RETURNING id"
)
"""A no or a late answer: the claim and its signed record in one statement (PostgreSQL: one round trip)."""
_ENDED_KEPT = (
    f"WITH claimed AS ({_CLAIM}), kept AS (INSERT INTO required_keys (principal, idempotency_key, binding, outcome)"
    " SELECT {p}, {p}, {p}, {p} FROM claimed)"
    " INSERT INTO required_audit (record, signature) SELECT {p}, {p} FROM claimed RETURNING id"
)
"""The same, keeping its outcome under the call's idempotency key."""
_DENIED_KEPT = f"WITH kept AS ({_KEEP}) {_AUDIT} RETURNING id"
"""A refusal before asking, kept under the call's idempotency key with its signed record: one statement."""
_FAILED = "UPDATE required_approvals SET status = 'failed' WHERE id = {p}"
_POST = "INSERT INTO required_entries (approval, leg, account_id, minor) VALUES ({p}, 0, {p}, {p}), ({p}, 1, {p}, {p})"
_MOVE = (
    "UPDATE required_accounts SET balance_minor = balance_minor + CASE WHEN id = {p} THEN {p} ELSE {p} END"
    " WHERE id IN ({p}, {p})"
)
"""Both balances in one statement: the payer's down, the payee's up."""
_CLOSE = "UPDATE required_accounts SET open = FALSE WHERE id = {p}"


def _facts(rows: list[tuple[object, ...]]) -> dict[str, Facts]:
    return {str(row[0]): Facts.of(row[1:]) for row in rows}


def _opened(rows: list[tuple[object, ...]]) -> tuple[dict[str, Facts], Kept | None]:
    kept = next((Kept(str(row[3]), str(row[4])) for row in rows if row[0] == ""), None)
    return _facts([row for row in rows if row[0] != ""]), kept


def _question(row: tuple[object, ...] | None) -> Question | None:
    if row is None:
        return None
    approval, text, deadline, asked = row
    assert isinstance(approval, int) and isinstance(deadline, float)
    return Question(approval, str(text), deadline, str(asked))  # found by it: not None


def _writes(settled: Settled, claim: Claim, ids: tuple[str, str]) -> list[tuple[str, tuple[object, ...]]]:
    """A yes's writes, as (statement template, arguments): a failure's status, or the journal's two entries, the
    balances and the close; the outcome kept under the call's idempotency key; then its signed record."""
    approval = claim.question.approval
    payer, payee = ids
    if settled.failure:
        done: list[tuple[str, tuple[object, ...]]] = [(_FAILED, (approval,))]
    else:
        minor = settled.moved
        done = [(_POST, (approval, payer, -minor, approval, payee, minor)),
                (_MOVE, (payer, -minor, minor, payer, payee))] if minor else []  # fmt: skip
        done += [(_CLOSE, (payer,))] if settled.closes else []
    if claim.key is not None:
        done.append((_KEEP, (PRINCIPAL, claim.key, claim.bound, "failed" if settled.failure else "executed")))
    return [*done, (_AUDIT, settled.record)]


def _numbered(template: str, *numbers: int) -> str:
    """`template`'s placeholders as a PL/pgSQL function's parameters `$n`."""
    return template.replace("{p}", "{}").format(*(f"${n}" for n in numbers))


_ASK_FUNCTION = f"""CREATE OR REPLACE FUNCTION required_ask(bigint, text, text, text, text, double precision,
    double precision, text, text, integer) RETURNS boolean LANGUAGE plpgsql AS $fn$ BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtext('required_ask ' || $2));
    {_numbered(_ASK, 1, 2, 3, 4, 5, 6, 2, 7, 10)};
    IF NOT FOUND THEN RETURN false; END IF;
    {_numbered(_AUDIT, 8, 9)};
    RETURN true; END $fn$"""
"""A question's transaction as one call (one round trip): the caller's lock (bankgate's principal's turn), the
count, the question and its record; not waiting for the disk."""


class PostgresStore:
    """Async psycopg connections on the event loop (`floor_server.Connections`); a yes is one pipelined
    transaction of two round trips, every other call one."""

    def __init__(self, url: str) -> None:
        self._connections = Connections(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {', '.join(_NAMES)}")
            conn.execute(_TABLES.format(serial="BIGSERIAL"))
            conn.execute(_ASK_FUNCTION)
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO required_accounts (id, balance_minor) VALUES (%s, %s)", seed())

    @staticmethod
    def _sql(template: str) -> str:
        return template.format(p="%s", agg="string_agg")

    async def _one(self, template: str, *args: object) -> tuple[object, ...] | None:
        async with self._connections.connection() as conn:
            return await (await conn.execute(self._sql(template), args)).fetchone()

    async def accounts(self, *ids: str) -> dict[str, Facts]:
        async with self._connections.connection() as conn:
            cursor = await conn.execute(self._sql(_ACCOUNTS), (PRINCIPAL, PRINCIPAL, *ids))
            return _facts(await cursor.fetchall())

    async def ask(self, question: Question, bound: str, now: float, requested: Signed, cap: int) -> bool:
        asked = (question.approval, PRINCIPAL, bound, question.text, question.asked, question.deadline, now)
        [asked_now] = await self._one("SELECT required_ask({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})", *asked,
                                    *requested, cap) or (False,)  # fmt: skip
        return bool(asked_now)

    async def opening(self, key: str, *ids: str) -> tuple[dict[str, Facts], Kept | None]:
        async with self._connections.connection() as conn:
            cursor = await conn.execute(self._sql(_OPENING), (PRINCIPAL, PRINCIPAL, *ids, PRINCIPAL, key))
            return _opened(await cursor.fetchall())

    async def answered(self, asked: str) -> Question | None:
        return _question(await self._one(_BY_ASKED, asked))

    async def denied(self, record: Signed, key: str | None, bound: str) -> None:
        if key is None:
            await self._one(_AUDIT + " RETURNING id", *record)
        else:
            await self._one(_DENIED_KEPT, PRINCIPAL, key, bound, "denied", *record)

    async def end(self, claim: Claim, record: Signed) -> bool:
        if claim.key is None:
            return await self._one(_ENDED, *claim.parameters(), *record) is not None
        kept = (PRINCIPAL, claim.key, claim.bound, claim.status)
        return await self._one(_ENDED_KEPT, *claim.parameters(), *kept, *record) is not None

    async def settle(self, claim: Claim, ids: tuple[str, str], decide: Decide) -> Settled:
        """BEGIN and COMMIT are statements of the pipeline, as bankgate's (`storage.statement.pipelined`): psycopg's
        own transaction block waits for its BEGIN and syncs twice at its end (five round trips, not two). A
        failure leaves the transaction open: `Connections` closes the connection, and the server rolls it back."""
        async with self._connections.connection() as conn, conn.pipeline():
            await conn.execute("BEGIN")
            claimed = await conn.execute(self._sql(_CLAIM), claim.parameters())
            locked = await conn.execute(self._sql(_ACCOUNTS) + " FOR UPDATE OF a", (PRINCIPAL, PRINCIPAL, *ids))
            if await claimed.fetchone() is None:  # the first round trip: BEGIN, the claim and the locked read
                raise ToolError(NOT_PENDING)
            settled = decide(_facts(await locked.fetchall()))
            for template, args in _writes(settled, claim, ids):
                await conn.execute(self._sql(template), args)
            await conn.execute("COMMIT")  # with the writes, waited for as the pipeline ends: the second round trip
            return settled


class SqliteStore:
    """One connection on the event loop, WAL: a question committed with `synchronous=NORMAL`, outcomes with FULL."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        for table in _NAMES:  # one at a time: SQLite drops no list
            self._conn.execute(f"DROP TABLE IF EXISTS {table}")
        self._conn.executescript(_TABLES.format(serial="INTEGER"))
        self._conn.executemany("INSERT INTO required_accounts (id, balance_minor) VALUES (?, ?)", seed())

    def _run(self, template: str, *args: object) -> list[tuple[object, ...]]:
        return self._conn.execute(template.format(p="?", agg="group_concat"), args).fetchall()

    async def accounts(self, *ids: str) -> dict[str, Facts]:
        return _facts(self._run(_ACCOUNTS, PRINCIPAL, PRINCIPAL, *ids))

    async def ask(self, question: Question, bound: str, now: float, requested: Signed, cap: int) -> bool:
        with transaction(self._conn, durable=False):  # the write lock, taken first: the count holds till COMMIT
            stored = (question.approval, PRINCIPAL, bound, question.text, question.asked, question.deadline)
            if not self._conn.execute(_ASK.format(p="?"), (*stored, PRINCIPAL, now, cap)).rowcount:
                return False
            self._run(_AUDIT, *requested)
        return True

    async def opening(self, key: str, *ids: str) -> tuple[dict[str, Facts], Kept | None]:
        return _opened(self._run(_OPENING, PRINCIPAL, PRINCIPAL, *ids, PRINCIPAL, key))

    async def answered(self, asked: str) -> Question | None:
        return _question(next(iter(self._run(_BY_ASKED, asked)), None))

    async def denied(self, record: Signed, key: str | None, bound: str) -> None:
        with transaction(self._conn, durable=True):
            if key is not None:
                self._run(_KEEP, PRINCIPAL, key, bound, "denied")
            self._run(_AUDIT, *record)

    async def end(self, claim: Claim, record: Signed) -> bool:
        with transaction(self._conn, durable=True):
            if not self._run(_CLAIM, *claim.parameters()):
                return False
            if claim.key is not None:
                self._run(_KEEP, PRINCIPAL, claim.key, claim.bound, claim.status)
            self._run(_AUDIT, *record)
        return True

    async def settle(self, claim: Claim, ids: tuple[str, str], decide: Decide) -> Settled:
        with transaction(self._conn, durable=True):
            if not self._run(_CLAIM, *claim.parameters()):
                raise ToolError(NOT_PENDING)
            settled = decide(_facts(self._run(_ACCOUNTS, PRINCIPAL, PRINCIPAL, *ids)))
            for template, args in _writes(settled, claim, ids):
                self._run(template, *args)
        return settled


def open_store(url: str) -> Store:
    """`postgresql://…` (libpq form) or `sqlite:///path`; the `required_` tables are replaced."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1))


class Confirmation(Approval):
    """A close's form: the yes, and the account id typed back (as the shipped policy's `confirm` asks)."""

    account_id: str


def _acted_on(facts: dict[str, Facts], account: str, other: str) -> Facts | str:
    """The account a call acts on, if the caller may know of it and the two accounts are distinct and
    open; else why not."""
    found = facts.get(account)
    if found is None or not holds(VISIBLE, bind({"roles": found.roles, "account": {"access": found.relations}})):
        return f"unknown account {account}"
    if account == other or other not in facts or not facts[other].open or not found.open:
        return "the accounts must be two different open accounts"
    return found


def transfer_verdict(facts: dict[str, Facts], source: str, target: str, minor: int) -> str:
    """The shipped policy's decision on a transfer, on the accounts as read."""
    found = _acted_on(facts, source, target)
    if isinstance(found, str):
        return found
    if holds(MAY_DEBIT, bind({"roles": found.roles, "from_account": {"access": found.relations}})):
        return "not entitled"
    if holds(CEILING, bind({"amount_minor": minor}, minor=True)):
        return "above ceiling"
    return "allow" if found.balance >= minor else "insufficient funds"


def close_verdict(facts: dict[str, Facts], account: str, sweep_to: str) -> str:
    """The shipped policy's decision on a close (its sweep is money moving, under the same ceiling)."""
    found = _acted_on(facts, account, sweep_to)
    if isinstance(found, str):
        return found
    if holds(MAY_CLOSE, bind({"roles": found.roles, "account": {"access": found.relations}})):
        return "not entitled"
    return "above ceiling" if holds(CEILING, bind({"amount_minor": found.balance}, minor=True)) else "allow"


class Gated(NamedTuple):
    """A gated call: its tool, exact arguments, the accounts it acts on (payer first), its question's text and form,
    and its idempotency key (bound with the arguments: an answer cannot be moved to another key's call)."""

    tool: str
    arguments: dict[str, str]
    ids: tuple[str, str]
    what: str
    form: type[BaseModel]
    key: str | None

    @property
    def bound(self) -> str:
        return digest({"tool": self.tool, **self.arguments} | ({"key": self.key} if self.key is not None else {}))


def idempotency_key(ctx: Context) -> str | None:
    """The call's idempotency key, where bankgate's clients put it (`_meta`), checked as bankgate checks it."""
    meta = ctx.request_context.meta
    key = meta.get(IDEMPOTENCY_KEY_META) if meta is not None else None
    if key is not None and not is_idempotency_key(key):
        raise ToolError(f"the idempotency key must be {IDEMPOTENCY_KEY_RULE}; nothing was done")
    return key


def required_server(
    store: Store,
    key: Ed25519PrivateKey | None = None,
    clock: Callable[[], float] = time.time,
    max_pending: int = MAX_PENDING,
) -> MCPServer:
    """The three tools over `store`, signing audit records with `key` (a new one by default), `clock` telling
    the time questions are asked and answered, a caller refused a question past `max_pending` open ones."""
    server = MCPServer("required")
    signer = key or Ed25519PrivateKey.generate()

    async def question(ctx: Context, call: Gated, verdict: Verdict, wire_key: str) -> Question:
        """The first round's new question (refused, and recorded, if the policy says no, or told the outcome kept
        under its idempotency key); a round bringing the answer finds the one it was shown by the digest its request
        state names."""
        if ctx.request_state is not None:
            shown = await store.answered(answered_digest(ctx.request_state, wire_key) or "")
            if shown is None:
                raise ToolError("no question of this server was shown to this answer; nothing was done")
            return shown
        if call.key is None:
            facts = await store.accounts(*call.ids)
        else:
            facts, kept = await store.opening(call.key, *call.ids)
            if kept is not None:  # an answer, as bankgate's replay is, though returned as an error here
                raise ToolError(kept.replayed(call.bound))
        if (refusal := verdict(facts)) != "allow":
            await store.denied(sign(signer, "denied", None, call.arguments, reason=refusal), call.key, call.bound)
            raise ToolError(refusal)
        now = clock()
        new = Question.render(call.what, call.form, now, later_round=ctx.protocol_version in INPUT_REQUIRED_VERSIONS)
        if not await store.ask(new, call.bound, now, new.requested(signer, call.arguments), max_pending):
            raise ToolError(too_many(max_pending))
        return new

    async def conclude(call: Gated, shown: Question, approve: bool) -> str:
        """The answer settled: `expired` past the deadline, `rejected` on a no, else decided again under lock."""
        status = "expired" if clock() >= shown.deadline else "executed" if approve else "rejected"
        claim = Claim(status, shown, call.bound, call.key)
        if status != "executed":
            if not await store.end(claim, sign(signer, status, shown.approval, call.arguments)):
                raise ToolError(NOT_PENDING)
            return status
        settled = await store.settle(claim, call.ids, lambda facts: decide(call, shown.approval, facts))
        return f"failed: {settled.failure}" if settled.failure else "executed"

    def decide(call: Gated, approval: int, facts: dict[str, Facts]) -> Settled:
        """The policy's decision again, on the locked accounts: what a yes settles to, signed."""
        payer, payee = call.ids
        if call.tool == "transfer":
            moved = amount_minor(call.arguments["amount"])
            verdict = transfer_verdict(facts, payer, payee, moved)
        else:
            verdict = close_verdict(facts, payer, payee)
            moved = facts[payer].balance if verdict == "allow" else 0
        if verdict != "allow":
            return Settled(sign(signer, "failed", approval, call.arguments, reason=verdict), failure=verdict)
        return Settled(sign(signer, "executed", approval, call.arguments), moved, closes=call.tool == "close")

    def transfer(ctx: Context, from_account: str, to_account: str, amount: str, memo: str) -> Gated:
        arguments = {"from_account": from_account, "to_account": to_account, "amount": amount, "memo": memo}
        what = f"Transfer {amount} from {from_account} to {to_account}?"
        return Gated("transfer", arguments, (from_account, to_account), what, Approval, idempotency_key(ctx))

    def close(ctx: Context, account_id: str, sweep_to: str, memo: str) -> Gated:
        arguments = {"account_id": account_id, "sweep_to": sweep_to, "memo": memo}
        what = f"Close {account_id}, sweeping its balance to {sweep_to}? Type its id to confirm."
        return Gated("close", arguments, (account_id, sweep_to), what, Confirmation, idempotency_key(ctx))

    async def transfer_asked(ctx: Context, from_account: str, to_account: str, amount: str, memo: str) -> Question:
        call, minor = transfer(ctx, from_account, to_account, amount, memo), amount_minor(amount)

        def verdict(facts: dict[str, Facts]) -> str:
            return transfer_verdict(facts, from_account, to_account, minor)

        return await question(ctx, call, verdict, _wire_key(ask_transfer))

    async def close_asked(ctx: Context, account_id: str, sweep_to: str, memo: str) -> Question:
        def verdict(facts: dict[str, Facts]) -> str:
            return close_verdict(facts, account_id, sweep_to)

        return await question(ctx, close(ctx, account_id, sweep_to, memo), verdict, _wire_key(ask_close))

    async def ask_transfer(shown: Annotated[Question, Resolve(transfer_asked)]) -> Elicit[Approval]:
        return Elicit(shown.text, Approval)

    async def ask_close(shown: Annotated[Question, Resolve(close_asked)]) -> Elicit[Confirmation]:
        return Elicit(shown.text, Confirmation)

    @server.tool(structured_output=True)
    async def required_balance(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        found = (await store.accounts(account_id, account_id)).get(account_id)
        if found is None or not holds(
            VISIBLE, context := bind({"roles": found.roles, "account": {"access": found.relations}})
        ):
            raise ToolError(f"unknown account {account_id}")
        if holds(MAY_READ, context):  # the same variables, bound once
            raise ToolError("not entitled")
        return balance_result(account_id, found.balance)

    @server.tool(structured_output=True)
    async def required_transfer(
        ctx: Context,
        from_account: str,
        to_account: str,
        amount: str,
        memo: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_transfer)],
        shown: Annotated[Question, Resolve(transfer_asked)],
    ) -> Annotated[CallToolResult, TransferResult]:
        approve = isinstance(answer, AcceptedElicitation) and answer.data.approve
        call = transfer(ctx, from_account, to_account, amount, memo)
        return outcome_result(TransferResult, await conclude(call, shown, approve), shown.reference, call.arguments)

    @server.tool(structured_output=True)
    async def required_close(
        ctx: Context,
        account_id: str,
        sweep_to: str,
        memo: str,
        *,
        answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_close)],
        shown: Annotated[Question, Resolve(close_asked)],
    ) -> Annotated[CallToolResult, CloseResult]:
        call = close(ctx, account_id, sweep_to, memo)
        if isinstance(answer, AcceptedElicitation) and answer.data.approve and answer.data.account_id != account_id:
            await conclude(call, shown, approve=False)
            raise ToolError(f"the account id typed back, {answer.data.account_id!r}, is not {account_id}")
        approve = isinstance(answer, AcceptedElicitation) and answer.data.approve
        return outcome_result(CloseResult, await conclude(call, shown, approve), shown.reference, call.arguments)

    return server


def _wire_key(resolver: Callable[..., object]) -> str:
    """The SDK's key for `resolver`'s question in a round's request state (`module:qualname`)."""
    return f"{resolver.__module__}:{resolver.__qualname__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db", required=True, help="postgresql://… or sqlite:///path (its required_ tables are replaced)"
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="http")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--max-pending-approvals", type=int, default=MAX_PENDING, help="a caller's open questions")
    args = parser.parse_args()
    serve(required_server(open_store(args.db), max_pending=args.max_pending_approvals), args.transport, args.port)


if __name__ == "__main__":
    main()
