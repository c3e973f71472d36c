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
  recorded durably, as `denied`); then the question's
  transaction, not waiting for the disk (as bankgate's): the caller's open questions counted under
  the write lock and a new one refused past `max_pending_approvals`, on by default ("limits on
  pending questions hold under concurrency"); the question stored with its text as shown, its
  principal and its deadline ("what runs is what was shown", "every question ends"), bound to its
  arguments' digest; a signed `requested` audit record with the question's hash ("every decision
  and outcome is recorded": `audit verify` names an approval without one, or whose question was
  edited). The answer is settled in one durable transaction that decides again on the accounts as
  they are then ("re-checked at execution"); claims the approval only if it is still pending and
  holds the question shown ("nothing approved runs twice"), settling it `expired` past its
  deadline; posts the journal's two entries, a debit and a credit summing to zero, keyed by the
  approval so that the database refuses a second movement for it ("journal sums to zero; balance =
  entries; never negative", "nothing approved runs twice"); updates both balances; and signs the
  outcome's audit record. A refusal, a late answer and a failed re-decision are settled alike
  (`rejected`, `expired`, `failed`), each with its signed record ("every outcome is remembered").

One partial index (pending questions by principal, arguments and deadline) serves the count, the
settlement's lookup and bankgate's expiry sweep, which runs off the call path (every 15 s) and is
left out. Also left out, so this stays a lower bound: chaining and head signatures (the
sequencer's, batched, off the call path); idempotency keys (the benchmarks send none); a desk
decision (the shipped policy routes no transfer to the desk); daily totals (no shipped rule reads
`moved_today_minor`, so bankgate reads none). The question here states only the arguments, so an
answering round renders it again without a read; bankgate's also states the approval's
reference, its deadline and the accounts' owners, and its answering round finds *its* approval by
the question's digest ("two requests are two requests"): a read this bound does not make (here
two pending questions of one caller with the same arguments are interchangeable).
"""

import hashlib
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from bench.bare_parts import Approval, ask, balance_result
from mcp_server.settings import Settings
from mcp_server.tools.balance import BalanceResult
from policy.canonical import canonical_json, digest
from policy.cel_engine import cel

PRINCIPAL = "local"
"""Who calls: bankgate's principal on stdio and in memory, owner of the debited account in both ledgers."""
APPROVAL_TTL: float = Settings.model_fields["approval_timeout"].default
MAX_PENDING: int = Settings.model_fields["max_pending_approvals"].default
"""bankgate's defaults, which the benchmarks run it with: a question's lifetime, a caller's open questions."""

VISIBLE = cel.compile("'operator' in roles || size(account.access) > 0")
MAY_READ = cel.compile("!('operator' in roles || 'owner' in account.access || 'viewer' in account.access)")
MAY_DEBIT = cel.compile("!('operator' in roles || 'owner' in from_account.access)")
CEILING = cel.compile("amount_minor > minor(50000)")
"""The shipped policy's conditions for these calls (`policy/default_policy.toml`)."""

_ACCOUNT = (
    "SELECT b.minor, (SELECT group_concat(relation) FROM access WHERE principal = :who AND account_id = b.id),"
    " (SELECT group_concat(role) FROM roles WHERE principal = :who) FROM balances b WHERE b.id = :id"
)
_WAITING = "SELECT count(*) FROM approvals WHERE principal = ? AND status = 'pending' AND expires_at > ?"
_ASK = (
    "INSERT INTO approvals (principal, binding, question, expires_at, status) VALUES (?, ?, ?, ?, 'pending')"
    " RETURNING id"
)
_CLAIM = (
    "UPDATE approvals SET status = CASE WHEN expires_at > :now THEN :verdict ELSE 'expired' END WHERE id ="
    " (SELECT min(id) FROM approvals WHERE principal = :who AND binding = :binding AND status = 'pending')"
    " AND question = :shown RETURNING id, status"
)
"""The oldest pending approval of these arguments, if it still holds the question shown: settled with the
verdict before its deadline, `expired` after it."""
_POST = (
    "INSERT INTO entries (approval, leg, account_id, minor)"
    " VALUES (:approval, 0, :from, -:minor), (:approval, 1, :to, :minor)"
)
_MOVE = "UPDATE balances SET minor = minor + CASE WHEN id = :from THEN -:minor ELSE :minor END WHERE id IN (:from, :to)"


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
                expires_at REAL NOT NULL, status TEXT NOT NULL
            );
            CREATE INDEX approvals_pending ON approvals (principal, binding, expires_at) WHERE status = 'pending';
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

    def account(self, account_id: str) -> tuple[int, list[str], list[str]] | None:
        """Balance, the caller's relations to the account and its roles, in one statement (one snapshot)."""
        row = self._conn.execute(_ACCOUNT, {"who": PRINCIPAL, "id": account_id}).fetchone()
        if row is None:
            return None
        return row[0], row[1].split(",") if row[1] else [], row[2].split(",") if row[2] else []

    def ask(self, arguments: dict[str, str], question: str) -> None:
        """The question, committed before it is asked (not waiting for the disk, as bankgate's) with its signed
        record; refused, writing nothing, if the caller already has `MAX_PENDING` open (counted under the
        write lock, so concurrent calls cannot together pass it)."""
        now = self.clock()
        with self._transaction(durable=False) as conn:
            if conn.execute(_WAITING, (PRINCIPAL, now)).fetchone()[0] >= MAX_PENDING:
                raise ToolError(f"too many pending: {MAX_PENDING} of your approvals already wait for a human")
            approval = conn.execute(_ASK, (PRINCIPAL, digest(arguments), question, now + APPROVAL_TTL)).fetchone()[0]
            self._sign("requested", approval, arguments, question_sha256=hashlib.sha256(question.encode()).hexdigest())

    def refuse(self, arguments: dict[str, str], reason: str) -> None:
        """A call the policy refused before asking: its signed `denied` record, durably (an outcome returned is
        an outcome kept)."""
        with self._transaction(durable=True):
            self._sign("denied", None, arguments, reason=reason)

    def settle(self, arguments: dict[str, str], shown: str, minor: int, *, approve: bool) -> str:
        """The answer to the question `shown`, in one durable transaction: decided again, the approval used
        once and in time, the money posted as two entries, the outcome signed. Returns the outcome."""
        with self._transaction(durable=True) as conn:
            reason = decide_transfer(self, arguments["from_account"], minor) if approve else "rejected"
            verdict = "executed" if reason == "allow" else "failed" if approve else "rejected"
            claimed = conn.execute(
                _CLAIM,
                {
                    "now": self.clock(),
                    "verdict": verdict,
                    "who": PRINCIPAL,
                    "binding": digest(arguments),
                    "shown": shown,
                },
            ).fetchone()
            if claimed is None:
                raise ToolError("no pending approval of these arguments holds the question shown; nothing was done")
            approval, status = claimed
            if status == "executed":
                moved = {"approval": approval, "from": arguments["from_account"], "to": arguments["to_account"]}
                moved["minor"] = minor
                conn.execute(_POST, moved)
                conn.execute(_MOVE, moved)
            self._sign(status, approval, arguments)
        return f"failed: {reason}" if status == "failed" else str(status)

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """One write transaction; a durable one's COMMIT waits for the disk (`synchronous = FULL`)."""
        conn = self._conn
        conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _sign(self, event: str, approval: int | None, arguments: dict[str, str], **more: str) -> None:
        """An Ed25519-signed audit record, written in the transaction of what it records."""
        record = canonical_json(
            {"event": event, "principal": PRINCIPAL, "arguments": arguments, "approval": approval, **more}
        )
        signature = self._key.sign(record.encode()).hex()
        self._conn.execute("INSERT INTO audit (record, signature) VALUES (?, ?)", (record, signature))


def holds(program: Any, variables: dict[str, Any], *, minor: bool = False) -> bool:
    context = cel.Context()
    context.update(variables)
    if minor:
        context.add_function("minor", lambda units: int(Decimal(units).scaleb(2)))
    return bool(program.execute(context))


def decide_transfer(records: Records, from_account: str, minor: int) -> str:
    """The shipped policy's decision on a transfer, on the accounts as they are now."""
    if minor <= 0:
        return "not a positive amount"
    found = records.account(from_account)
    if found is None:
        return "unknown account"
    balance, relations, roles = found
    if holds(MAY_DEBIT, {"roles": roles, "from_account": {"access": relations}}):
        return "not entitled"
    if holds(CEILING, {"amount_minor": minor}, minor=True):
        return "above ceiling"
    return "allow" if balance >= minor else "insufficient funds"


def register(server: MCPServer, records: Records) -> None:
    """Add `read_entitled` and `approve_recorded` to `server` (the baselines' server, `bench.bare_server`)."""

    async def asked(ctx: Context, from_account: str, to_account: str, amount: str) -> bool:
        if ctx.request_state is None:  # the first round; a round bringing the answer only reads
            minor = int(Decimal(amount).scaleb(2))
            verdict = decide_transfer(records, from_account, minor)
            arguments = {"from_account": from_account, "to_account": to_account, "amount": amount}
            if verdict != "allow":
                records.refuse(arguments, verdict)
                raise ToolError(verdict)
            question = (await ask(from_account, to_account, amount)).message
            records.ask(arguments, question)
        return True

    async def ask_recorded(
        from_account: str, to_account: str, amount: str, recorded: Annotated[bool, Resolve(asked)]
    ) -> Elicit[Approval]:
        return await ask(from_account, to_account, amount)

    @server.tool(structured_output=True)
    async def read_entitled(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        found = records.account(account_id)
        if found is None or not holds(VISIBLE, variables := {"roles": found[2], "account": {"access": found[1]}}):
            raise ToolError(f"unknown account {account_id}")
        if holds(MAY_READ, variables):
            raise ToolError("not entitled")
        return balance_result(account_id, found[0])

    @server.tool()
    async def approve_recorded(
        from_account: str,
        to_account: str,
        amount: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_recorded)],
    ) -> str:
        arguments = {"from_account": from_account, "to_account": to_account, "amount": amount}
        shown = (await ask(from_account, to_account, amount)).message  # the question the answer was given to
        approve = isinstance(answer, AcceptedElicitation) and answer.data.approve
        return records.settle(arguments, shown, int(Decimal(amount).scaleb(2)), approve=approve)
