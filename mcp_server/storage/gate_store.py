"""The policy layer's storage (approvals, audit chain, idempotency) on the ledger database.

One `SqlGateTx` wraps one ledger transaction, so the gate settles an approval, moves the
money and appends the audit records atomically. Statements run on the driver cursor
(`Statement`): every gated call passes through here twice.
"""

import logging
import time
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from mcp_server.audit.writer import AuditWriter
from mcp_server.storage import idempotency, stored_json
from mcp_server.storage.database import AccessDenied, Database, WouldWait
from mcp_server.storage.locks import Space, take_turn, try_turns
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import format_timestamp
from policy.approval_states import check_settlement
from policy.canonical import canonical_json
from policy.channel import DEFAULT_CHANNEL, Channel
from policy.results import Refusal
from policy.store import Approval, AuditEntry, DeskSignoff, asked_by

T = TypeVar("T")
logger = logging.getLogger(__name__)

NETWORK_DEADLINE = 6.0
"""How long a call waits for a database server before answering `database_unavailable`."""

LATE = (
    "The ledger database is unavailable (it did not answer in time), so the outcome is not known yet; "
    "please try again shortly. Retrying with the same idempotency key is safe."
)
DENIED = (
    "The ledger database refused this server access, so nothing was done; an operator must check the server's "
    "database permissions before it is tried again."
)
"""What a caller is told of `AccessDenied`: the database's own words (tables, the operator's fix) go to the log."""

_ON_LOOP: ContextVar[bool] = ContextVar("gate_store_on_loop", default=False)
"""Set while `run` tries work on the event loop: it then never waits long for another writer."""

