"""The required-work floor: the checks and records any gate keeping bankgate's promises must make, and no more.

The plain floors (`bench.bare_server`) show what any tool of a kind must do on this SDK; a goal
stated against them can still ask more than a correct gate can give, because bankgate must also
keep the promises of its README and of docs/ARCHITECTURE.md's invariants table. These tools do
the work each promise needs, the cheapest correct way (raw `sqlite3` on one connection on the
event loop, each read one statement, CEL conditions compiled once, variables bound with only the
fields the conditions read), so their rate over the plain floor's is the most any such gate
reaches on a goal stated against that floor:

- `read_entitled` (server_bench): one read of the balance with the caller's relations and roles,
  the visibility condition and the tool's rule ("only the entitled act; a hidden account looks
  missing"), the result in the balance schema. Nothing is recorded: an allowed read changes nothing.
- `approve_recorded` (gate_bench): the policy's decision before asking (a refusal signed and
  recorded durably, as `denied`); then the question's transaction, not waiting for the disk (as
  bankgate's): the caller's open questions counted under the write lock and a new one refused past
  `max_pending_approvals`, on by default ("limits on pending questions hold under concurrency");
  the question rendered once, stating its reference and deadline, stored as shown with its
  principal, its deadline, its arguments' digest and, on 2026-07-28, the digest the SDK records for
  it ("what runs is what was shown", "every question ends"); a signed `requested` audit record with the
  question's hash ("every decision and outcome is recorded": `audit verify` names an approval
  without one, or whose question was edited). A round bringing the answer finds the question it
  was shown by that digest (one read; "two requests are two requests": an answer cannot be moved
  to another approval of the same arguments). The answer is settled in one durable transaction
  that decides again on the accounts as they are then ("re-checked at execution"); claims the
  approval only if it is still pending, for these arguments and caller, holding the question shown
  ("nothing approved runs twice"), settling it `expired` past its deadline; posts the journal's
  two entries, a debit and a credit summing to zero, keyed by the approval so that the database
  refuses a second movement for it ("journal sums to zero; balance = entries; never negative");
  updates both balances; and signs the outcome's audit record. A refusal, a late answer and a
  failed re-decision are settled alike (`rejected`, `expired`, `failed`), each with its signed
  record ("every outcome is remembered").

The pending questions' partial index (by principal and deadline) serves the count and bankgate's
expiry sweep, which runs off the call path (every 15 s) and is left out. Also left out, so this
stays a lower bound: chaining and head signatures (the sequencer's, batched, off the call path);
idempotency keys (the benchmarks send none); a desk decision (the shipped policy routes no
transfer to the desk); daily totals (no shipped rule reads `moved_today_minor`, so bankgate reads
none); the accounts' owners and currency in the question and bound to it (this ledger has one
owner and one currency).
"""

import functools
import hashlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.elicitation import AcceptedElicitation, render_elicitation_schema
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import _request_digest
from mcp_types import CallToolResult, ElicitRequest, ElicitRequestFormParams
from pydantic import BaseModel

from bench.bare_parts import Approval, balance_result, outcome_result
from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.money import DEFAULT_MAX_AMOUNT_MINOR, parse_amount
from mcp_server.settings import Settings
from mcp_server.tools.balance import BalanceResult
from mcp_server.tools.transfer import TransferResult
from policy.canonical import canonical_json, digest
from policy.cel_engine import cel
from policy.mcp.asked import answered_digest
from policy.mcp.round import INPUT_REQUIRED_VERSIONS
from policy.question import deadline_text

PRINCIPAL = "local"
"""Who calls: bankgate's principal on stdio and in memory, owner of the debited account in both ledgers."""
APPROVAL_TTL: float = Settings.model_fields["approval_timeout"].default
MAX_PENDING: int = Settings.model_fields["max_pending_approvals"].default
"""bankgate's defaults: a question's lifetime, a caller's open questions (`bench.load`, whose clients are all one
principal, raises the cap alike for bankgate and the bound: `bench.servers.QUESTIONS_AT_ONCE`)."""


def too_many(cap: int) -> str:
    """The refusal of a question past the caller's `cap` of open ones."""
    return f"too many pending: {cap} of your approvals already wait for a human"


VISIBLE = cel.compile("'operator' in roles || size(account.access) > 0")
MAY_READ = cel.compile("!('operator' in roles || 'owner' in account.access || 'viewer' in account.access)")
MAY_DEBIT = cel.compile("!('operator' in roles || 'owner' in from_account.access)")
CEILING = cel.compile("amount_minor > minor(50000)")
"""The shipped policy's conditions for these calls (`policy/default_policy.toml`)."""

