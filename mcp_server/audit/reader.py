"""Reading the audit chain back: verification against the keys and the ledger, checkpoints, a readable tail,
and the one-time adoption of a ledger's history from before signed audit (which verification alone can never accept)."""

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, text
from sqlalchemy.exc import DBAPIError

from mcp_server.audit.identity import LedgerIdentityError, read_identity
from mcp_server.audit.keys import key_file, load_keyring
from mcp_server.audit.postings import ADOPT_TOOL, Posted, claims, closing, is_adoption, moment, read_postings
from mcp_server.audit.sequencer import HEAD_COLUMNS, ChainRefused, Sequencer, stored_head
from mcp_server.ledger.entitlements import ADMIN_PRINCIPAL
from mcp_server.ledger.free_text import shown
from mcp_server.ledger.invariants import violations
from mcp_server.storage.database import Database
from mcp_server.storage.stored_int import Mistyped, stored_int
from mcp_server.timestamps import now_text
from policy.approval_states import ApprovalState, settled_states
from policy.audit import (
    CHAINED_FIELDS,
    GENESIS,
    Finding,
    Keyring,
    LedgerIdentity,
    SignedHead,
    check_checkpoint,
    is_legacy,
    verify_chain,
)
from policy.canonical import digest
from policy.store import CLOCK_TOLERANCE, AuditEntry

_COLUMNS = ", ".join(("rid", *CHAINED_FIELDS, "prev_hash", "hash", "key_id", "signature"))
_COUNTS = text("SELECT COUNT(seq), COUNT(*) - COUNT(seq) FROM audit_log")
"""How many records are chained, and how many wait for the sequencer."""
_LAST = text("SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC, rid DESC LIMIT 1")
"""The chain's last record, as the chain's order (`_Log.chained`) ends."""
VERIFY_PAGE = 1000
"""How many audit records verification holds at a time: it reads the log in pages of this many (`_Log`)."""
_ACCOUNTS = text("SELECT id, status, closed_at FROM accounts")
_INTEGER_COLUMNS = ("seq", "amount_minor")
"""The columns of a record verification reads as integers (its position, the amount it moved)."""
_MOVING_EVENTS = ("executed", "admin")
"""The records that may name a ledger transaction: the gate's executions and ledger administration."""
_SETTLING_EVENTS = frozenset(state.value for state in settled_states())
"""The records that settle an approval: one per approval, written with its settlement (`Settlement.end`)."""


class CheckpointError(ValueError):
    """A checkpoint that no known key signed: nothing can be concluded from it."""


class AdoptionRefused(ValueError):
    """The chain shows more than an old ledger's gaps: adopting would vouch for tampering."""


@dataclass(frozen=True)
class Verification:
    """What `verify` read and found: chained records, records signed and waiting for the sequencer, findings."""

    records: int
    pending: int
    findings: list[Finding]


def verify(
    db: Database,
    keys: Keyring | None = None,
    checkpoint: SignedHead | None = None,
    *,
    sequencer: Sequencer | None = None,
) -> Verification:
    """No findings means the chain is intact, every record and head signed by `keys` (default: the configured
    key file's), the chain holds `checkpoint`'s record, it accounts for every ledger transaction and every
    approval (each written in the same transaction as its record), and every balance is its journal's
    (`ledger.invariants`). With a `sequencer` (a holder of the key),
    records waiting to be chained are chained first and the ledger's identity sealed (`Sequencer.seal`); a
    refused chain is left to the findings to name. A statement the database refuses (a table or column changed
    behind the server's back), or a stored value of another type than its column's, is a finding too, naming its
    error."""
    refused: list[Finding] = []
    if sequencer is not None:
        try:
            sequencer.seal()  # chains what waits; a ledger just migrated by this command gets its id under a head
        except DBAPIError as exc:
            refused.append(database_finding("chaining the waiting records", exc))
        except ValueError as exc:
            refused.append(mistyped_finding("chaining the waiting records", exc))
    try:
        state, findings = _verified(db, keys, checkpoint)
    except DBAPIError as exc:
        return Verification(0, 0, [*refused, database_finding("reading the audit log", exc)])
    except CheckpointError:
        raise
    except LedgerIdentityError as exc:
        return Verification(0, 0, [*refused, Finding(None, str(exc))])
    except ValueError as exc:
        return Verification(0, 0, [*refused, mistyped_finding("reading the audit log", exc)])
    return Verification(state.records, state.pending, refused + findings)