_APPROVAL = (
    "SELECT ref, binding, tool, arguments_json, principal, policy_version, question, created_at, expires_at, "
    "status, asked_digest, note, outcome_json, bound_json, channel, idempotency_key FROM approvals WHERE "
)
_BY_ASKED = Statement(_APPROVAL + "asked_digest = :v")
_BY_PENDING_BINDING = Statement(_APPROVAL + "pending_binding = :v")
_INSERT_APPROVAL = Statement(
    "INSERT INTO approvals (ref, binding, pending_binding, tool, arguments_json, principal, policy_version, "
    "question, created_at, expires_at, status, asked_digest, bound_json, channel, idempotency_key) VALUES (:ref, "
    ":binding, :pending_binding, :tool, :arguments, :principal, :policy_version, :question, :created_at, :expires_at, "
    "'pending', :asked_digest, :bound, :channel, :idempotency_key)"
)
_INSERT_SHARED_APPROVAL = Statement(
    _INSERT_APPROVAL.sql + " ON CONFLICT (pending_binding) WHERE pending_binding IS NOT NULL DO NOTHING"
)
_ONE_PENDING = "approvals_one_pending"
"""`pending_binding`'s unique index (pending rows only, migration 0018), which an approval inserted for a binding
already pending breaks."""
_SETTLE_APPROVAL = Statement(
    "UPDATE approvals SET status = CASE WHEN status = 'pending' THEN :status END, pending_binding = NULL, "
    "decided_at = :now, note = :note, outcome_json = :outcome WHERE ref = :ref"
)
"""Settles a pending approval; one settled already would get no status, which `NOT NULL` refuses, failing the
transaction: the database holds "settled once" itself, so the write is queued, not waited on for its count."""
LINKED = "EXISTS (SELECT 1 FROM desk_approver_principals p WHERE p.approver = {approver} AND p.principal = {principal})"
"""Whether the approver named by column `approver` acts as the principal in column `principal`
(`DeskSignoff.approver_is_requester`): the settlement, the sweep and the approvals listing read it alike."""
_OVERDUE = (
    "SELECT ref, idempotency_key FROM approvals WHERE status = 'pending' "
    "AND (expires_at <= :deadline OR created_at > :asked) AND NOT EXISTS "
    "(SELECT 1 FROM desk_decisions d "
    "WHERE d.approval_ref = approvals.ref AND d.verdict = 'approved' AND d.binding = approvals.binding "
    "AND approvals.created_at <= :asked AND d.decided_at + (approvals.expires_at - approvals.created_at) > :deadline) "
    "LIMIT :limit"
)
"""Past the deadline and its grace, or asked after `:asked` (`policy.store.asked_by`: the clock was set back);
a signed desk yes is left out while its caller may still continue it (`Approval.continue_by`, computed alike),
on a clock not set back (a void one is `_VOID_YES`'s). Migration 0014's index (pending rows only) is read until
`:limit` are found, in no particular order (each batch ends whichever are due): with nothing due, every pending
row's entry, as an index by deadline was read too (created_at is in neither); in a backlog, the first entries.
Sorting them by deadline (migration 0017 dropped 0016's index, which each question and settlement wrote a page of)
made every batch sort the whole backlog: 15 ms a batch at 100,000 overdue on PostgreSQL, against 0.2 ms."""
_OVERDUE_READ = Statement(_OVERDUE)
_OVERDUE_LOCKED = Statement(_OVERDUE + " FOR UPDATE SKIP LOCKED")
"""PostgreSQL, in a write transaction: another sweeper's rows, or a settlement's, are passed over, not waited on
(SQLite's write transaction holds the whole file: no other is in progress)."""
_VOID_YES = (
    "WITH yes AS MATERIALIZED (SELECT d.approval_ref, d.binding, a.name, a.status FROM desk_approvers a "
    "CROSS JOIN desk_decisions d WHERE d.approver = a.name AND d.decided_at > :since AND d.verdict = 'approved' "
    "AND (a.status <> 'active' OR EXISTS (SELECT 1 FROM desk_approver_principals q WHERE q.approver = a.name))) "
    "SELECT r.ref, r.idempotency_key FROM yes CROSS JOIN approvals r WHERE r.ref = yes.approval_ref "
    "AND r.status = 'pending' AND r.binding = yes.binding "
    "AND (yes.status <> 'active' OR " + LINKED.format(approver="yes.name", principal="r.principal") + ") LIMIT :limit"
)
"""Pending approvals whose desk yes is void (`DeskSignoff.void`, read alike): due at once, deadline or not. Read from
the approvers not active or linked to anyone (a handful), through their decisions signed since `:since`
(`desk_decisions_by_approver`; first, as SQLite's CROSS JOIN and PostgreSQL's statistics order them), then
approvals by primary key, so neither the pending approvals nor a revoked approver's history is read whole: one
probe of an empty index range on an idle sweep (0.04 ms at 100,000 pending on PostgreSQL), where testing each pending
row for a void yes made it 93 ms -> 633 ms. A yes older than `:since` (asked under a longer timeout than this
server's) is left to `_OVERDUE`, which finds it once its window has passed."""
_VOID_YES_READ = Statement(_VOID_YES)
_VOID_YES_LOCKED = Statement(_VOID_YES + " FOR UPDATE OF r SKIP LOCKED")
_MOVED_SINCE = Statement(
    "SELECT COALESCE(SUM(amount_minor), 0) FROM audit_log WHERE principal = :principal AND at >= :since "
    "AND amount_minor <> 0 AND (currency = :currency OR currency IS NULL)"
)
"""A record without a currency is from before migration 0011 (or moved nothing): counted in every currency.
`amount_minor <> 0` adds nothing to the sum; it lets the query read migration 0017's index (moving records only)."""
_WAITING = Statement(
    "SELECT COUNT(*) FROM approvals WHERE principal = :principal AND status = 'pending' AND expires_at > :now "
    "AND created_at <= :asked"
)
"""A principal's questions still open (migration 0014 indexes them): not `Approval.over`, its deadline ahead and
asked by `:asked` (`policy.store.asked_by`, on a clock not set back since)."""
_DECISION = "SELECT d.approval_ref, d.approver, d.verdict, d.note, d.decided_at, d.binding, d.question_sha256 "
DESK_DECISION = Statement(_DECISION + "FROM desk_decisions d WHERE d.approval_ref = :v")
"""The desk's decision on one approval: read here by the gate in a read, and on SQLite (whose write transaction
holds the whole file), and by the desk itself (`mcp_server.desk.decisions.decision_for`)."""
_DESK_DECISION_HELD = Statement(
    _DECISION + "FROM desk_decisions d JOIN desk_approvers a ON a.name = d.approver WHERE d.approval_ref = :v "
    "FOR SHARE OF a"
)
"""PostgreSQL, in a write transaction (prefetched with the approval's lock, `expect_approval`): the decision, its
approver's row held until the transaction ends. A revocation or a link (`desk.approvers.ApproverAdmin`, which
change or lock that row) made meanwhile waits for the settlement; one in progress is waited for, and `_STANDING`,
read after, sees it."""
_STANDING = Statement(
    "SELECT a.status, " + LINKED.format(approver="a.name", principal="r.principal") + " FROM desk_approvers a, "
    "approvals r WHERE a.name = :approver AND r.ref = :ref"
)
"""Whether a decision's approver is active, and linked to the principal that asked: a statement of its own,
after the approver's row is held, as a statement reads as of its start (`entitlements.locked_holdings`)."""
_SAVEPOINT = Statement("SAVEPOINT effect")
_ROLLBACK_TO_SAVEPOINT = Statement("ROLLBACK TO SAVEPOINT effect")
_RELEASE_SAVEPOINT = Statement("RELEASE SAVEPOINT effect")


