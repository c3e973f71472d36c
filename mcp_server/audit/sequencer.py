"""The sequencer: chains committed audit records in batches and signs each head it leaves.

Writers insert signed, unchained records (`audit.writer`) and never wait for one another on
the audit. One sequencer at a time, under a lock no writer takes (a PostgreSQL advisory lock;
on SQLite the write lock every write transaction holds), chains them, in the manner of a
Certificate Transparency log:

1. it extends the chain only from a state a key holder left: the last row of `audit_heads`
   must carry a valid signature and name the chain's last record with its hash (or, on a
   ledger from before signed audit, there is no head and every chained record is legacy);
   anything else is refused (`ChainRefused`), so the sequencer never signs over a tampered tail;
2. it reads unchained records (oldest `rid` first), checks each record's own signature and
   leaves any that fails unchained (so `audit verify` names it), and so any whose `rid` more
   than one row holds (a signed record copied, its key on `rid` dropped: chained, a record would
   stand in the chain twice, or two rows would take one position and stall every batch); it gives
   the others the next positions and hashes: the batch's plan, made in a read snapshot, without the lock;
3. in one write transaction, under the lock, it finds the chain's tail where the plan started
   (else another sequencer chained meanwhile: nothing is written and the batch is planned
   again), writes the positions and hashes (every planned record must still be waiting), and
   signs the new head into `audit_heads`. A crash mid-batch rolls the whole batch back, and the
   next batch (at the latest at the next start) chains those records again from the same head.
   Planning outside the lock matters on SQLite, whose lock is the one every writer queues on:
   the checks and hashes, most of a batch's work, no longer hold up the server's writes.

A row this process's own writer signed and inserted, read back unchanged in every column
(`AuditWriter.signed_here`, a digest kept in memory only), needs no signature check: the
signature is this key's over exactly that content. That skips the Ed25519 verification
(~60 µs a record, more than signing it) for nearly every record a server chains; a row
another process wrote, or one changed in the database since its insert, is verified.

Every server process runs one in the background (`Background`: at start, every `interval`
while records wait, and a last time when it stops; while none waits it sleeps until its own
writer appends one, looking at the database only every `idle_interval` for records other
processes wrote), `audit verify`, `checkpoint` and `adopt`
run one first, and two replicas sharing a ledger take turns on the lock, so they produce one
chain. A record is acknowledged when its writer commits; chaining it later only adds its place.
"""

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect, text

from mcp_server.audit.identity import LedgerIdentityError
from mcp_server.audit.keys import KEY_FILE_ENV, AuditKeyError, load_keyring, load_signer
from mcp_server.audit.writer import RECORD_COLUMNS, AuditWriter
from mcp_server.ledger.free_text import shown
from mcp_server.storage.database import Database
from mcp_server.storage.locks import LEDGER
from mcp_server.storage.statement import Statement
from mcp_server.storage.stored_int import stored_int
from mcp_server.timestamps import now_text
from policy.audit import GENESIS, LEGACY_PREFIX, Keyring, LedgerIdentity, SignedHead, chain_hash, head_problem

log = logging.getLogger(__name__)

SEQUENCER_LOCK = int.from_bytes(b"aseq", "big") >> 1
"""The PostgreSQL advisory lock only sequencers take: this constant and the ledger (`storage.locks.LEDGER`),
shared by every bankgate process on that ledger. Advisory locks span the whole database, so a constant alone
would make the sequencers of ledgers in other schemas of it skip their turn (`wait=False`) believing it theirs."""
BATCH_LIMIT = 2000
"""Records chained per transaction at most: a backlog is worked off in bounded transactions."""