def database_finding(doing: str, exc: DBAPIError) -> Finding:
    """A statement the database refused while verifying, as a finding: the driver's error class and its first
    line (never the statement's parameters, nor the database's address)."""
    error = exc.orig if exc.orig is not None else exc
    first = next(iter(str(error).splitlines()), "").strip()
    return Finding(None, f"{doing} failed in the database: {type(error).__name__}: {first} (was the schema changed?)")


def mistyped_finding(doing: str, exc: ValueError) -> Finding:
    """A stored value that is not of its column's type (`int()` refused it), as a finding: SQLite keeps whatever a
    database writer gives it, where PostgreSQL refuses it, so only an edit behind the server's back puts it there."""
    return Finding(None, f"{doing} failed: a stored value is not of its column's type ({exc}): edited")


def checkpoint(db: Database, sequencer: Sequencer) -> SignedHead:
    """A signed statement of the current head, to keep outside the database. Made only of a chain
    that verifies (else ValueError, naming the first finding), so a checkpoint never vouches for tampered records."""
    try:
        with contextlib.suppress(ChainRefused):
            sequencer.chain()
        read, findings = _verified(db, sequencer.keys, None)
    except Mistyped as exc:
        raise _unverified(mistyped_finding("reading the audit log", exc)) from None
    if findings:
        raise _unverified(findings[0])
    seq, head_hash = read.last
    return sequencer.writer.signer.sign_head(seq, head_hash, now_text(), read.ledger)


def _unverified(finding: Finding) -> ValueError:
    return ValueError(f"the audit chain does not verify ({finding}); run `audit verify` for every finding")


@dataclass(frozen=True)
class Adoption:
    """What one `audit adopt` vouched for, in its signed record `seq`."""

    seq: int
    transactions: list[tuple[str, Posted]]
    unsigned_through: int


def adopt(db: Database, sequencer: Sequencer) -> Adoption | None:
    """Vouch, in one signed `admin` record, for the gaps a ledger from before signed audit has: its
    transactions with no record (old deposits, the demo funding) and its unsigned records. None when
    there is nothing to adopt. Refused (AdoptionRefused, naming every finding) when verification finds
    anything else, so adopting never covers tampering; after one adoption, a transaction without a
    record is never legacy again. Runs in one write transaction holding the sequencer's lock and (on
    PostgreSQL) keeping writers' records out until it commits, so nothing lands between what was
    verified and the record that vouches for it; the record is chained and signed before it returns."""

    def work(conn: Connection) -> Adoption | None:
        sequencer.lock(conn)
        if conn.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE audit_log IN SHARE MODE"))
        try:
            state = _read_state(conn)
            findings = _findings(state, sequencer.keys, None)
        except Mistyped as exc:
            raise AdoptionRefused(f"refusing to adopt: {mistyped_finding('reading the audit log', exc)}") from None
        tampered = [finding for finding in findings if not finding.legacy]
        if tampered:
            named = "\n  ".join(str(finding) for finding in tampered)
            raise AdoptionRefused(
                f"refusing to adopt: the audit chain shows more than an old ledger's gaps:\n  {named}"
            )
        if not findings:
            return None
        claimed = {
            claim.transaction
            for record in state.log.records()
            if record["event"] in _MOVING_EVENTS
            for claim in claims(record)
        }
        unclaimed = [(tx, posted) for tx, posted in sorted(state.posted.items()) if tx not in claimed]
        unsigned_through = max((record["seq"] for record in state.log.chained() if is_legacy(record)), default=0)
        if state.heads:
            unsigned_through = max(0, min(unsigned_through, state.heads[0].seq - 1))  # a head at 0: a new ledger's
        adopted = [
            {"transaction_id": tx, "kind": p.kind, "amount_minor": p.amount_minor, **p.parties()} for tx, p in unclaimed
        ]
        entry = AuditEntry(
            at=time.time(),
            event="admin",
            principal=ADMIN_PRINCIPAL,
            tool=ADOPT_TOOL,
            arguments={"transactions": len(adopted), "unsigned_through": unsigned_through},
            policy_version="",
            reason="adopts the ledger's history from before signed audit (postings without records, unsigned records)",
            result={"status": "executed", "details": {"adopted": adopted, "unsigned_through": unsigned_through}},
        )
        (rid,) = sequencer.writer.append(conn, [entry])
        batch = sequencer.chain_in(conn)
        assert batch is not None and rid in batch.positions, "the adoption record is signed with a known key"
        return Adoption(batch.positions[rid], unclaimed, unsigned_through)

    return db.run(work)


