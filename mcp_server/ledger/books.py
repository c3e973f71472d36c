"""The double-entry ledger: where "nothing acknowledged is lost, nothing approved runs twice".

Every movement is one `transactions` row plus two `entries` (a debit and a credit that
sum to zero) and the matching change to both cached `accounts.balance_minor` values, all
in one database transaction. Where each rule is enforced:

* Input shape (amounts, ids, memos, keys): parsed before any SQL (`money`,
  `identifiers`, `free_text`), so a bad request never opens a write.
* Existence, open status, same currency, distinct accounts, no overdraft and no credit past
  `MAX_BALANCE_MINOR`: checked here
  on rows locked for the rest of the transaction (see `Database` for the lock discipline),
  before anything is written, so a refusal changes nothing.
* No negative customer balance and "closed means empty": also CHECK constraints in the
  schema, so even a bug cannot commit a violation.
* Accounted for: money posted outside the policy gate (deposits, the demo seed) is recorded in
  the audit chain in the same transaction (event `admin`), so `audit verify` can demand a
  record for every ledger transaction. `transfer`/`close` here are the bare ledger API
  (tests, the ledger benchmark): they bypass the gate, and `audit verify` names what they post.
* Exactly-once: `idempotency` stores the first outcome of a keyed request in the same
  transaction; `transactions.idempotency_key` is UNIQUE as a second line of defence.

The `*_in` methods run inside a caller's transaction (the policy gate combines them with
consuming an approval and writing audit rows) and take arguments already parsed at the edge
(the tools' `canonical`), so nothing is parsed twice; the other methods run their own and
parse what they are given.
Customer accounts can be read after closing (status `closed`); they refuse every later
movement or close with `account_closed`.
"""

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection

from mcp_server.audit.writer import AuditWriter
from mcp_server.ledger.entitlements import (
    ADMIN_PRINCIPAL,
    Held,
    grant_in,
    grant_role_in,
    held_columns,
    held_of,
    held_rows,
    locked_holdings,
)
from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.ledger.free_text import parse_owner
from mcp_server.ledger.identifiers import (
    ACCOUNT_ID_PATTERN,
    parse_account_id,
    parse_idempotency_key,
    system_account_id,
)
from mcp_server.ledger.invariants import violations
from mcp_server.ledger.models import (
    Account,
    CloseReceipt,
    DepositReceipt,
    HistoryLine,
    TransactionKind,
    TransferReceipt,
)
from mcp_server.ledger.money import (
    DEFAULT_MAX_AMOUNT_MINOR,
    MAX_BALANCE_MINOR,
    amount_identity,
    check_amount_minor,
    format_amount,
    parse_amount,
    parse_currency,
    to_decimal,
)
from mcp_server.storage import idempotency
from mcp_server.storage.database import Database
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from mcp_server.storage.stored_int import stored_int
from mcp_server.timestamps import format_timestamp, utc_now
from policy.canonical import digest
from policy.store import AuditEntry

M = TypeVar("M", bound=BaseModel)

MAX_HISTORY_LIMIT = 500
DEMO_ACCOUNTS: tuple[tuple[str, str, int], ...] = (
    ("ACC-001", "Alice Example", 5_000_00),
    ("ACC-002", "Bob Example", 250_00),
    ("ACC-003", "Carol Example", 120_00),
)
DEMO_OWNERS = {"ACC-001": "alice", "ACC-002": "bob", "ACC-003": "carol"}
"""Who owns each demo account: the principals of the README's examples (tokens, BANKGATE_PRINCIPAL)."""
DEMO_OPERATOR = "local"
"""The default stdio principal: whoever runs the server at their own desk on the demo ledger is
its operator (the demo moves money out of ACC-001 and ACC-002 and closes ACC-003)."""