_LOCK = Statement(f"SELECT pg_advisory_xact_lock(:key, hashtext({LEDGER}))")
_TRY_LOCK = Statement(f"SELECT pg_try_advisory_xact_lock(:key, hashtext({LEDGER}))")
HEAD_COLUMNS = "seq, hash, at, key_id, signature, ledger"
_LAST_HEAD = Statement(f"SELECT {HEAD_COLUMNS} FROM audit_heads ORDER BY seq DESC LIMIT 1")
_TAIL = Statement("SELECT seq, hash, rid FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
_HASH_AT = Statement("SELECT hash FROM audit_log WHERE seq = :seq")
_SIGNED_CHAINED = Statement("SELECT 1 FROM audit_log WHERE seq IS NOT NULL AND rid NOT LIKE :legacy LIMIT 1")
_ANY_PENDING = Statement("SELECT 1 FROM audit_log WHERE seq IS NULL LIMIT 1")
_PENDING = Statement(
    f"SELECT {', '.join(RECORD_COLUMNS)}, (SELECT COUNT(*) FROM audit_log AS held WHERE held.rid = audit_log.rid) "
    "FROM audit_log WHERE seq IS NULL AND rid > :after ORDER BY rid LIMIT :limit"
)
"""The waiting records, each with the number of rows holding its rid: more than one only where the key on `rid`
was dropped and the record copied (one index probe a record while it holds)."""
_CHAIN = text("UPDATE audit_log SET seq = :seq, prev_hash = :prev_hash, hash = :hash WHERE rid = :rid AND seq IS NULL")
"""SQLite: run once per batch with every record's parameters (the driver's executemany; its rowcount is the total)."""
_CHAIN_ARRAYS = Statement(
    "UPDATE audit_log SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash FROM unnest(CAST(:seq AS BIGINT[]), "
    "CAST(:prev_hash AS TEXT[]), CAST(:hash AS TEXT[]), CAST(:rid AS TEXT[])) AS v(seq, prev_hash, hash, rid) "
    "WHERE audit_log.rid = v.rid AND audit_log.seq IS NULL"
)
"""PostgreSQL: a whole batch in one statement, its columns as arrays. An executemany of 2,000 statements
costs the sequencer's thread a protocol message each, under the GIL the server's other threads want; one
starved long enough in the middle of that pipeline stops reading, and the connection times out."""
_INSERT_HEAD = Statement(
    "INSERT INTO audit_heads (seq, hash, at, key_id, signature, ledger) "
    "VALUES (:seq, :hash, :at, :key_id, :signature, :ledger)"
)
_SEAL_HEAD = Statement(
    "UPDATE audit_heads SET at = :at, key_id = :key_id, signature = :signature, ledger = :ledger "
    "WHERE seq = :seq AND hash = :hash AND ledger IS NULL"
)


def stored_head(row: Sequence[Any], ledger: LedgerIdentity) -> SignedHead:
    """A row of `audit_heads` (`HEAD_COLUMNS`) as the head it states: one naming a ledger was signed with the
    boundary `ledger` stores (`unnamed_through`), which it therefore vouches for."""
    seq, hash_, at, key_id, signature, named = row
    position = stored_int(seq, "audit_heads", ("hash", hash_), "seq")
    if named is None:
        return SignedHead(position, str(hash_), str(at), str(key_id), str(signature))
    return SignedHead(position, str(hash_), str(at), str(key_id), str(signature), str(named), ledger.unnamed_through)


class ChainRefused(RuntimeError):
    """The chain's tail is not what the last signed head vouches for: it changed without the key."""


class _TailMoved(Exception):
    """The chain changed between a batch's plan and its write (another sequencer chained): plan again."""


@dataclass(frozen=True)
class _Plan:
    """A batch worked out from the chain's tail `start` (seq, hash): each record's position, and its row's new
    seq, prev_hash and hash."""

    start: tuple[int, str]
    positions: dict[str, int]
    chained: list[dict[str, Any]]


@dataclass(frozen=True)
class Batch:
    """What one batch chained: each record's new position, by rid, and the head it signed."""

    positions: dict[str, int]
    head: SignedHead


@dataclass
class Sequencer:
    db: Database
    writer: AuditWriter
    keys: Keyring = field(init=False)
    ledger: LedgerIdentity = field(init=False)
    _refused: set[str] = field(default_factory=set, init=False)
    _trusted: SignedHead | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        signer = self.writer.signer  # loads the key file, or creates it the way the writer would
        self.keys = load_keyring(self.writer.key_path)
        assert signer.key_id in self.keys, "the signing key is the key file's first"
        self.ledger = self.db.read(self.writer.ledger_in)  # the ledger's identity, read once

    def check_start(self) -> None:
        """Before this process signs anything (reads only). Refuse (`AuditKeyError`) a key file without the key of
        the chain's last signed head: this process could not extend the chain, and the replicas that signed it
        would never chain its records (a replica started without the shared key file creates a key of its own).
        Refuse (`LedgerIdentityError`) a ledger whose stored identity its chain does not vouch for (`_vouched`):
        signing for an id edited in the database would make this process's records and heads another ledger's."""
        last = self.db.read(lambda conn: _LAST_HEAD.one(conn))
        if last is not None and str(last[3]) not in self.keys:
            raise _not_held(str(last[3]), self.writer.key_path)
        self.db.read(self._vouched)

    def seal(self) -> None:
        """Chain what waits (records from before 0019 first take the places left for them, before anything
        slipped in later could), then sign a head for this ledger over the chain as it is, if none names it yet:
        on a new ledger a head at 0 (the empty chain), on one upgraded to 0019 the last v1 head signed again
        naming the ledger (same position and hash). From then on the stored identity is covered by a signed
        head, however long before the next record. A chain this process cannot vouch for is left to `audit
        verify` (nothing written). A ledger from before signed audit keeps waiting for its first batch (its
        records are for `audit adopt` to vouch for, never a seal). Nothing waits for another holder of the
        sequencer's lock (a replica's batch, `audit adopt`): that sequencer chains the waiting records, and this
        process's own signs its next head naming the ledger; a start never hangs behind it."""
        with contextlib.suppress(ChainRefused):
            self.chain(wait=False)
        last = self.db.read(lambda conn: _LAST_HEAD.one(conn))
        if last is None or last[5] is None:  # else sealed already: a start takes no write lock for it
            self.db.run(self._seal)

    def _seal(self, conn: Connection) -> None:
        if not self.lock(conn, wait=False):
            return
        try:
            head = self._vouched(conn)
        except LedgerIdentityError:
            return
        tail = self._chain_end(conn)
        if head is not None and (head.ledger is not None or (head.seq, head.hash) != tail):
            return
        if head is None and tail != (0, GENESIS):
            return
        sealed = self.writer.signer.sign_head(tail[0], tail[1], now_text(), self.ledger)
        params = _head_row(sealed)
        (_INSERT_HEAD if head is None else _SEAL_HEAD).run(conn, params)
        self._trusted = sealed

    def _vouched(self, conn: Connection) -> SignedHead | None:
        """The last signed head (`_last_head`), also over this chain's record at its position; else
        `LedgerIdentityError`: with no head over signed records, a head from another ledger, or one over
        another chain, the stored identity is not this chain's to sign for."""
        try:
            head = self._last_head(conn)
            if head is not None and head.seq != 0:  # a head at 0 is over the empty chain every chain starts from
                held = _HASH_AT.one(conn, {"seq": head.seq})
                if held is None or held[0] != head.hash:
                    raise ChainRefused(f"the last signed head ({head.seq}) is not over this chain's record")
        except ChainRefused as exc:
            raise LedgerIdentityError(
                f"{exc}: the ledger's stored identity (ledger {self.ledger.id}) is not vouched for, so nothing is "
                "signed for it; run `bankgate-mcp audit verify`"
            ) from None
        return head

    def pending(self) -> bool:
        """Whether any record waits to be chained (one indexed read, no lock)."""
        return self.db.read(lambda conn: _ANY_PENDING.one(conn)) is not None

    def chain(self, *, wait: bool = True) -> list[Batch]:
        """Chain everything committed so far, a batch per transaction. `wait=False` gives up at once if
        another sequencer holds the lock (it chains these records itself). Raises `ChainRefused`.

        Each batch is planned in a read snapshot (the records' checks and hashes, most of a batch's work)
        and written in a short write transaction that first finds the chain's tail where the plan found
        it: on SQLite that transaction holds the one write lock every writer queues on, so it no longer
        holds it while hashing. A tail that moved meanwhile (another sequencer chained) is planned again."""
        batches: list[Batch] = []
        while True:
            plan = self.db.read(self._plan, snapshot=True)
            if plan is None:
                return batches
            try:
                batch = self.db.run(partial(self._apply, plan=plan, wait=wait))
            except _TailMoved:
                continue
            if batch is None:
                return batches
            batches.append(batch)
            if len(batch.positions) < BATCH_LIMIT:
                return batches

    def chain_in(self, conn: Connection, *, wait: bool = True) -> Batch | None:
        """One batch in the caller's write transaction (taking the sequencer's lock there); None when the
        lock is taken (`wait=False`) or no valid record waits."""
        if not self.lock(conn, wait=wait):
            return None
        plan = self._plan(conn)
        return self._write(conn, plan) if plan is not None else None

    def _plan(self, conn: Connection) -> _Plan | None:
        """The next batch from the chain's tail as `conn` sees it: each waiting record checked, positioned
        and hashed; None when no valid record waits."""
        start = self._tail(conn)
        seq, prev_hash = start
        positions: dict[str, int] = {}
        chained: list[dict[str, Any]] = []
        after = ""
        # Page on past records left unchained: a full page of them (written without the key, with rids that
        # sort first) must not hide the records behind it from every batch.
        while len(positions) < BATCH_LIMIT:
            rows = _PENDING.all(conn, {"after": after, "limit": BATCH_LIMIT})
            for *row, held in rows:
                record: dict[str, Any] = dict(zip(RECORD_COLUMNS, row, strict=True))
                after = record["rid"]
                if held > 1:
                    self._refuse(record["rid"], f"is held by {held} rows of audit_log (copied in the database)")
                    continue
                if not (self.writer.signed_here(row) or self.keys.signed_for(record, self.ledger, seq + 1)):
                    self._refuse(record["rid"], "is not signed for this ledger by a known audit key")
                    continue
                seq += 1
                record.update(seq=seq, prev_hash=prev_hash)
                prev_hash = chain_hash(prev_hash, record)
                chained.append({"seq": seq, "prev_hash": record["prev_hash"], "hash": prev_hash, "rid": record["rid"]})
                positions[record["rid"]] = seq
                if len(positions) == BATCH_LIMIT:
                    break
            if len(rows) < BATCH_LIMIT:
                break
        return _Plan(start, positions, chained) if positions else None

    def _apply(self, conn: Connection, *, plan: _Plan, wait: bool) -> Batch | None:
        """Write `plan` under the sequencer's lock if the chain still ends where it was planned from, and
        every planned record still waits (else `_TailMoved`: nothing is written); None when the lock is
        taken (`wait=False`)."""
        if not self.lock(conn, wait=wait):
            return None
        if self._tail(conn) != plan.start:
            raise _TailMoved
        return self._write(conn, plan)

    def _write(self, conn: Connection, plan: _Plan) -> Batch:
        """Give the planned records their positions and hashes, and sign the head they leave."""
        chained = plan.chained
        if conn.dialect.name == "postgresql":
            written = _CHAIN_ARRAYS.run(conn, {column: [row[column] for row in chained] for column in chained[0]})
        else:
            written = conn.execute(_CHAIN, chained).rowcount
        if written != len(chained):  # a planned record was chained or removed meanwhile
            raise _TailMoved
        last = chained[-1]
        head = self.writer.signer.sign_head(last["seq"], last["hash"], now_text(), self.ledger)
        _INSERT_HEAD.run(conn, _head_row(head))
        self._trusted = head
        return Batch(plan.positions, head)

    def lock(self, conn: Connection, *, wait: bool = True) -> bool:
        """Take the sequencer's turn for this transaction (PostgreSQL; SQLite's write lock already is one)."""
        if conn.dialect.name != "postgresql":
            return True
        row = (_LOCK if wait else _TRY_LOCK).one(conn, {"key": SEQUENCER_LOCK})
        return wait or bool(row and row[0])

    def _chain_end(self, conn: Connection) -> tuple[int, str]:
        row = _TAIL.one(conn)
        return (stored_int(row[0], "audit_log", ("rid", row[2]), "seq"), str(row[1])) if row else (0, GENESIS)

    def _tail(self, conn: Connection) -> tuple[int, str]:
        """The chain's last (seq, hash), if a head valid for this ledger vouches for exactly it."""
        tail = self._chain_end(conn)
        head = self._last_head(conn)
        if head is None:
            return tail  # a ledger from before signed audit: its first head will cover its legacy records
        if (head.seq, head.hash) != tail:
            raise ChainRefused(
                f"the chain ends at record {tail[0]}, not at the last signed head's record {head.seq} with its "
                "hash: it changed without the key (run `bankgate-mcp audit verify`)"
            )
        self._trusted = head
        return tail

    def _last_head(self, conn: Connection) -> SignedHead | None:
        """The last signed head, valid for this ledger (else `ChainRefused`, naming what is wrong); None when there
        is none and the chain holds only records from before signed audit (or none)."""
        last = _LAST_HEAD.one(conn)
        if last is None:
            if _SIGNED_CHAINED.one(conn, {"legacy": LEGACY_PREFIX + "%"}) is not None:
                raise ChainRefused("records are chained but no signed head covers them: the heads were deleted")
            return None
        head = stored_head(last, self.ledger)
        problem = None if head == self._trusted else self._head_problem(head)
        if problem is not None:
            raise ChainRefused(f"the last signed head ({head.seq}) {problem}")
        return head

    def _head_problem(self, head: SignedHead) -> str | None:
        """What is wrong with `head` as this ledger's (`head_problem`), the audit keys read again from the key
        file before saying: a file rotated under this running process (the new key first, the old ones below)
        holds the key a command or a restarted replica now signs heads with, and this process's own key still
        verifies."""
        if head_problem(head, self.keys, self.ledger) is None:
            return None
        with contextlib.suppress(AuditKeyError):  # a file replaced by one this process may not trust: keep the ring
            self.keys = load_keyring(self.writer.key_path)
        return head_problem(head, self.keys, self.ledger)

    def _refuse(self, rid: str, problem: str) -> None:
        if rid not in self._refused:
            self._refused.add(rid)
            log.error("audit record %r %s: left unchained", rid, problem)  # %r: a forger's


class Background:
    """Runs a `Sequencer` on a daemon thread while any server of this process runs (`running`): once at
    start (records a crash left unchained), then every `interval` while records wait, and once at stop.

    While no record waits it does not poll: it waits for its writer's next append (`AuditWriter.appended`),
    and looks anyway every `idle_interval` (records another process wrote, whose own sequencer may be gone).
    An append wakes it before that record commits, so after each append it keeps ticking every `interval`
    for `idle_interval`, whatever it finds, before it waits again (`_loop`)."""

    def __init__(
        self,
        sequencer: Sequencer,
        interval: float = 0.1,
        idle_interval: float = 1.0,
        chores: Sequence[Callable[[], object]] = (),
    ) -> None:
        """`chores`: other periodic work of the process (`expiry.ExpirySweep.due`), called before each chaining,
        so the records they write are chained in the same tick; each decides itself whether it is due."""
        self.sequencer = sequencer
        self.interval = interval
        self.idle_interval = idle_interval
        self.chores = tuple(chores)
        self._users = 0
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._appended = sequencer.writer.appended
        self._thread: threading.Thread | None = None
        self._problems: dict[Callable[[], object], str] = {}

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._guard:
            self._users += 1
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="audit-sequencer", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._guard:
                self._users -= 1
                thread = self._thread if self._users == 0 else None
                if thread is not None:
                    self._stop.set()
                    self._appended.set()  # ends an idle wait at once
                    self._thread = None
            if thread is not None:
                thread.join()

    def _loop(self) -> None:
        """Tick every `interval` while records wait or an append's commit may still be on its way.

        An append is signalled before its transaction commits, and a commit can take longer than a
        few intervals (fsync, a loaded machine), so after each signal the loop keeps looking for
        `idle_interval` before it goes back to waiting; past that the idle look covers it anyway.
        """
        busy = self._tick()
        expecting = 0.0
        while not self._stop.is_set():
            if not busy and time.monotonic() >= expecting:
                self._appended.wait(self.idle_interval)
            if self._appended.is_set():
                self._appended.clear()
                expecting = time.monotonic() + self.idle_interval
            if self._stop.wait(self.interval):  # records gather for one batch
                break
            busy = self._tick()
        self._tick()

    def _tick(self) -> bool:
        """Run the chores, then chain what waits; whether anything waited (False after a failure: the next look
        is an idle one)."""
        for chore in self.chores:
            self._attempt(chore)
        return self._attempt(self._chain) is True

    def _chain(self) -> bool:
        waiting = self.sequencer.pending()
        if waiting:
            self.sequencer.chain(wait=False)
        return waiting

    def _attempt(self, work: Callable[[], object]) -> object:
        """`work()`, or None if it failed: a database outage or a refused chain must not end the thread. Each
        failure is said once, not every interval, until that work succeeds again."""
        try:
            done = work()
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if self._problems.get(work) != problem:
                log.error("audit thread: %s", problem)
                self._problems[work] = problem
            return None
        self._problems.pop(work, None)
        return done


def _head_row(head: SignedHead) -> dict[str, Any]:
    """`head`'s columns in `audit_heads` (its `unnamed_through` is the ledger's, stored once)."""
    return {"seq": head.seq, "hash": head.hash, "at": head.at, "key_id": head.key_id, "signature": head.signature,
            "ledger": head.ledger}  # fmt: skip


def check_signer(writer: AuditWriter, db: Database) -> None:
    """Before a starting server or `admin init` migrates the ledger (`Database.open(before_migrating=)`) or makes a
    missing key file: the key of the chain's last signed head must be in the key file (`check_start` holds it again
    after), read here on any release's schema, so a start refused for its key leaves the ledger at the release its
    servers run. A missing key file is made only for a ledger no key has signed yet: one signed already was signed
    with another key (a replica started without the shared key file), which a key made now could never extend."""
    last = db.read(_last_signer)
    if last is None:
        return
    if not os.path.lexists(writer.key_path):
        raise AuditKeyError(
            f"audit key file {writer.key_path} does not exist, and the ledger's audit chain is signed by key "
            f"{shown(last)}: name the key file its servers use ({KEY_FILE_ENV} or --audit-key-file)"
        )
    if last not in load_keyring(writer.key_path):
        raise _not_held(last, writer.key_path)


def _last_signer(conn: Connection) -> str | None:
    """The key id of the chain's last signed head; None on a ledger with none (or from before signed heads)."""
    if not inspect(conn).has_table("audit_heads"):
        return None
    key_id = conn.execute(text("SELECT key_id FROM audit_heads ORDER BY seq DESC LIMIT 1")).scalar()
    return None if key_id is None else str(key_id)


def _not_held(key_id: str, path: Path) -> AuditKeyError:
    return AuditKeyError(
        f"the ledger's audit chain was last signed by key {shown(key_id)}, which {path} does not hold: every replica "
        f"and command must use the same key file ({KEY_FILE_ENV} or --audit-key-file), and a rotation keeps the old "
        "keys below the new one"
    )


def checked_writer(db: Database, key_path: Path | None) -> AuditWriter:
    """A writer for `db` signing with a key the chain's signers know (`Sequencer.check_start`): an operator's
    command run with another key file would sign records no replica chains, as a replica would. The file must
    exist (`admin init` and `serve` make it): one made up here for a mistyped path would sign before any head
    could tell its key from the ledger's, and be left behind even when refused."""
    writer = AuditWriter(key_path)
    load_signer(writer.key_path, create=False)
    Sequencer(db, writer).check_start()
    return writer