@dataclass(frozen=True)
class _Read:
    """What verification read besides its findings: how many records are chained and waiting, the chain's last
    (seq, hash), and the ledger's identity."""

    records: int
    pending: int
    last: tuple[int, str]
    ledger: LedgerIdentity


def _verified(db: Database, keys: Keyring | None, checkpoint: SignedHead | None) -> tuple[_Read, list[Finding]]:
    keys = keys if keys is not None else load_keyring(key_file())
    if checkpoint is not None and not keys.verify_head(checkpoint):
        raise CheckpointError(  # the key id is the file's, unproven: shown escaped, never as terminal control
            f"the checkpoint is not signed by a known audit key (its key id: {shown(checkpoint.key_id)})"
        )

    ring = keys

    def read(conn: Connection) -> tuple[_Read, list[Finding]]:
        state = _read_state(conn)
        if checkpoint is not None and checkpoint.ledger not in (None, state.ledger.id):
            raise CheckpointError(  # signed, but the ledger it names is the file's: shown escaped
                f"the checkpoint is of another ledger ({shown(checkpoint.ledger)}), not this one ({state.ledger.id})"
            )
        findings = _findings(state, ring, checkpoint)
        chained, waiting = conn.execute(_COUNTS).one()
        last = conn.execute(_LAST).first()
        return _Read(chained, waiting, (last[0], str(last[1])) if last else (0, GENESIS), state.ledger), findings

    return db.read(read, snapshot=True)  # a transfer committing meanwhile is seen whole or not


@dataclass(frozen=True)
class _Log:
    """The audit log as verification reads it: the chained records in sequence order, then the waiting ones by rid,
    `page` rows at a time (`_paged`). Each check reads it through once, keeping only what it compares (ids, names,
    digests), so no check holds the log whole, however long it grows."""

    conn: Connection
    page: int

    def chained(self) -> Iterator[dict[str, Any]]:
        return _paged(self.conn, "seq IS NOT NULL", "seq", "seq, rid", self.page)

    def pending(self) -> Iterator[dict[str, Any]]:
        return _paged(self.conn, "seq IS NULL", "rid", "rid", self.page)

    def records(self) -> Iterator[dict[str, Any]]:
        yield from self.chained()
        yield from self.pending()


def _paged(conn: Connection, where: str, key: str, order: str, page: int) -> Iterator[dict[str, Any]]:
    """The `audit_log` rows `where` selects, in `order` (led by `key`), `page` at a time. Each page starts at the last
    key read (`>=`, past the rows holding it already read, not `>`): a key edited into duplicates (its UNIQUE
    dropped) hides no row. NULL keys (a rid on SQLite, which sorts them first) are read first, as one run."""
    after: object = None
    seen = 0
    while True:
        bound = "" if after is None else f" AND {key} >= :after"
        query = f"SELECT {_COLUMNS} FROM audit_log WHERE {where}{bound} ORDER BY {order} LIMIT :limit OFFSET :seen"
        rows = [
            _record(row) for row in conn.execute(text(query), {"after": after, "limit": page, "seen": seen}).mappings()
        ]
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1][key]
        same = next((n for n, row in enumerate(reversed(rows)) if row[key] != last), len(rows))
        seen, after = (seen if last == after else 0) + same, last