class SqlGateStore:
    """`GateStore` on the ledger database; it alone decides where store work runs (see `run`)."""

    def __init__(self, db: Database, audit: AuditWriter | None = None) -> None:
        self.db = db
        self.audit = audit or AuditWriter()
        self.deadline: float | None = None if db.dialect == "sqlite" else NETWORK_DEADLINE
        """Seconds a call waits for a database server before it is answered `database_unavailable`."""
        self._lock_by_ref = Statement(_APPROVAL + "ref = :v" + db.for_update)
        self._lock_by_asked = Statement(_APPROVAL + "asked_digest = :v" + db.for_update)

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking store work (which opens transactions here) where it costs least.

        First on the event loop (a thread hop, and the GIL hand-offs of a thread's statements,
        cost more than the work): on SQLite in WAL mode a read never waits on another process and
        a write that finds no other writer waits only on the disk; on PostgreSQL the loop's own
        connection bounds every wait (`storage.loop_connection`). Work that would wait long for
        another writer rolls back instead (`_Busy`: 5 ms for this process's own writers on SQLite,
        10 ms for a lock on PostgreSQL), as does work on PostgreSQL while the loop's connection is
        not ready or that it did not answer within its bound before the COMMIT was sent. Then in a
        worker thread, where waiting is harmless, within `deadline` of the call's start on a database
        server: one that stops answering on an open connection would otherwise hold the call forever.
        Past the deadline the caller gets `database_unavailable`; the thread is left to finish or
        fail on its own, so the message claims nothing about what it did.
        """
        try:
            return await self._placed(work)
        except AccessDenied as denied:
            logger.warning("%s", denied.message)
            raise Refusal("database_unavailable", DENIED) from denied

    async def _placed(self, work: Callable[[], T]) -> T:
        began = time.monotonic()
        on_loop = _ON_LOOP.set(True)
        try:
            return work()
        except _Busy:
            # The one trace of a call waiting for another writer: SQLite shows no lock's waiters to anyone.
            logger.debug("ledger work would wait (another writer, or no loop connection): a worker thread runs it")
        finally:
            _ON_LOOP.reset(on_loop)
        if self.deadline is None:
            return await anyio.to_thread.run_sync(work)
        with anyio.move_on_after(began + self.deadline - time.monotonic()):
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        logger.warning("the store did not answer within %.1f s", self.deadline)
        raise Refusal("database_unavailable", LATE)

    def transaction(self, work: Callable[["SqlGateTx"], T], *, write: bool = True, durable: bool = True) -> T:
        try:
            return self._transaction(work, write, durable, ahead=True)
        except IntegrityError as clash:
            if getattr(getattr(clash.orig, "diag", None), "constraint_name", None) != _ONE_PENDING:
                raise
        # Another caller asked the same question between this one's look ahead and its COMMIT: run again, now
        # offering the approval first and reading theirs if it is pending (`create_approval`), which ends.
        return self._transaction(work, write, durable, ahead=False)

    def _transaction(self, work: Callable[["SqlGateTx"], T], write: bool, durable: bool, *, ahead: bool) -> T:
        def unit(conn: Connection) -> T:
            lock_by_asked = self._lock_by_asked if write else None
            tx = SqlGateTx(conn, self._lock_by_ref, self.audit, lock_by_asked, settles=durable, ahead=ahead)
            result = work(tx)
            if tx.discarded:
                raise _Discarded(result)
            tx.flush_audit()
            return result

        try:
            wait = not _ON_LOOP.get()
            if not write:
                return self.db.read(unit, wait=wait)
            return self.db.run(unit, wait=wait, durable=durable)
        except _Discarded as discarded:
            return discarded.result  # type: ignore[no-any-return]
        except WouldWait as busy:
            raise _Busy from busy


class _Busy(Exception):
    """Work tried on the event loop found another writer in the way, or (PostgreSQL) the loop's connection
    not ready; nothing was done."""


class _Discarded(Exception, Generic[T]):
    """Rolls back a transaction whose work called `discard`, carrying what the work returned."""

    def __init__(self, result: T) -> None:
        super().__init__()
        self.result = result


class SqlGateTx:
    """The gate's view of one open ledger transaction; its `ledger` handle is the connection actions write on."""

    def __init__(
        self,
        conn: Connection,
        lock_by_ref: Statement,
        audit: AuditWriter,
        lock_by_asked: Statement | None,
        *,
        settles: bool = True,
        ahead: bool = True,
    ) -> None:
        """`lock_by_asked` is given in a write transaction only: a read takes no locks. `settles`: false
        for a transaction that only opens a question (`durable=False`, see `policy.gate.Gate.open`). `ahead`:
        whether a shared approval's pending one may be read ahead (`expect_pending`). `ledger` and `settles` are
        plain attributes (the gate and every action read them, several times a call)."""
        self.conn = self.ledger = conn
        self.settles = settles and lock_by_asked is not None
        self._ahead = conn.dialect.name == "postgresql"
        """Whether reads announced by `expect_*` go ahead (`Statement.prefetch`: PostgreSQL only)."""
        self._pending_ahead = ahead and self._ahead
        self._lock_by_ref = lock_by_ref
        self._writer = audit
        self._by_asked = lock_by_asked or _BY_ASKED
        self._write = lock_by_asked is not None
        self._decision = _DESK_DECISION_HELD if self._write and self._ahead else DESK_DECISION
        self._audit: list[AuditEntry] = []
        self.discarded = False

    def discard(self) -> None:
        self.discarded = True

    def recall(self, key: str, request_digest: str) -> Mapping[str, Any] | None:
        # Every write transaction takes the key's turn, a question's too though it stores no outcome: without it, on
        # PostgreSQL, a settlement of the key committing between this read and that of the key's pending question
        # (each statement its own snapshot) left neither in sight, and a settled key was asked a new question.
        return idempotency.recall(self.conn, key, request_digest, hold=self._write)

    def remember(self, key: str, request_digest: str, outcome: Mapping[str, Any]) -> None:
        idempotency.remember(self.conn, key, request_digest, dict(outcome))

    def expect_asked(self, asked_digest: str) -> None:
        if self._ahead:
            self._by_asked.prefetch(self.conn, {"v": asked_digest})

    def expect_approval(self, ref: str) -> None:
        if self._ahead:  # the desk's decision is read after the approval's lock, which the desk takes to record one
            self._lock_by_ref.prefetch(self.conn, {"v": ref})
            self._decision.prefetch(self.conn, {"v": ref})

    def expect_pending(self, binding: str) -> None:
        if self._pending_ahead:
            _BY_PENDING_BINDING.prefetch(self.conn, {"v": binding})

    def approval_asked(self, asked_digest: str) -> Approval | None:
        return _approval(self._by_asked.one(self.conn, {"v": asked_digest}))

    def create_approval(self, approval: Approval, *, shared: bool) -> Approval:
        """An approval of its own meets no other (its reference is new; a clash would fail the transaction),
        so its insert is sent, not waited on. A shared one whose binding's pending approval was read ahead
        (`expect_pending`, PostgreSQL) is that one, or else sent too: if another caller's insert for the binding
        commits first, the COMMIT fails and `SqlGateStore.transaction` runs the work again without reading ahead.
        Otherwise it is inserted unless its binding's is pending, which is then read. The gate's transactions hold
        the key's turn (`recall`), so neither clash happens to them; were that pending one settled between the two
        statements (PostgreSQL), the binding would be free, and the insert is tried again."""
        pending = {"v": approval.binding}
        ahead = shared and _BY_PENDING_BINDING.arrived(self.conn, pending)
        if ahead:
            stored = _approval(_BY_PENDING_BINDING.one(self.conn, pending))
            if stored is not None:
                return stored
        row = {
            "ref": approval.ref,
            "binding": approval.binding,
            # An approval of its own is pending under its (unique) reference instead.
            "pending_binding": approval.binding if shared else approval.ref,
            "tool": approval.tool,
            "arguments": canonical_json(approval.arguments),
            "principal": approval.principal,
            "policy_version": approval.policy_version,
            "question": approval.question,
            "created_at": approval.created_at,
            "expires_at": approval.expires_at,
            "asked_digest": approval.asked_digest,
            "bound": canonical_json(dict(approval.bound)),
            "channel": approval.channel.value,
            "idempotency_key": approval.idempotency_key,
        }
        if shared and not ahead:
            while not _INSERT_SHARED_APPROVAL.run(self.conn, row):
                stored = _approval(_BY_PENDING_BINDING.one(self.conn, pending))  # asked before
                if stored is not None:
                    return stored
            return approval
        _INSERT_APPROVAL.send(self.conn, row)
        return approval

    def lock_approval(self, ref: str) -> Approval | None:
        return _approval(self._lock_by_ref.one(self.conn, {"v": ref}))

    def settle_approval(self, approval: Approval) -> None:
        check_settlement(approval.status)
        _SETTLE_APPROVAL.send(
            self.conn,
            {
                "status": approval.status,
                "now": datetime.now(UTC).timestamp(),
                "note": approval.note,
                "outcome": canonical_json(approval.outcome),
                "ref": approval.ref,
            },
        )

    def overdue(
        self, now: float, grace: float, limit: int, passed: Collection[str] = (), *, timeout: float
    ) -> list[str]:
        params = {"deadline": now - grace, "asked": asked_by(now), "limit": limit + len(passed)}  # passed: left out
        locking = self._write and self.conn.dialect.name == "postgresql"
        rows = (_OVERDUE_LOCKED if locking else _OVERDUE_READ).all(self.conn, params)
        found = [(str(ref), key) for ref, key in rows if ref not in passed][:limit]
        if len(found) < limit:
            seen = passed if not found else {*passed, *(ref for ref, _ in found)}
            void = (_VOID_YES_LOCKED if locking else _VOID_YES_READ).all(
                self.conn, {"since": now - grace - timeout, "limit": limit + len(seen)}
            )
            found += [(str(ref), key) for ref, key in void if ref not in seen][: limit - len(found)]
        if not self._write:
            return [ref for ref, _ in found]
        free = try_turns(self.conn, Space.IDEMPOTENCY_KEY, {key for _, key in found if key is not None})
        return [ref for ref, key in found if key is None or key in free]

    def desk_decision(self, ref: str) -> DeskSignoff | None:
        """The decision, and its approver's standing read after the decision's read holds their row (SQLite: the
        write transaction holds the whole file). The standing is a statement (on PostgreSQL, a round trip) only
        when there is a decision: a form's settlement sends nothing more."""
        return signoff(self.conn, self._decision, ref)

    def take_turn(self, principal: str) -> None:
        take_turn(self.conn, Space.PRINCIPAL, principal)

    def expect_waiting(self, principal: str, now: float) -> None:
        if self._ahead:
            _WAITING.prefetch(self.conn, _waiting_params(principal, now))

    def waiting(self, principal: str, now: float) -> int:
        row = _WAITING.one(self.conn, _waiting_params(principal, now))
        return int(row[0]) if row else 0

    def moved_today_minor(self, principal: str, since: float, currency: str) -> int:
        since_text = format_timestamp(datetime.fromtimestamp(since, UTC))
        row = _MOVED_SINCE.one(self.conn, {"principal": principal, "since": since_text, "currency": currency})
        return int(row[0]) if row else 0

    def append_audit(self, entry: AuditEntry) -> None:
        """Queue `entry`; the transaction's entries are signed and written together at its end."""
        self._audit.append(entry)

    def flush_audit(self) -> None:
        """Sign and insert the queued entries, unchained (see `AuditWriter.append`), if there are any."""
        if self._audit:
            self._writer.append(self.conn, self._audit)
            self._audit = []

    def savepoint(self) -> "_Savepoint":
        return _Savepoint(self.conn)


