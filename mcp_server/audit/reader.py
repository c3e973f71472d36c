"""Reading the audit chain back: verification against the keys and the ledger, checkpoints, a readable tail,
and the one-time adoption of a ledger's history from before signed audit (which verification alone can never accept)."""

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from mcp_server.audit.identity import LedgerIdentityError, read_identity
from mcp_server.audit.keys import key_file, load_keyring
from mcp_server.audit.postings import ADOPT_TOOL, Posted, claims, is_adoption, read_postings
from mcp_server.audit.sequencer import HEAD_COLUMNS, ChainRefused, Sequencer, stored_head
from mcp_server.ledger.entitlements import ADMIN_PRINCIPAL
from mcp_server.ledger.free_text import shown
from mcp_server.storage.database import Database
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
from policy.store import AuditEntry

_COLUMNS = ", ".join(("rid", *CHAINED_FIELDS, "prev_hash", "hash", "key_id", "signature"))
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
    key file's), the chain holds `checkpoint`'s record, and it accounts for every ledger transaction and every
    approval (each written in the same transaction as its record). With a `sequencer` (a holder of the key),
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
    return Verification(len(state.records), len(state.pending), refused + findings)


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
    that verifies (else ValueError), so a checkpoint never vouches for tampered records."""
    with contextlib.suppress(ChainRefused):
        sequencer.chain()
    state, findings = _verified(db, sequencer.keys, None)
    if findings:
        raise ValueError(f"the audit chain does not verify ({findings[0]}); run `audit verify` for every finding")
    records = state.records
    seq, head_hash = (int(records[-1]["seq"]), str(records[-1]["hash"])) if records else (0, GENESIS)
    return sequencer.writer.signer.sign_head(seq, head_hash, now_text(), state.ledger)


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
        state = _read_state(conn)
        findings = _findings(state, sequencer.keys, None)
        tampered = [finding for finding in findings if not finding.legacy]
        if tampered:
            named = "\n  ".join(str(finding) for finding in tampered)
            raise AdoptionRefused(
                f"refusing to adopt: the audit chain shows more than an old ledger's gaps:\n  {named}"
            )
        if not findings:
            return None
        records = [*state.records, *state.pending]
        claimed = {
            claim.transaction for record in records if record["event"] in _MOVING_EVENTS for claim in claims(record)
        }
        unclaimed = [(tx, posted) for tx, posted in sorted(state.posted.items()) if tx not in claimed]
        legacy = [int(record["seq"]) for record in state.records if is_legacy(record)]
        unsigned_through = max(legacy, default=0)
        if state.heads:
            unsigned_through = max(0, min(unsigned_through, state.heads[0].seq - 1))  # a head at 0: a new ledger's
        adopted = [{"transaction_id": tx, "kind": p.kind, "amount_minor": p.amount_minor} for tx, p in unclaimed]
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


def _verified(db: Database, keys: Keyring | None, checkpoint: SignedHead | None) -> tuple["_State", list[Finding]]:
    keys = keys if keys is not None else load_keyring(key_file())
    if checkpoint is not None and not keys.verify_head(checkpoint):
        raise CheckpointError(  # the key id is the file's, unproven: shown escaped, never as terminal control
            f"the checkpoint is not signed by a known audit key (its key id: {shown(checkpoint.key_id)})"
        )

    state = db.read(_read_state, snapshot=True)  # a transfer committing meanwhile is seen whole or not
    if checkpoint is not None and checkpoint.ledger not in (None, state.ledger.id):
        raise CheckpointError(  # signed, but the ledger it names is the file's: shown escaped
            f"the checkpoint is of another ledger ({shown(checkpoint.ledger)}), not this one ({state.ledger.id})"
        )
    return state, _findings(state, keys, checkpoint)


@dataclass(frozen=True)
class _State:
    """What verification reads: the chain, the records waiting for it, its signed heads, the ledger's
    transactions and the approvals."""

    ledger: LedgerIdentity
    records: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    heads: list[SignedHead]
    posted: dict[str, Posted]
    asked: list["Asked"]


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
    rows = [dict(row) for row in conn.execute(text(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq, rid")).mappings()]
    heads = [
        stored_head(row, ledger) for row in conn.execute(text(f"SELECT {HEAD_COLUMNS} FROM audit_heads ORDER BY seq"))
    ]
    posted = read_postings(conn)
    approvals = "SELECT ref, status, tool, principal, arguments_json, question FROM approvals ORDER BY created_at, ref"
    asked = [
        Asked(str(ref), str(status), str(tool), str(principal), str(arguments), digest(question))
        for ref, status, tool, principal, arguments, question in conn.execute(text(approvals))
    ]
    chained = [row for row in rows if row["seq"] is not None]
    pending = [row for row in rows if row["seq"] is None]
    return _State(ledger, chained, pending, heads, posted, asked)


def _findings(state: _State, keys: Keyring, checkpoint: SignedHead | None) -> list[Finding]:
    findings = verify_chain(state.records, keys, state.ledger, state.heads, state.pending)
    records = [*state.records, *state.pending]
    if any(record["event"] == "admin" for record in records):
        # Only versions that sign write `admin` records: an unsigned chain holding one was stripped, not old.
        findings = [replace(finding, legacy=False) for finding in findings]
    if checkpoint is not None:
        findings += check_checkpoint(state.records, checkpoint)
    findings += cross_check(records, state.posted, state.heads)
    return findings + approval_findings(records, state.asked)


def approval_findings(records: Sequence[Mapping[str, Any]], asked: Sequence[Asked]) -> list[Finding]:
    """Each approval row against its signed records: asked by one `requested` record naming the same tool,
    caller, arguments and question, and settled by at most one record, whose event is the row's status
    (none while it is pending). A row reset to pending (to run it again), its status rewritten, or what it
    asked edited, is named; so is a settling record deleted while unchained (before the chain covers it)."""
    by_ref: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        if record["approval_ref"] is not None:
            by_ref.setdefault(str(record["approval_ref"]), []).append(record)
    findings: list[Finding] = []
    for approval in asked:
        ref, mine = approval.ref, by_ref.get(approval.ref, [])
        requested = next((record for record in mine if record["event"] == "requested"), None)
        if requested is None:
            findings.append(Finding(None, f"approval {ref} has no 'requested' record (deleted)"))
        else:
            stored = {
                "tool": approval.tool,
                "principal": approval.principal,
                "arguments_json": approval.arguments_json,
                "question_sha256": approval.question_sha256,
            }
            for column, value in stored.items():
                if requested[column] != value:
                    what = column.removesuffix("_json").removesuffix("_sha256")
                    findings.append(Finding(None, f"approval {ref}: its {what} differs from its 'requested' "
                                            f"{_name(requested)} (edited)"))  # fmt: skip
        settling = [record for record in mine if record["event"] in _SETTLING_EVENTS]
        if len(settling) > 1:
            named = ", ".join(f"{_name(record)} ({record['event']})" for record in settling)
            findings.append(Finding(None, f"approval {ref} was settled {len(settling)} times: {named} (its row was "
                                    "reset behind the server's back)"))  # fmt: skip
        elif settling and approval.status == ApprovalState.PENDING:
            findings.append(Finding(None, f"approval {ref} is pending, but {_name(settling[0])} settled it as "
                                    f"{settling[0]['event']} (edited)"))  # fmt: skip
        elif settling and settling[0]["event"] != approval.status:
            findings.append(Finding(None, f"approval {ref} is stored as {approval.status}, but "
                                    f"{_name(settling[0])} settled it as {settling[0]['event']} (edited)"))  # fmt: skip
        elif not settling and approval.status != ApprovalState.PENDING:
            findings.append(Finding(None, f"approval {ref} is stored as {approval.status}, but no record settles it "
                                    "(deleted)"))  # fmt: skip
    return findings


def cross_check(
    records: Sequence[Mapping[str, Any]], posted: Mapping[str, Posted], heads: Sequence[SignedHead] = ()
) -> list[Finding]:
    """Every ledger transaction is named by exactly one executed or admin record that moved the same
    amount (in the same currency, where the record states one), and every such record that moved money
    names a transaction the ledger holds (chained and unchained records alike: each commits with its money)."""
    findings: list[Finding] = []
    claimed: dict[str, str] = {}
    for record in records:
        if record["event"] not in _MOVING_EVENTS:
            continue
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
    # A posting without a record may be an old ledger's only if dated before the first signature (a version
    # that signs records every posting) and nothing was adopted yet; otherwise it can only be a forgery.
    signed = [str(r["at"]) for r in records if not is_legacy(r)] + [head.at for head in heads]
    signed_from = min(signed, default=None)
    adopted = any(is_adoption(record) for record in records)
    for tx, ledger in sorted(posted.items()):
        if tx not in claimed:
            legacy = not adopted and (signed_from is None or ledger.created_at < signed_from)
            findings.append(Finding(None, f"ledger transaction {tx} ({ledger.describe()}) has no audit record "
                                    "(posted outside the gate)", legacy))  # fmt: skip
    return findings


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
    arguments: dict[str, Any]
    approval_ref: str | None
    policy_version: str
    reason: str
    note: str | None

    def render(self) -> str:
        """The record for a terminal: every recorded text escaped (`free_text.shown`), so a note or reason an answer
        wrote (the client chooses both: an approver's note, the names of unexpected fields) cannot move the cursor,
        erase lines or start a line that passes for another record."""
        parts = [
            f"#{self.seq}" if self.seq is not None else "#(unchained)",
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


def shown_call(tool: str, arguments: Mapping[str, Any]) -> str:
    """`tool(name="value", ...)` for a terminal, each name and value escaped (`free_text.shown`), absent ones
    left out."""
    args = ", ".join(f"{shown(k)}={shown(_quoted(v))}" for k, v in arguments.items() if v is not None)
    return f"{shown(tool)}({args})"


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
            json.loads(r.arguments_json),
            r.approval_ref,
            r.policy_version,
            r.reason,
            r.note,
        )
        for r in reversed(rows)
    ]