@dataclass(frozen=True)
class _State:
    """What verification reads: the audit log (a page at a time), its signed heads, the ledger's transactions, the
    approvals, and what the books violate."""

    ledger: LedgerIdentity
    log: _Log
    heads: list[SignedHead]
    posted: dict[str, Posted]
    asked: list["Asked"]
    books: list[str]
    """The ledger's violated invariants (`ledger.invariants`): balances the journal does not account for."""
    accounts: dict[str, tuple[str, str | None]]
    """Every account's status and `closed_at`, as stored: a closing's record holds its account to them."""


@dataclass(frozen=True)
class Asked:
    """An approval row as verification compares it with its records (the question as its SHA-256)."""

    ref: str
    status: str
    tool: str
    principal: str
    arguments_json: str
    question_sha256: str


def _read_state(conn: Connection) -> _State:
    ledger = read_identity(conn)
    heads = [
        stored_head(row, ledger) for row in conn.execute(text(f"SELECT {HEAD_COLUMNS} FROM audit_heads ORDER BY seq"))
    ]
    posted = read_postings(conn)
    approvals = "SELECT ref, status, tool, principal, arguments_json, question FROM approvals ORDER BY created_at, ref"
    asked = [
        Asked(str(ref), str(status), str(tool), str(principal), str(arguments), digest(question))
        for ref, status, tool, principal, arguments, question in conn.execute(text(approvals))
    ]
    accounts = {str(id_): (str(status), closed) for id_, status, closed in conn.execute(_ACCOUNTS)}
    return _State(ledger, _Log(conn, VERIFY_PAGE), heads, posted, asked, violations(conn), accounts)


def _record(row: RowMapping) -> dict[str, Any]:
    """An `audit_log` row, its integer columns checked (`stored_int`): what verification reads as numbers."""
    record = dict(row)
    for column in _INTEGER_COLUMNS:
        if record[column] is not None:
            stored_int(record[column], "audit_log", ("rid", record["rid"]), column)
    return record


def _findings(state: _State, keys: Keyring, checkpoint: SignedHead | None) -> list[Finding]:
    log = state.log
    findings = verify_chain(log.chained(), keys, state.ledger, state.heads, log.pending())
    if any(record["event"] == "admin" for record in log.records()):
        # Only versions that sign write `admin` records: an unsigned chain holding one was stripped, not old.
        findings = [replace(finding, legacy=False) for finding in findings]
    if checkpoint is not None:
        findings += check_checkpoint(log.chained(), checkpoint)
    findings += cross_check(log.records(), state.posted, state.accounts, state.heads)
    findings += [Finding(None, f"the books: {problem} (edited)") for problem in state.books]
    return findings + approval_findings(log.records(), state.asked)


@dataclass
class _Asking:
    """What an approval's records say, as `approval_findings` compares it with the approval's row: its first
    `requested` record's name and what it asked (the arguments as their digest), and each settling record's name and
    event. Kept in place of the records, which verification reads a page at a time."""

    requested: tuple[str, dict[str, object]] | None = None
    settling: list[tuple[str, str]] = field(default_factory=list)


def _asked_columns(
    tool: object, principal: object, arguments_json: object, question_sha256: object
) -> dict[str, object]:
    """The columns a `requested` record and its approval's row must agree on, the arguments as a digest of their
    stored value (its type too: SQLite may hold a number or bytes an edit put there)."""
    arguments = hashlib.sha256(repr(arguments_json).encode()).hexdigest()
    return {"tool": tool, "principal": principal, "arguments_json": arguments, "question_sha256": question_sha256}