class _Savepoint:
    """On the driver cursor: SQLAlchemy's begin_nested() costs more than the transfer it guards.
    A class, not a generator: its machinery cost more calls than the statements.

    On SQLite an effect that succeeded releases it: while a savepoint is open, every page written for
    the first time since is copied to a sub-journal, which past 64 KiB spills to a temporary file, and
    the settlement's writes after the effect (approval, audit records) crossed that line: a file created,
    written and unlinked every settlement (some 60 µs). On PostgreSQL it is never released (the commit
    ends it; a later savepoint of the same name is the one rolled back to): a RELEASE would be one more
    statement in the settlement's round trip, saving nothing there."""

    __slots__ = ("_conn", "_release")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._release = conn.dialect.name == "sqlite"

    def __enter__(self) -> None:
        _SAVEPOINT.send(self._conn)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        if kind is None:
            if self._release:
                _RELEASE_SAVEPOINT.send(self._conn)
            return
        try:
            _ROLLBACK_TO_SAVEPOINT.send(self._conn)
        except DBAPIError:
            # SQLite rolls the whole transaction back on some errors (a full disk, an I/O error, an interrupt),
            # savepoint and all: the effect's own error, raised on, says what failed. Any other (a refusal)
            # would let the caller go on writing outside a transaction: this one ends it.
            if not isinstance(error, DBAPIError):
                raise