_COLUMNS = "id, owner, currency, status, balance_minor, created_at, closed_at"
_SELECT_ACCOUNT = Statement(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id")
_PAIR = "WHERE id IN (:first, :second) ORDER BY id"
_SELECT_CUSTOMERS = Statement(f"SELECT {_COLUMNS} FROM accounts WHERE kind = 'customer' ORDER BY length(id), id")
_SELECT_CUSTOMER_IDS = Statement("SELECT id FROM accounts WHERE kind = 'customer'")
_INSERT_ACCOUNT = Statement(
    "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at)"
    " VALUES (:id, :kind, :owner, :currency, 'open', 0, :created_at)"
)
_CLOSE_ACCOUNT = Statement("UPDATE accounts SET status = 'closed', closed_at = :closed_at WHERE id = :id")
_INSERT_TRANSACTION = Statement(
    "INSERT INTO transactions (id, kind, memo, created_at, idempotency_key, approval_ref)"
    " VALUES (:id, :kind, :memo, :created_at, :key, :approval_ref)"
)
_INSERT_ENTRIES = Statement(
    "INSERT INTO entries (id, transaction_id, account_id, amount_minor)"
    " VALUES (:debit_entry, :tx, :debit, :debit_amount), (:credit_entry, :tx, :credit, :amount)"
)
_MOVE = Statement(
    "UPDATE accounts SET balance_minor = CASE WHEN id = :debit"
    " THEN balance_minor - :amount ELSE balance_minor + :amount END"
    " WHERE id IN (:debit, :credit)"
)
_HISTORY_FIELDS = ("transaction_id", "kind", "memo", "created_at", "amount_minor", "counterparty")
_HISTORY = Statement(
    "SELECT t.id, t.kind, t.memo, t.created_at, e.amount_minor, other.account_id"
    " FROM entries e"
    " JOIN transactions t ON t.id = e.transaction_id"
    " JOIN entries other ON other.transaction_id = e.transaction_id AND other.account_id <> e.account_id"
    " WHERE e.account_id = :id"
    " ORDER BY t.created_at DESC, t.id DESC LIMIT :limit"
)


class Side(Protocol):
    """One side of a movement as posting needs it: an account row, its public model, or its facts."""

    @property
    def id(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def balance_minor(self) -> int: ...


class AccountRow(Side, Protocol):
    """An account as a plan or a look-up hands it to the gate's tools: what they show, judge and post. A row
    as read (no model built: a pydantic validation and its datetime parsing, which a call's question and
    settlement, each reading two accounts, never show); `Account` has these too."""

    @property
    def owner(self) -> str: ...
    @property
    def status(self) -> str: ...


class _Row(NamedTuple):
    """An account row as the write path uses it: cheaper than building the public model (an `AccountRow`)."""

    id: str
    owner: str
    currency: str
    status: str
    balance_minor: int
    created_at: str
    closed_at: str | None

    def public(self) -> Account:
        return Account.model_validate(dict(zip(self._fields, self, strict=True)))  # `_asdict`'s, without its call


def _row(values: Sequence[Any]) -> _Row:
    """An account row as read (its first seven columns), its balance checked (`stored_int`): every movement adds to
    it and compares it, which text edited into it on SQLite would fail with an unexpected `TypeError`."""
    row = _Row(*values[:7])
    stored_int(row.balance_minor, "accounts", ("id", row.id), "balance_minor")
    return row


Seen = Callable[[AccountRow, Held], object]
"""A caller's check of the first account a plan reads, with what the holder holds (it raises to refuse)."""


class TransferPlan(NamedTuple):
    """A transfer that passed every check, on rows locked until the transaction ends if planned with `lock`."""

    debit: AccountRow
    credit: AccountRow
    amount_minor: int
    held: Held
    """What the holder the plan was made for holds on both accounts (nothing, without a holder)."""


class ClosePlan(NamedTuple):
    """A closure that passed every check; `destination` receives `account`'s balance."""

    account: AccountRow
    destination: AccountRow | None
    held: Held
    """As `TransferPlan.held`."""


class Ledger:
    """Accounts and money movements over a :class:`Database` (SQLite or PostgreSQL)."""

    def __init__(
        self, db: Database, *, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR, audit: AuditWriter | None = None
    ) -> None:
        if max_amount_minor <= 0:
            raise ValueError("max_amount_minor must be positive")
        self._db = db
        self._audit = audit or AuditWriter()
        self._max_amount_minor = max_amount_minor
        # Both rows a movement touches, locked in id order (PostgreSQL) so writers cannot deadlock.
        self._lock_accounts = Statement(f"SELECT {_COLUMNS} FROM accounts {_PAIR}{db.for_update}")
        held = f"SELECT {_COLUMNS}{held_columns(db.dialect)} FROM accounts "
        self._held_pair = Statement(held + _PAIR)
        """Both rows with what a holder holds on them, in one statement (a question, a read)."""
        self._held_one = Statement(held + "WHERE id = :first")
        """One row with what a holder holds on it: on SQLite `IN (:first, :first) ORDER BY id` costs more than
        `id = :first` (~7.5 µs against ~5.5: the IN list is built into a table to search), on every balance read."""
        self._holdings = locked_holdings(db.for_share)
        """What a holder holds on two rows locked as above, read after the lock (`locked_holdings`)."""
        self._locks_rows = db.dialect == "postgresql"
        """Whether a read locks rows: SQLite's write transaction holds the whole file from its BEGIN IMMEDIATE,
        before any read, so its one read of the rows with the holding (`_held_pair`) already comes after the lock."""

    @property
    def db(self) -> Database:
        return self._db

    @property
    def max_amount_minor(self) -> int:
        """The ceiling on one amount, in minor units."""
        return self._max_amount_minor

    # -- composable operations: run inside the caller's transaction -------------------------

    def account_in(self, conn: Connection, account_id: str, field: str = "account_id") -> Account:
        """The customer account `account_id` (open or closed); `unknown_account` if none."""
        row = _SELECT_ACCOUNT.one(conn, {"id": account_id})
        if row is None:
            raise unknown_account(account_id, field)
        return _row(row).public()

    def held_account_in(
        self, conn: Connection, account_id: str, holder: str, field: str = "account_id"
    ) -> tuple[AccountRow, Held]:
        """`account_in` (as read, not a model), with what `holder` holds on the account, read in the same
        statement (`_pair`'s columns, of one account)."""
        row = self._held_one.one(conn, {"first": account_id, "holder": holder})
        if row is None:
            raise unknown_account(account_id, field)
        return _row(row), held_of(((row[0], row[7], row[8]),))

    def transfer_in(
        self,
        conn: Connection,
        from_account: str,
        to_account: str,
        amount_minor: int,
        memo: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """Move `amount_minor` between two open same-currency accounts, or change nothing."""
        _distinct_parties(from_account, to_account)
        return self._transfer(
            conn,
            from_account,
            to_account,
            lambda currency: check_amount_minor(amount_minor, currency, ceiling_minor=self._max_amount_minor),
            memo,
            _optional_key(idempotency_key),
        )

    def plan_transfer_in(
        self,
        conn: Connection,
        from_account: str,
        to_account: str,
        amount: object,
        *,
        lock: bool = True,
        holder: str | None = None,
        seen: Seen | None = None,
    ) -> TransferPlan:
        """Everything `transfer_in` would check (`amount` in major units of the debit's currency), without
        writing: what an approver is shown, and a refusal before anyone is asked.

        `lock`: read both rows `FOR UPDATE`, so `post_transfer_in` can write on this plan; without it,
        one consistent read (enough to show a question). `holder`: whose relations and roles to read
        with the rows (`TransferPlan.held`). `seen` is called with the debit account and that holding
        once it is found, before any other check (the caller's visibility rule: it raises to refuse).
        """
        _distinct_parties(from_account, to_account)
        debit, credit, amount_minor, held = self._plan_transfer(
            conn,
            from_account,
            to_account,
            lambda currency: parse_amount(amount, currency, ceiling_minor=self._max_amount_minor),
            lock=lock,
            holder=holder,
            seen=seen,
        )
        return TransferPlan(debit, credit, amount_minor, held)

    def expect_plan(
        self, conn: Connection, first: str, second: str | None, *, lock: bool = True, holder: str | None = None
    ) -> None:
        """Send ahead the read that `plan_transfer_in(conn, first, second, …)` or `plan_close_in(conn, first,
        second, …)` will make, with the same `lock` and `holder` (`Statement.prefetch`)."""
        if conn.dialect.name != "postgresql":
            return  # nothing goes ahead elsewhere (`Statement.prefetch`)
        params = _pair_params(first, second or first, holder)
        if not lock:
            self._held_pair.prefetch(conn, params)
            return
        self._lock_accounts.prefetch(conn, {"first": params["first"], "second": params["second"]})
        if holder is not None:
            self._holdings.prefetch(conn, params)

    def post_transfer_in(
        self,
        conn: Connection,
        debit: Side,
        credit: Side,
        amount_minor: int,
        memo: str | None = None,
        request_key: str | None = None,
        approval_ref: str | None = None,
    ) -> TransferReceipt:
        """Write a transfer that `plan_transfer_in(lock=True)` checked in this transaction, on the rows it
        locked and read: no second lock, no second plan. `request_key` (the gate's caller-scoped idempotency
        key, taken as is) goes in `transactions.idempotency_key`, whose UNIQUE refuses a second movement
        should the key's stored outcome be gone; `approval_ref` (the approval this settles) goes in
        `transactions.approval_ref`, whose unique index refuses a second movement should the approval's
        row be set back to pending."""
        return self._post_transfer(conn, debit, credit, amount_minor, memo, request_key, approval_ref)

    def plan_close_in(
        self,
        conn: Connection,
        account_id: str,
        sweep_to: str | None = None,
        *,
        lock: bool = True,
        holder: str | None = None,
        seen: Seen | None = None,
    ) -> ClosePlan:
        """Everything `close_in` would check, without writing; `lock`, `holder` and `seen` as in
        `plan_transfer_in`."""
        _distinct_sweep(account_id, sweep_to)
        account, destination, held = self._plan_close(conn, account_id, sweep_to, lock=lock, holder=holder, seen=seen)
        return ClosePlan(account, destination, held)

    def post_close_in(
        self,
        conn: Connection,
        account: Side,
        destination: Side | None,
        request_key: str | None = None,
        approval_ref: str | None = None,
    ) -> CloseReceipt:
        """Close an account that `plan_close_in(lock=True)` checked in this transaction, on the rows it
        locked and read: no second lock, no second plan. `request_key`, `approval_ref`: as for
        `post_transfer_in` (a close that sweeps nothing posts nothing; a closed account cannot close again)."""
        return self._post_close(conn, account, destination, request_key, approval_ref)

    def close_in(
        self,
        conn: Connection,
        account_id: str,
        sweep_to: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> CloseReceipt:
        """Close an account; a non-zero balance needs `sweep_to` and moves there first."""
        _distinct_sweep(account_id, sweep_to)
        return self._close(conn, account_id, sweep_to, _optional_key(idempotency_key))

    # -- convenience operations: one transaction each ---------------------------------------

    def balance(self, account_id: str) -> Account:
        """One indexed read; closed accounts are returned with status `closed`."""
        parsed = parse_account_id(account_id, "account_id")
        return self._db.read(lambda conn: self.account_in(conn, parsed))

    def accounts(self) -> list[Account]:
        """All customer accounts, open and closed, in id order."""
        return self._db.read(lambda conn: [_row(row).public() for row in _SELECT_CUSTOMERS.all(conn)])

    def history(self, account_id: str, limit: int = 50) -> list[HistoryLine]:
        """The account's most recent movements, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise LedgerError(
                ErrorCode.INVALID_LIMIT,
                f"limit must be a whole number from 1 to {MAX_HISTORY_LIMIT}.",
                field="limit",
            )

        parsed = parse_account_id(account_id, "account_id")

        def read(conn: Connection) -> list[HistoryLine]:
            account = self.account_in(conn, parsed)
            return [
                HistoryLine.model_validate(
                    {**dict(zip(_HISTORY_FIELDS, row, strict=True)), "currency": account.currency}
                )
                for row in _HISTORY.all(conn, {"id": account.id, "limit": limit})
            ]

        return self._db.read(read)

    def create_account(self, owner: str, currency: str = "USD", account_id: str | None = None) -> Account:
        """Admin: open an empty account, numbered `ACC-NNN` after the highest one if no id given."""
        name = parse_owner(owner)
        code = parse_currency(currency)
        wanted = None if account_id is None else parse_account_id(account_id, "account_id")
        return self._db.run(lambda conn: self._create_account(conn, name, code, wanted).public())

    def deposit(self, account_id: str, amount: object, idempotency_key: str | None = None) -> DepositReceipt:
        """Admin: credit money arriving from outside the bank, at most once per key."""
        target = parse_account_id(account_id, "account_id")
        key = _optional_key(idempotency_key)
        identity = amount_identity(amount)

        def work(conn: Connection) -> DepositReceipt:
            account = self._usable(conn, target, "account_id")
            minor = parse_amount(amount, account.currency, ceiling_minor=self._max_amount_minor)
            receipt = self._fund(conn, account, minor, "deposit", None, key)
            self._administered(conn, "deposit", [receipt])
            return receipt

        return self.once(
            key,
            lambda: digest({"operation": "deposit", "account_id": target, "amount": identity}),
            DepositReceipt,
            work,
        )

    def seed_demo(self) -> list[Account]:
        """Admin: create and fund the demo accounts once (ACC-003 is funded, so closing it needs a
        sweep) and grant them to their owners and the local operator (`DEMO_OWNERS`,
        `DEMO_OPERATOR`); a no-op returning the existing accounts when ACC-001 already exists, also for
        servers started together on a new ledger (they take the setup's turn before looking)."""

        def work(conn: Connection) -> list[Account]:
            take_turn(conn, Space.SETUP, "seed_demo")
            if _SELECT_ACCOUNT.one(conn, {"id": DEMO_ACCOUNTS[0][0]}) is None:
                receipts = []
                for account_id, owner, funding in DEMO_ACCOUNTS:
                    account = self._create_account(conn, owner, "USD", account_id)
                    receipts.append(self._fund(conn, account, funding, "funding", "demo funding", None))
                    grant_in(conn, DEMO_OWNERS[account_id], "owner", account_id, "demo seed")
                grant_role_in(conn, DEMO_OPERATOR, "operator", "demo seed")
                self._administered(conn, "seed_demo", receipts)
            return [self.account_in(conn, account_id) for account_id, _, _ in DEMO_ACCOUNTS]

        return self._db.run(work)

    def check_invariants(self) -> list[str]:
        """Every violated ledger invariant, described; empty when the books are sound."""

        return self._db.read(violations)

    # -- internals -------------------------------------------------------------------------

    def once(
        self,
        key: str | None,
        digest_of_request: Callable[[], str],
        model: type[M],
        work: Callable[[Connection], M],
    ) -> M:
        """Run `work` in one transaction; with a key, replay the stored outcome instead (the admin's
        deposit, and tests driving the bare ledger)."""
        if key is None:
            return self._db.run(work)
        digest = digest_of_request()

        def run(conn: Connection) -> M:
            stored = idempotency.recall(conn, key, digest, hold=True)
            if stored is not None:
                return model.model_validate(stored)
            result = work(conn)
            idempotency.remember(conn, key, digest, result.model_dump(mode="json"))
            return result

        return self._db.run(run)

    def _transfer(
        self,
        conn: Connection,
        source: str,
        target: str,
        amount_in: Callable[[str], int],
        memo: str | None,
        key: str | None,
    ) -> TransferReceipt:
        debit, credit, amount, _ = self._plan_transfer(conn, source, target, amount_in)
        return self._post_transfer(conn, debit, credit, amount, memo, key)

    def _post_transfer(
        self,
        conn: Connection,
        debit: Side,
        credit: Side,
        amount: int,
        memo: str | None,
        key: str | None,
        approval_ref: str | None = None,
    ) -> TransferReceipt:
        transaction_id, created_at = self._post(conn, "transfer", debit, credit, amount, memo, key, approval_ref)
        return TransferReceipt(
            transaction_id=transaction_id,
            from_account=debit.id,
            to_account=credit.id,
            amount_minor=amount,
            currency=debit.currency,
            memo=memo,
            from_balance_after_minor=debit.balance_minor - amount,
            to_balance_after_minor=credit.balance_minor + amount,
            created_at=created_at,
        )

    def _plan_transfer(
        self,
        conn: Connection,
        source: str,
        target: str,
        amount_in: Callable[[str], int],
        *,
        lock: bool = True,
        holder: str | None = None,
        seen: Seen | None = None,
    ) -> tuple[_Row, _Row, int, Held]:
        locked, held = self._pair(conn, source, target, lock=lock, holder=holder, seen=seen)
        debit = _open_account(locked, source, "from_account")
        credit = _open_account(locked, target, "to_account")
        if credit.currency != debit.currency:
            raise LedgerError(
                ErrorCode.CURRENCY_MISMATCH,
                f"Account {source} holds {debit.currency} but {target} holds {credit.currency}; "
                "both sides of a transfer must use the same currency.",
                field="to_account",
            )
        amount = amount_in(debit.currency)
        if amount > debit.balance_minor:
            raise LedgerError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"Account {source} has {format_amount(debit.balance_minor, debit.currency)} available, "
                f"less than the {format_amount(amount, debit.currency)} requested.",
                field="amount",
            )
        _within_balance_limit(credit, credit.balance_minor + amount)  # the debit is covered: at least zero after
        return debit, credit, amount, held

    def _close(self, conn: Connection, target: str, sweep: str | None, key: str | None) -> CloseReceipt:
        account, destination, _ = self._plan_close(conn, target, sweep)
        return self._post_close(conn, account, destination, key)

    def _post_close(
        self,
        conn: Connection,
        account: Side,
        destination: Side | None,
        key: str | None,
        approval_ref: str | None = None,
    ) -> CloseReceipt:
        transaction_id = None
        closed_at = utc_now()
        if account.balance_minor:
            assert destination is not None, "a planned closure of a funded account has a sweep target"
            transaction_id, closed_at = self._post(
                conn, "close_sweep", account, destination, account.balance_minor, "closing sweep", key, approval_ref
            )
        _CLOSE_ACCOUNT.send(conn, {"id": account.id, "closed_at": format_timestamp(closed_at)})
        return CloseReceipt(
            account_id=account.id,
            swept_to=destination.id if destination is not None else None,
            swept_amount_minor=account.balance_minor,
            currency=account.currency,
            closed_at=closed_at,
            transaction_id=transaction_id,
        )

    def _plan_close(
        self,
        conn: Connection,
        target: str,
        sweep: str | None,
        *,
        lock: bool = True,
        holder: str | None = None,
        seen: Seen | None = None,
    ) -> tuple[_Row, _Row | None, Held]:
        locked, held = self._pair(conn, target, sweep or target, lock=lock, holder=holder, seen=seen)
        account = _open_account(locked, target, "account_id")
        destination = None if sweep is None else _open_account(locked, sweep, "sweep_to")
        if destination is not None and destination.currency != account.currency:
            raise LedgerError(
                ErrorCode.CURRENCY_MISMATCH,
                f"Account {target} holds {account.currency} but {sweep} holds {destination.currency}; "
                "the sweep account must use the same currency.",
                field="sweep_to",
            )
        if account.balance_minor and destination is None:
            raise LedgerError(
                ErrorCode.BALANCE_NOT_ZERO,
                f"Account {target} still holds {format_amount(account.balance_minor, account.currency)}; "
                "move the money out first or name an account to sweep it to (sweep_to).",
                field="sweep_to",
            )
        if account.balance_minor > self._max_amount_minor:
            # A sweep is a movement like any other: the same ceiling holds.
            raise LedgerError(
                ErrorCode.SWEEP_OVER_LIMIT,
                f"Account {target} holds {format_amount(account.balance_minor, account.currency)}, more than the "
                f"limit of {format_amount(self._max_amount_minor, account.currency)} per transaction; move the "
                "money out in smaller transfers first.",
                field="account_id",
            )
        if destination is not None:
            _within_balance_limit(destination, destination.balance_minor + account.balance_minor, "sweep_to")
        return account, destination, held

    def _fund(
        self,
        conn: Connection,
        account: _Row,
        amount: int,
        kind: TransactionKind,
        memo: str | None,
        key: str | None,
    ) -> DepositReceipt:
        """Credit `account` from its currency's system account (money entering the bank)."""
        external = self._system_account(conn, account.currency)
        transaction_id, created_at = self._post(conn, kind, external, account, amount, memo, key)
        return DepositReceipt(
            transaction_id=transaction_id,
            account_id=account.id,
            amount_minor=amount,
            currency=account.currency,
            balance_after_minor=account.balance_minor + amount,
            created_at=created_at,
        )

    def _administered(self, conn: Connection, tool: str, receipts: Sequence[DepositReceipt]) -> None:
        """Audit money posted outside the gate, in its transaction: one record per ledger transaction."""
        now = time.time()
        self._audit.append(
            conn,
            [
                AuditEntry(
                    at=now,
                    event="admin",
                    principal=ADMIN_PRINCIPAL,
                    tool=tool,
                    arguments={"account_id": r.account_id, "amount": str(to_decimal(r.amount_minor, r.currency))},
                    policy_version="",
                    reason="ledger administration, outside the policy gate",
                    result={"status": "executed", "details": r.model_dump(mode="json")},
                )
                for r in receipts
            ],
        )

    def _post(
        self,
        conn: Connection,
        kind: TransactionKind,
        debit: Side,
        credit: Side,
        amount: int,
        memo: str | None,
        key: str | None,
        approval_ref: str | None = None,
    ) -> tuple[str, datetime]:
        """Write one balanced movement on already-locked, already-checked accounts (within `MAX_BALANCE_MINOR`)."""
        _within_balance_limit(credit, credit.balance_minor + amount)
        _within_balance_limit(debit, debit.balance_minor - amount)
        transaction_id = "TX-" + secrets.token_hex(10)
        created_at = utc_now()
        _INSERT_TRANSACTION.send(
            conn,
            {
                "id": transaction_id,
                "kind": kind,
                "memo": memo,
                "created_at": format_timestamp(created_at),
                "key": key,
                "approval_ref": approval_ref,
            },
        )
        _INSERT_ENTRIES.send(
            conn,
            {
                "tx": transaction_id,
                "debit_entry": transaction_id + ":1",
                "debit": debit.id,
                "debit_amount": -amount,
                "credit_entry": transaction_id + ":2",
                "credit": credit.id,
                "amount": amount,
            },
        )
        _MOVE.send(conn, {"debit": debit.id, "credit": credit.id, "amount": amount})
        return transaction_id, created_at

    def _pair(
        self, conn: Connection, first: str, second: str, *, lock: bool, holder: str | None, seen: Seen | None
    ) -> tuple[dict[str, _Row], Held]:
        """Both rows and what `holder` holds on them: locked, the holding read after the lock
        (`locked_holdings`), or one consistent read (also SQLite's locked one: `_locks_rows`); `seen` is shown
        the first one, if it exists."""
        if lock and (self._locks_rows or holder is None):
            rows = self._lock(conn, first, second)
            params = _pair_params(first, second, holder)
            held = held_rows(self._holdings.all(conn, params)) if holder is not None else Held()
        else:
            found = self._held_pair.all(conn, _pair_params(first, second, holder))
            rows = {row[0]: _row(row) for row in found}
            held = held_of((row[0], row[7], row[8]) for row in found)
        if seen is not None and first in rows:
            seen(rows[first], held)
        return rows, held

    def _lock(self, conn: Connection, first: str, second: str) -> dict[str, _Row]:
        return {row[0]: _row(row) for row in self._lock_accounts.all(conn, {"first": first, "second": second})}

    def _usable(self, conn: Connection, account_id: str, field: str) -> _Row:
        return _open_account(self._lock(conn, account_id, account_id), account_id, field)

    def _system_account(self, conn: Connection, currency: str) -> _Row:
        account_id = system_account_id(currency)
        existing = self._lock(conn, account_id, account_id).get(account_id)
        if existing is not None:
            return existing
        return self._insert_account(conn, account_id, "system", "outside the bank", currency)

    def _create_account(self, conn: Connection, owner: str, currency: str, wanted: str | None) -> _Row:
        # Each transaction reads only the numbers committed before it: two creating one number meanwhile (ACC-07 and
        # ACC-007, or the same next number) would both pass without a turn.
        take_turn(conn, Space.ACCOUNT_NUMBERS, "customer")
        if wanted is None:
            numbers = [_number(account_id) for (account_id,) in _SELECT_CUSTOMER_IDS.all(conn)]
            wanted = f"ACC-{max((n for n in numbers if n is not None), default=0) + 1:03d}"
        else:
            _new_number(conn, wanted)
        return self._insert_account(conn, wanted, "customer", owner, currency)

    def _insert_account(self, conn: Connection, account_id: str, kind: str, owner: str, currency: str) -> _Row:
        row = _Row(account_id, owner, currency, "open", 0, format_timestamp(utc_now()), None)
        _INSERT_ACCOUNT.run(
            conn,
            {"id": account_id, "kind": kind, "owner": owner, "currency": currency, "created_at": row.created_at},
        )
        return row


def _new_number(conn: Connection, wanted: str) -> None:
    """Refuse `wanted` if an account has its number, also written with other leading zeros: every question
    names an account by its id, and ACC-01 beside ACC-001 (its owner named alike) would read as that account."""
    number = _number(wanted)
    for (taken,) in _SELECT_CUSTOMER_IDS.all(conn):
        if taken == wanted:
            raise LedgerError(ErrorCode.ACCOUNT_EXISTS, f"Account {wanted} already exists.", field="account_id")
        if _number(taken) == number:
            raise LedgerError(
                ErrorCode.ACCOUNT_EXISTS,
                f"Account {taken} has the same number as {wanted}; an id that differs only in leading zeros "
                "would read as that account. Choose another number.",
                field="account_id",
            )


def _number(account_id: str) -> int | None:
    """The number of a customer account id (`ACC-007` -> 7); None for an id edited out of the numbering (`ACC-X`), which
    no call can name, so no new id can pass for it."""
    return int(account_id[4:]) if ACCOUNT_ID_PATTERN.fullmatch(account_id) else None


def _distinct_parties(source: str, target: str) -> None:
    if source == target:
        raise LedgerError(
            ErrorCode.SAME_ACCOUNT,
            f"from_account and to_account are both {source}; a transfer needs two different accounts.",
            field="to_account",
        )


def _distinct_sweep(target: str, sweep: str | None) -> None:
    if sweep == target:
        raise LedgerError(
            ErrorCode.SAME_ACCOUNT,
            f"sweep_to is {target}, the account being closed; name a different account.",
            field="sweep_to",
        )


def _optional_key(value: object) -> str | None:
    return None if value is None else parse_idempotency_key(value)


def _open_account(locked: Mapping[str, _Row], account_id: str, field: str) -> _Row:
    if account_id not in locked:
        raise unknown_account(account_id, field)
    account = locked[account_id]
    if account.status == "closed":
        raise LedgerError(
            ErrorCode.ACCOUNT_CLOSED,
            f"Account {account_id} ({field}) is closed; closed accounts cannot send, receive or be closed again.",
            field=field,
        )
    return account


def unknown_account(account_id: str, field: str) -> LedgerError:
    """The refusal for a missing account; also for one the caller may not know of (`mcp_server.tools`)."""
    return LedgerError(ErrorCode.UNKNOWN_ACCOUNT, f"Account {account_id} ({field}) does not exist.", field=field)


def _pair_params(first: str, second: str, holder: str | None) -> dict[str, str | None]:
    """The parameters of the read of two accounts and what `holder` holds on them (`Ledger._pair`)."""
    return {"first": first, "second": second, "holder": holder}


def _within_balance_limit(side: Side, balance: int, field: str = "amount") -> None:
    if not -MAX_BALANCE_MINOR <= balance <= MAX_BALANCE_MINOR:
        limit = format_amount(MAX_BALANCE_MINOR, side.currency)
        raise LedgerError(
            ErrorCode.BALANCE_LIMIT,
            f"Account {side.id} would hold more than {limit}, the most a balance may hold (either way); "
            "nothing was moved.",
            field=field,
        )