def approval_findings(records: Iterable[Mapping[str, Any]], asked: Sequence[Asked]) -> list[Finding]:
    """Each approval row against its signed records: asked by one `requested` record naming the same tool,
    caller, arguments and question, and settled by at most one record, whose event is the row's status
    (none while it is pending). A row reset to pending (to run it again), its status rewritten, or what it
    asked edited, is named; so is a settling record deleted while unchained (before the chain covers it)."""
    by_ref: dict[str, _Asking] = {}
    for record in records:
        if record["approval_ref"] is None:
            continue
        asking = by_ref.setdefault(str(record["approval_ref"]), _Asking())
        if record["event"] == "requested" and asking.requested is None:
            said = _asked_columns(
                record["tool"], record["principal"], record["arguments_json"], record["question_sha256"]
            )
            asking.requested = (_name(record), said)
        elif record["event"] in _SETTLING_EVENTS:
            asking.settling.append((_name(record), str(record["event"])))
    findings: list[Finding] = []
    for approval in asked:
        ref, mine = approval.ref, by_ref.get(approval.ref, _Asking())
        if mine.requested is None:
            findings.append(Finding(None, f"approval {ref} has no 'requested' record (deleted)"))
        else:
            name, said = mine.requested
            stored = _asked_columns(
                approval.tool, approval.principal, approval.arguments_json, approval.question_sha256
            )
            for column, value in stored.items():
                if said[column] != value:
                    what = column.removesuffix("_json").removesuffix("_sha256")
                    findings.append(Finding(None, f"approval {ref}: its {what} differs from its 'requested' "
                                            f"{name} (edited)"))  # fmt: skip
        settling = mine.settling
        if len(settling) > 1:
            named = ", ".join(f"{settler} ({event})" for settler, event in settling)
            findings.append(Finding(None, f"approval {ref} was settled {len(settling)} times: {named} (its row was "
                                    "reset behind the server's back)"))  # fmt: skip
        elif settling and approval.status == ApprovalState.PENDING:
            (settler, event), *_ = settling
            findings.append(Finding(None, f"approval {ref} is pending, but {settler} settled it as {event} "
                                    "(edited)"))  # fmt: skip
        elif settling and settling[0][1] != approval.status:
            (settler, event), *_ = settling
            findings.append(Finding(None, f"approval {ref} is stored as {approval.status}, but {settler} settled it "
                                    f"as {event} (edited)"))  # fmt: skip
        elif not settling and approval.status != ApprovalState.PENDING:
            findings.append(Finding(None, f"approval {ref} is stored as {approval.status}, but no record settles it "
                                    "(deleted)"))  # fmt: skip
    return findings