def _waiting_params(principal: str, now: float) -> dict[str, Any]:
    return {"principal": principal, "now": now, "asked": asked_by(now)}


def _approval(row: tuple[Any, ...] | None) -> Approval | None:
    if row is None:
        return None
    ref, binding, tool, arguments, principal, version, question, created, expires = row[:9]
    status, asked, note, outcome, bound, channel, key = row[9:]
    return Approval(
        ref=ref,
        binding=binding,
        tool=tool,
        arguments=stored_json.loads(arguments),
        principal=principal,
        policy_version=version,
        question=question,
        created_at=float(created),
        expires_at=float(expires),
        status=status,
        asked_digest=asked,
        note=note,
        outcome=stored_json.loads(outcome) if outcome else None,
        bound=stored_json.loads(bound) if bound else {},
        channel=Channel(channel) if channel else DEFAULT_CHANNEL,
        idempotency_key=key,
    )


def signoff(conn: Connection, decision: Statement, ref: str) -> DeskSignoff | None:
    """The desk's decision on approval `ref` read by `decision` (`DESK_DECISION`, or one holding its approver's
    row), with its approver's standing read after it: what the gate settles by, and the desk's pages show."""
    row = decision.one(conn, {"v": ref})
    if row is None:
        return None
    _, approver, verdict, note, decided_at, binding, question_sha256 = row
    standing = _STANDING.one(conn, {"approver": approver, "ref": ref})
    active, linked = (standing[0] == "active", bool(standing[1])) if standing is not None else (False, False)
    return DeskSignoff(
        ref, approver, verdict == "approved", note, float(decided_at), binding, question_sha256, active, linked
    )
