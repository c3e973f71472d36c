"""The required-work floor: the checks and records any gate keeping bankgate's promises must make, and no more.

The plain floors (`bench.bare_server`) show what any tool of a kind must do on this SDK; a goal
stated against them can still ask more than a correct gate can give, because bankgate must also
decide by its policy, know who may act on which account, bind each approval to the exact
arguments and use it once, and sign an audit record in the same transaction as the money.
These tools do exactly that, the cheapest correct way (raw `sqlite3` on one connection on the
event loop, each read one statement, CEL conditions compiled once, variables bound with only the
fields the conditions read), so their rate over the plain floor's is the most any such gate
reaches on a goal stated against that floor:

- `read_entitled`: one read of the balance with the caller's relations and roles, the visibility
  condition and the tool's rule, the result in the balance schema (server_bench).
- `approve_recorded`: the decision before asking (the policy's rules, and whether the balance
  covers the amount), the question committed bound to the digest of its arguments, the approval's
  answer settled once in the durable transaction that decides again on the accounts as they are
  then, moves the money and appends a signed audit record (gate_bench); a refusal is recorded.

Left out, though bankgate does them, so this floor stays a lower bound: audit records of
questions, chaining and head signatures (the sequencer's, batched), idempotency keys.
"""

import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from bench.bare_parts import Approval, ask, balance_result
from mcp_server.tools.balance import BalanceResult
from policy.canonical import canonical_json, digest
from policy.cel_engine import cel

PRINCIPAL = "local"
"""Who calls: bankgate's principal on stdio and in memory, owner of the debited account in both ledgers."""

VISIBLE = cel.compile("'operator' in roles || size(account.access) > 0")
MAY_READ = cel.compile("!('operator' in roles || 'owner' in account.access || 'viewer' in account.access)")
MAY_DEBIT = cel.compile("!('operator' in roles || 'owner' in from_account.access)")
CEILING = cel.compile("amount_minor > minor(50000)")
"""The shipped policy's conditions for these calls (`policy/default_policy.toml`)."""

_ACCOUNT = (
    "SELECT b.minor, (SELECT group_concat(relation) FROM access WHERE principal = :who AND account_id = b.id),"
    " (SELECT group_concat(role) FROM roles WHERE principal = :who) FROM balances b WHERE b.id = :id"
)


class Records:
    """The floor's ledger: balances, entitlements, approvals, transfers and signed audit records, WAL, one writer."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(tempfile.mkdtemp()) / "records.db"
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE balances (id TEXT PRIMARY KEY, minor INTEGER NOT NULL);
            CREATE TABLE access (principal TEXT, account_id TEXT, relation TEXT, PRIMARY KEY (principal, account_id));
            CREATE TABLE roles (principal TEXT, role TEXT, PRIMARY KEY (principal, role));
            CREATE TABLE approvals (id INTEGER PRIMARY KEY, digest TEXT NOT NULL, status TEXT NOT NULL);
            CREATE INDEX approvals_pending ON approvals (digest, status);
            CREATE TABLE transfers (id INTEGER PRIMARY KEY, from_id TEXT, to_id TEXT, minor INTEGER, approval INTEGER);
            CREATE TABLE audit (id INTEGER PRIMARY KEY, record TEXT NOT NULL, signature TEXT NOT NULL);
            INSERT INTO balances VALUES ('ACC-001', 100000000000), ('ACC-002', 0), ('ACC-003', 0);
            INSERT INTO access VALUES ('local', 'ACC-001', 'owner'), ('local', 'ACC-003', 'owner');
            """
        )
        self._key = Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key()

    def account(self, account_id: str) -> tuple[int, list[str], list[str]] | None:
        """Balance, the caller's relations to the account and its roles, in one statement (one snapshot)."""
        row = self._conn.execute(_ACCOUNT, {"who": PRINCIPAL, "id": account_id}).fetchone()
        if row is None:
            return None
        return row[0], row[1].split(",") if row[1] else [], row[2].split(",") if row[2] else []

    def ask(self, bound: str) -> None:
        """The question, committed before it is asked (not waiting for the disk, as bankgate's)."""
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute("INSERT INTO approvals (digest, status) VALUES (?, 'pending')", (bound,))
        self._conn.execute("COMMIT")

    def reject(self, bound: str) -> str:
        """A refused approval, recorded durably as refused (it can never be used)."""
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute(
            "UPDATE approvals SET status = 'rejected' WHERE id = "
            "(SELECT min(id) FROM approvals WHERE digest = ? AND status = 'pending')",
            (bound,),
        )
        return "rejected"

    def settle(self, bound: str, arguments: dict[str, str], minor: int) -> str:
        """The approved transfer in one durable transaction: approval used once, re-decided, posted, audited."""
        conn = self._conn
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            approval = conn.execute(
                "UPDATE approvals SET status = 'approved' WHERE id = "
                "(SELECT min(id) FROM approvals WHERE digest = ? AND status = 'pending') RETURNING id",
                (bound,),
            ).fetchone()
            if approval is None:
                raise ToolError("no pending approval for these arguments")
            verdict = decide_transfer(self, arguments["from_account"], minor)
            if verdict != "allow":
                raise ToolError(verdict)
            conn.execute(
                "INSERT INTO transfers (from_id, to_id, minor, approval) VALUES (?, ?, ?, ?)",
                (arguments["from_account"], arguments["to_account"], minor, approval[0]),
            )
            conn.execute(
                "UPDATE balances SET minor = minor + CASE WHEN id = :from THEN -:minor ELSE :minor END"
                " WHERE id IN (:from, :to)",
                {"from": arguments["from_account"], "to": arguments["to_account"], "minor": minor},
            )
            record = canonical_json(
                {"event": "executed", "principal": PRINCIPAL, "arguments": arguments, "approval": approval[0]}
            )
            conn.execute(
                "INSERT INTO audit (record, signature) VALUES (?, ?)", (record, self._key.sign(record.encode()).hex())
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return "executed"


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
            if verdict != "allow":
                raise ToolError(verdict)
            records.ask(digest({"from_account": from_account, "to_account": to_account, "amount": amount}))
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
        if not isinstance(answer, AcceptedElicitation) or not answer.data.approve:
            return records.reject(digest(arguments))
        return records.settle(digest(arguments), arguments, int(Decimal(amount).scaleb(2)))