_ACCOUNT = (
    "SELECT b.minor, (SELECT group_concat(relation) FROM access WHERE principal = :who AND account_id = b.id),"
    " (SELECT group_concat(role) FROM roles WHERE principal = :who), EXISTS (SELECT 1 FROM balances WHERE id = :to)"
    " FROM balances b WHERE b.id = :id"
)
"""An account with the caller's relations to it and roles, and whether the payee `:to` exists: one snapshot."""
_ASK = (
    "INSERT INTO approvals (id, principal, binding, question, asked, expires_at, status)"
    " SELECT ?, ?, ?, ?, ?, ?, 'pending' WHERE (SELECT count(*) FROM approvals"
    f" WHERE principal = ? AND status = 'pending' AND expires_at > ?) < {MAX_PENDING}"
)
"""A question stored unless its caller already has `MAX_PENDING` open: the count and the insert one statement."""
_BY_ASKED = "SELECT id, question FROM approvals WHERE asked = ?"
_CLAIM = (
    "UPDATE approvals SET status = CASE WHEN expires_at > :now THEN :verdict ELSE 'expired' END WHERE id = :id"
    " AND status = 'pending' AND principal = :who AND binding = :binding AND question = :shown RETURNING status"
)
"""The approval, if still pending, of this caller and these arguments, holding the question shown: settled with
the verdict before its deadline, `expired` after it."""
_ASKED_KEY = "bench.required_work:register.<locals>.ask_recorded"
"""The SDK's key for `register`'s question in a round's request state (`module:qualname` of its resolver)."""


class Asked(NamedTuple):
    """A stored question: its approval and its text, which states the approval's reference and deadline."""

    approval: int
    question: str


_POST = (
    "INSERT INTO entries (approval, leg, account_id, minor)"
    " VALUES (:approval, 0, :from, -:minor), (:approval, 1, :to, :minor)"
)
_MOVE = "UPDATE balances SET minor = minor + CASE WHEN id = :from THEN -:minor ELSE :minor END WHERE id IN (:from, :to)"


class Signed(NamedTuple):
    """An audit record's canonical JSON and its Ed25519 signature (hex)."""

    record: str
    signature: str


def sign(key: Ed25519PrivateKey, event: str, approval: int | None, arguments: dict[str, str], **more: str) -> Signed:
    """The signed audit record of `event` on `approval` (None: refused before asking) by `PRINCIPAL`."""
    record = canonical_json(
        {"event": event, "principal": PRINCIPAL, "arguments": arguments, "approval": approval, **more}
    )
    return Signed(record, key.sign(record.encode()).hex())


class Question(NamedTuple):
    """A question as asked: its approval's unguessable reference, its text (stating that reference and its
    deadline), its deadline, and the digest the SDK records for it with its form (None: answered inline)."""

    approval: int
    text: str
    deadline: float
    asked: str | None

    @classmethod
    def render(cls, what: str, form: type[BaseModel], now: float, *, later_round: bool = True) -> "Question":
        """`what` asked with `form`, rendered once, stating its reference and its deadline (`APPROVAL_TTL` on).
        Its digest only if `later_round` brings the answer (2026-07-28): a 2025-11-25 question is answered in the
        request that asked it, so nothing finds it by digest (the SDK's models and a hash, ~11 µs, spared)."""
        approval = int.from_bytes(os.urandom(5))  # a reference no one can guess from another's
        deadline = now + APPROVAL_TTL
        text = f"{what}\nAnswer by: {deadline_text(deadline)}\nReference: APR-{approval:010X}"
        if not later_round:
            return cls(approval, text, deadline, None)
        params = ElicitRequestFormParams(message=text, requested_schema=_schema(form))
        return cls(approval, text, deadline, _request_digest(ElicitRequest(params=params)))

    @property
    def reference(self) -> str:
        """The approval's reference as the question states it."""
        return f"APR-{self.approval:010X}"

    def requested(self, key: Ed25519PrivateKey, arguments: dict[str, str]) -> Signed:
        """The signed `requested` record of this question, with its text's hash (`audit verify` names an edit)."""
        return sign(
            key, "requested", self.approval, arguments, question_sha256=hashlib.sha256(self.text.encode()).hexdigest()
        )


@functools.cache
def _schema(form: type[BaseModel]) -> dict[str, Any]:
    """The form as the SDK renders it into a question, rendered once (as bankgate's `policy.mcp.asked`)."""
    return render_elicitation_schema(form)


@contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool) -> Iterator[sqlite3.Connection]:
    """One write transaction on `conn` (autocommit mode), holding the write lock from its start (so what it reads
    cannot change before COMMIT); a durable one's COMMIT waits for the disk (`synchronous = FULL`)."""
    conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Records:
    """The floor's ledger: balances, entitlements, approvals, the journal and signed audit records, WAL, one writer."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(tempfile.mkdtemp()) / "records.db"
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE balances (id TEXT PRIMARY KEY, minor INTEGER NOT NULL CHECK (minor >= 0));
            CREATE TABLE access (principal TEXT, account_id TEXT, relation TEXT, PRIMARY KEY (principal, account_id));
            CREATE TABLE roles (principal TEXT, role TEXT, PRIMARY KEY (principal, role));
            CREATE TABLE approvals (
                id INTEGER PRIMARY KEY, principal TEXT NOT NULL, binding TEXT NOT NULL, question TEXT NOT NULL,
                asked TEXT, expires_at REAL NOT NULL, status TEXT NOT NULL
            );
            CREATE INDEX approvals_pending ON approvals (principal, expires_at) WHERE status = 'pending';
            CREATE UNIQUE INDEX approvals_by_asked ON approvals (asked) WHERE asked IS NOT NULL;
            CREATE TABLE entries (
                approval INTEGER NOT NULL, leg INTEGER NOT NULL CHECK (leg IN (0, 1)), account_id TEXT NOT NULL,
                minor INTEGER NOT NULL CHECK (minor <> 0), PRIMARY KEY (approval, leg)
            ) WITHOUT ROWID;
            CREATE TABLE audit (id INTEGER PRIMARY KEY, record TEXT NOT NULL, signature TEXT NOT NULL);
            INSERT INTO balances VALUES ('ACC-001', 100000000000), ('ACC-002', 0), ('ACC-003', 0);
            INSERT INTO access VALUES ('local', 'ACC-001', 'owner'), ('local', 'ACC-003', 'owner');
            """
        )
        self._key = Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key()
        self.clock = time.time

    def account(self, account_id: str, payee: str = "") -> tuple[int, list[str], list[str], bool] | None:
        """Balance, the caller's relations to the account and its roles, and whether `payee` exists, in one
        statement (one snapshot)."""
        row = self._conn.execute(_ACCOUNT, {"who": PRINCIPAL, "id": account_id, "to": payee}).fetchone()
        if row is None:
            return None
        return row[0], row[1].split(",") if row[1] else [], row[2].split(",") if row[2] else [], bool(row[3])

    def ask(self, arguments: dict[str, str], *, later_round: bool = True) -> Asked:
        """A new question, rendered once with its reference and deadline and committed before it is asked (not
        waiting for the disk, as bankgate's) with its signed record, under the digest the SDK records for it if
        `later_round` brings the answer; refused, writing nothing, if the caller already has `MAX_PENDING` open
        (counted under the write lock, so concurrent calls cannot together pass it)."""
        what = f"Transfer {arguments['amount']} from {arguments['from_account']} to {arguments['to_account']}?"
        now = self.clock()
        new = Question.render(what, Approval, now, later_round=later_round)
        with self._transaction(durable=False) as conn:
            stored = (new.approval, PRINCIPAL, digest(arguments), new.text, new.asked, new.deadline, PRINCIPAL, now)
            if not conn.execute(_ASK, stored).rowcount:
                raise ToolError(too_many(MAX_PENDING))
            self._insert(new.requested(self._key, arguments))
        return Asked(new.approval, new.text)

    def answered(self, request_state: str) -> Asked:
        """The question an answering round was shown, found by the digest its request state names (one read)."""
        row = self._conn.execute(_BY_ASKED, (answered_digest(request_state, _ASKED_KEY),)).fetchone()
        if row is None:
            raise ToolError("no question of this server was shown to this answer; nothing was done")
        return Asked(*row)

    def refuse(self, arguments: dict[str, str], reason: str) -> None:
        """A call the policy refused before asking: its signed `denied` record, durably (an outcome returned is
        an outcome kept)."""
        with self._transaction(durable=True):
            self._sign("denied", None, arguments, reason=reason)

    def settle(self, asked: Asked, arguments: dict[str, str], minor: int, *, approve: bool) -> str:
        """The answer to the question `asked`, in one durable transaction: decided again, the approval used
        once and in time, the money posted as two entries, the outcome signed. Returns the outcome."""
        approval, shown = asked
        payer, payee = arguments["from_account"], arguments["to_account"]
        with self._transaction(durable=True) as conn:
            reason = decide_transfer(self, payer, payee, minor) if approve else "rejected"
            verdict = "executed" if reason == "allow" else "failed" if approve else "rejected"
            claim = {"now": self.clock(), "verdict": verdict, "id": approval, "who": PRINCIPAL, "shown": shown}
            claimed = conn.execute(_CLAIM, {**claim, "binding": digest(arguments)}).fetchone()
            if claimed is None:
                raise ToolError(f"approval {approval} is not pending for these arguments with the question shown")
            [status] = claimed
            if status == "executed":
                moved = {"approval": approval, "from": payer, "to": payee}
                conn.execute(_POST, {**moved, "minor": minor})
                conn.execute(_MOVE, {**moved, "minor": minor})
            self._sign(status, approval, arguments)
        return f"failed: {reason}" if status == "failed" else str(status)

    def _transaction(self, *, durable: bool) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn, durable=durable)

    def _insert(self, signed: Signed) -> None:
        self._conn.execute("INSERT INTO audit (record, signature) VALUES (?, ?)", signed)

    def _sign(self, event: str, approval: int | None, arguments: dict[str, str], **more: str) -> None:
        """An Ed25519-signed audit record, written in the transaction of what it records."""
        self._insert(sign(self._key, event, approval, arguments, **more))