def cross_check(
    records: Iterable[Mapping[str, Any]],
    posted: Mapping[str, Posted],
    accounts: Mapping[str, tuple[str, str | None]],
    heads: Sequence[SignedHead] = (),
) -> list[Finding]:
    """Every ledger transaction is named by exactly one executed or admin record that moved the same
    amount (in the same currency, where the record states one), and every such record that moved money
    names a transaction the ledger holds (chained and unchained records alike: each commits with its money).
    A record stating the idempotency key its call ran under (migration 0021) names a transaction holding that key,
    and no other such record ran under it: a key run twice means its stored outcome and the transaction's key
    (both the database's, both what stops a retry) were edited away. `records` is read once (a page at a time, by
    `verify`): what is kept is each claimed transaction's claimant, and each key's. An executed closing's account
    must still be closed (`accounts`: each one's status and `closed_at`) when its receipt says: a row set open again
    takes money again, and a closing may move none for the other checks to miss; and no record moves money on a
    closed account later than it closed (`_after_closing`)."""
    findings: list[Finding] = []
    claimed: dict[str, str] = {}
    keyed: dict[str, str] = {}
    # A posting without a record may be an old ledger's only if dated before the first signature (a version
    # that signs records every posting) and nothing was adopted yet; otherwise it can only be a forgery.
    signed_from = min((head.at for head in heads), default=None)
    adopted = False
    for record in records:
        if not is_legacy(record):
            at = str(record["at"])
            signed_from = at if signed_from is None else min(signed_from, at)
        adopted = adopted or is_adoption(record)
        if record["event"] not in _MOVING_EVENTS:
            continue
        closed = closing(record)
        if closed is not None:
            findings += _reopened(record, *closed, accounts)
        for claim in claims(record):
            tx, amount = claim.transaction, claim.amount_minor
            if tx is None:
                if amount:
                    findings.append(_finding(record, f"{record['event']} {record['tool']} moved money but names no "
                                             "ledger transaction"))  # fmt: skip
                continue
            if tx in claimed:
                findings.append(_finding(record, f"names ledger transaction {tx}, already named by {claimed[tx]}"))
                continue
            claimed[tx] = _name(record)
            key = record["idempotency_key"]
            if key is not None and key in keyed:
                findings.append(_finding(record, f"runs idempotency key {key} again, after {keyed[key]} (the key's "
                                         "stored outcome deleted and its transaction's key cleared)"))  # fmt: skip
            elif key is not None:
                keyed[key] = _name(record)
            if not is_adoption(record):  # dated when it vouched, not when what it adopted was posted
                findings += _after_closing(record, claim.parties, accounts)
            ledger = posted.get(tx)
            if ledger is None:
                findings.append(_finding(record, f"{record['event']} {record['tool']} names ledger transaction "
                                         f"{tx}, which the ledger does not hold (deleted)"))  # fmt: skip
            elif ledger.amount_minor != amount:
                findings.append(_finding(record, f"moved {amount} minor units but ledger transaction {tx} moves "
                                         f"{ledger.amount_minor} (edited)"))  # fmt: skip
            elif record["currency"] is not None and record["currency"] != ledger.currency:
                findings.append(_finding(record, f"moved {record['currency']} but ledger transaction {tx} moves "
                                         f"{ledger.currency} (edited)"))  # fmt: skip
            elif claim.parties is not None and claim.legs() != ledger.legs:
                debit, credit = claim.parties
                findings.append(_finding(record, f"moved {amount} minor units from {debit} to {credit}, but ledger "
                                         f"transaction {tx} posts {ledger.describe_legs()} (edited)"))  # fmt: skip
            elif key is not None and ledger.idempotency_key != key:
                holds = "none" if ledger.idempotency_key is None else f"key {ledger.idempotency_key}"
                findings.append(_finding(record, f"ran under idempotency key {key}, but ledger transaction {tx} "
                                         f"holds {holds} (edited)"))  # fmt: skip
    for tx, ledger in sorted(posted.items()):
        if tx not in claimed:
            legacy = not adopted and (signed_from is None or ledger.created_at < signed_from)
            findings.append(Finding(None, f"ledger transaction {tx} ({ledger.describe()}) has no audit record "
                                    "(posted outside the gate)", legacy))  # fmt: skip
    return findings


def _reopened(
    record: Mapping[str, Any], account: str, at: str, accounts: Mapping[str, tuple[str, str | None]]
) -> list[Finding]:
    """A finding when `account`, closed at `at` by `record`, is no longer stored so (reopened, or its time edited)."""
    if account not in accounts:
        return [_finding(record, f"closed account {account} at {at}, which the ledger does not hold (deleted)")]
    status, closed_at = accounts[account]
    if status == "closed" and moment(closed_at) == moment(at):
        return []
    held = f"closed at {closed_at}" if status == "closed" else status
    return [_finding(record, f"closed account {account} at {at}, but the ledger holds it {held} (edited)")]


def _after_closing(
    record: Mapping[str, Any], parties: tuple[str, str] | None, accounts: Mapping[str, tuple[str, str | None]]
) -> list[Finding]:
    """A finding for each closed account `record` moved money on later than it closed: set open behind the server's
    back, used, and closed again at its old time (which its closing's record then finds as signed). Every movement
    before a closing locked the account before it (so posted before `closed_at`), on a clock within
    `CLOCK_TOLERANCE` of the closing's; a record is dated before its posting."""
    found: list[Finding] = []
    at = moment(record["at"])
    for account in parties or ():
        status, closed_at = accounts.get(account, ("", None))
        closed = moment(closed_at) if status == "closed" else None
        if at is not None and closed is not None and at > closed + timedelta(seconds=CLOCK_TOLERANCE):
            found.append(_finding(record, f"moved money on account {account} at {record['at']}, after it closed at "
                                  f"{closed_at} (set open in the database, and closed again)"))  # fmt: skip
    return found


def _name(record: Mapping[str, Any]) -> str:
    return f"record {record['seq']}" if record["seq"] is not None else f"unchained record {record['rid']}"


def _finding(record: Mapping[str, Any], problem: str) -> Finding:
    """A finding about `record`: by its position, or by its rid while it has none."""
    if record["seq"] is not None:
        return Finding(int(record["seq"]), problem)
    return Finding(None, f"{_name(record)}: {problem}")


@dataclass(frozen=True)
class AuditLine:
    seq: int | None
    at: str
    event: str
    principal: str
    tool: str
    arguments: Any
    """The call's arguments: a JSON object, or whatever else the column holds (edited), as `parsed_or_stored`."""
    approval_ref: str | None
    policy_version: str
    reason: str
    note: str | None

    def render(self) -> str:
        """The record for a terminal: every recorded text escaped (`free_text.shown`), so a note or reason an answer
        wrote (the client chooses both: an approver's note, the names of unexpected fields) cannot move the cursor,
        erase lines or start a line that passes for another record."""
        parts = [
            f"#{shown(str(self.seq))}" if self.seq is not None else "#(unchained)",  # text, if edited in SQLite
            shown(self.at[:19].replace("T", " ")) + " UTC",  # the zone stated: read alone, a time passes for local
            f"{shown(self.event):<9}",
            shown(self.principal),
            shown_call(self.tool, self.arguments),
        ]
        if self.approval_ref:
            parts.append(shown(self.approval_ref))
        line = "  ".join(parts)
        if self.reason:
            line += f"\n      {shown(self.reason)}"
        if self.note:
            line += f"\n      note: {shown(self.note)}"
        return line


def shown_call(tool: str, arguments: object) -> str:
    """`tool(name="value", ...)` for a terminal, each name and value escaped (`free_text.shown`), absent ones
    left out; arguments that are not an object (a column edited, `parsed_or_stored`) as they are stored."""
    if not isinstance(arguments, Mapping):
        return f"{shown(tool)}({shown(str(arguments))})"
    args = ", ".join(f"{shown(k)}={shown(_quoted(v))}" for k, v in arguments.items() if v is not None)
    return f"{shown(tool)}({args})"


def parsed_or_stored(stored: str) -> Any:
    """A JSON column as its value, or as the stored text when it is no longer JSON (edited)."""
    try:
        return json.loads(stored)
    except (ValueError, RecursionError):
        return stored


def _quoted(value: object) -> str:
    """An argument as one JSON value: a memo (the requester's text) printed bare could read as more arguments
    ("rent, to_account=ACC-9") or close the call and name another approval."""
    return json.dumps(value, ensure_ascii=False, default=str)


def tail(db: Database, limit: int = 20) -> list[AuditLine]:
    query = text(
        "SELECT seq, at, event, principal, tool, arguments_json, approval_ref, policy_version, reason, note "
        "FROM audit_log ORDER BY seq IS NULL DESC, seq DESC, rid DESC LIMIT :limit"
    )
    rows = db.read(lambda conn: conn.execute(query, {"limit": limit}).all())
    return [
        AuditLine(
            r.seq,
            r.at,
            r.event,
            r.principal,
            r.tool,
            parsed_or_stored(r.arguments_json),
            r.approval_ref,
            r.policy_version,
            r.reason,
            r.note,
        )
        for r in reversed(rows)
    ]