def amount_minor(amount: str) -> int:
    """`amount` in cents, parsed as bankgate's ledger parses it (`money.parse_amount`: a clear refusal for
    text, non-finite, non-positive, too many decimals or past the ledger's ceiling)."""
    try:
        return parse_amount(amount, "USD", ceiling_minor=DEFAULT_MAX_AMOUNT_MINOR)
    except LedgerError as refused:
        raise ToolError(f"amount {amount!r} is not a positive amount in cents: {refused.message}") from refused


def bind(variables: dict[str, Any], *, minor: bool = False) -> Any:
    """`variables` as a CEL context, bound once for every condition over them: binding them is most of an
    evaluation's cost (~6 µs of `MAY_DEBIT`'s ~7.5), executing a compiled condition under 1 µs."""
    context = cel.Context()
    context.update(variables)
    if minor:
        context.add_function("minor", lambda units: int(Decimal(units).scaleb(2)))
    return context


def holds(program: Any, context: Any) -> bool:
    """Whether the compiled condition `program` holds in `context` (`bind`)."""
    return bool(program.execute(context))


def decide_transfer(records: Records, from_account: str, to_account: str, minor: int) -> str:
    """The shipped policy's decision on a transfer, on the accounts as they are now (both read once)."""
    if from_account == to_account:
        return "the same account"
    found = records.account(from_account, to_account)
    if found is None or not found[3]:
        return "unknown account"
    balance, relations, roles, _ = found
    if holds(MAY_DEBIT, bind({"roles": roles, "from_account": {"access": relations}})):
        return "not entitled"
    if holds(CEILING, bind({"amount_minor": minor}, minor=True)):
        return "above ceiling"
    return "allow" if balance >= minor else "insufficient funds"


def register(server: MCPServer, records: Records) -> None:
    """Add `read_entitled` and `approve_recorded` to `server` (the baselines' server, `bench.bare_server`)."""

    async def asked(ctx: Context, from_account: str, to_account: str, amount: str) -> Asked:
        """The first round's new question; a round bringing the answer finds the one it was shown."""
        if ctx.request_state is not None:
            return records.answered(ctx.request_state)
        minor = amount_minor(amount)
        verdict = decide_transfer(records, from_account, to_account, minor)
        arguments = {"from_account": from_account, "to_account": to_account, "amount": amount}
        if verdict != "allow":
            records.refuse(arguments, verdict)
            raise ToolError(verdict)
        return records.ask(arguments, later_round=ctx.protocol_version in INPUT_REQUIRED_VERSIONS)

    async def ask_recorded(question: Annotated[Asked, Resolve(asked)]) -> Elicit[Approval]:
        return Elicit(question.question, Approval)

    @server.tool(structured_output=True)
    async def read_entitled(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        found = records.account(account_id)
        if found is None or not holds(VISIBLE, context := bind({"roles": found[2], "account": {"access": found[1]}})):
            raise ToolError(f"unknown account {account_id}")
        if holds(MAY_READ, context):  # the same variables, bound once
            raise ToolError("not entitled")
        return balance_result(account_id, found[0])

    @server.tool(structured_output=True)
    async def approve_recorded(
        from_account: str,
        to_account: str,
        amount: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_recorded)],
        question: Annotated[Asked, Resolve(asked)],
    ) -> Annotated[CallToolResult, TransferResult]:
        arguments = {"from_account": from_account, "to_account": to_account, "amount": amount}
        approve = isinstance(answer, AcceptedElicitation) and answer.data.approve
        minor = amount_minor(amount)
        outcome = records.settle(question, arguments, minor, approve=approve)
        receipt = {**arguments, "amount_minor": minor}
        return outcome_result(TransferResult, outcome, f"APR-{question.approval:010X}", receipt)
