"""The audit log: signed records, a hash chain over them, and signed heads of that chain.

Three layers, each checkable with only the public key:

- **Records.** A writer inserts each record in its own transaction (the one that moves the
  money), unchained, carrying an Ed25519 signature of its content (`record_message`: every
  column but the chain position, and a random `rid` that makes two identical decisions two
  records). No row is shared between writers, so writing needs no lock; a database writer
  without the key cannot add a record the sequencer would chain, nor edit one unseen.
- **Chain.** A sequencer (`mcp_server.audit.sequencer`) later gives committed records their
  positions: `seq` 1, 2, … and `hash` = sha256(previous hash, the record's content and
  position), so editing, inserting, deleting or reordering a chained record breaks the chain
  at that point.
- **Heads.** After each batch the sequencer signs the head it leaves (`SignedHead`: seq,
  hash, time, key id), which vouches for every record up to it, as a Certificate
  Transparency log's signed tree head does. A chained record past the last head was chained
  without the key. A head kept outside the database (a checkpoint) also catches a tail
  truncated or rolled back behind it, which nothing inside the database can.

**Ledger.** Two ledgers may share a key file (staging and production, two test ledgers set up
from one key), so every signature also names the ledger it was made for: a random id migration
0019 gives each ledger (`LedgerIdentity`, in `ledger_identity`; a process reads it once, at
start). A record's message names that id ("record v2", `record_message`), a head's names it and
`unnamed_through` ("head v2"). A record, or a whole chain with its heads, copied from another
ledger fails this ledger's check, as an edited one does, and is never chained.

The format rule: a record's format follows from its position, never from anything a database
writer sets. Up to `unnamed_through` (0019 sets it to the records the ledger held then, chained or
still waiting, which a starting server chains first) a record may name no ledger ("record v1",
tried first there) or this one; past it, only this one. So a new record cannot be downgraded (its
v2 signature is no v1 one), and another ledger's old record cannot come in after the boundary. A
head naming no ledger may likewise stand only up to `unnamed_through`. Heads signed since 0019
cover the id and `unnamed_through`, so editing either in the database (even to another ledger's
values) makes this ledger's own heads fail: the sequencer refuses to chain, a process refuses to
sign (`Sequencer.check_start`), `audit verify` names every head. A server's start signs a head
naming the ledger over the chain as it is (`Sequencer.seal`: at position 0 on a new ledger, the
last v1 head signed again on an upgraded one), so the id is covered from then on.

What no signature can tell: a database replaced whole by a copy of another ledger's (or emptied
and given its id) before its server starts; there the server signs for that other ledger. Only a
key file per ledger, or a checkpoint kept outside, tells them apart.

Records chained before migration 0008 (`rid` starting `legacy-`) carry no record signature
and hash without their `rid`: the heads the old writer signed (moved to `audit_heads`) cover
them. A legacy record can only be chained: an unchained one was written without the key.

Why signatures rather than an HMAC: an HMAC costs ~3 µs against 25–50 µs to sign (60–165 µs
to verify; the range is this machine's from day to day), but whoever can check one can forge
it, and an auditor should need only the public key. Signing a gated call's three records
costs 0.1–0.15 ms, 2–3 % of the call in memory (`bench.audit_bench` prints today's figure).
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from policy.canonical import canonical_json

GENESIS = "0" * 64
LEGACY_PREFIX = "legacy-"
"""The `rid` migration 0008 gives records chained before it (`legacy-<seq>`)."""

CONTENT_FIELDS = (
    "at",
    "event",
    "principal",
    "tool",
    "arguments_json",
    "policy_version",
    "matched_rules_json",
    "reason",
    "approval_ref",
    "question_sha256",
    "note",
    "result_json",
    "amount_minor",
    "currency",
    "idempotency_key",
)
"""What a record says, as stored (JSON fields as their stored text)."""

_OPTIONAL_FIELDS = frozenset({"currency", "idempotency_key"})
"""Content added after records were first signed (`currency`, migration 0011; `idempotency_key`, 0021): left out of
a record's signed message and hash while NULL, so the records written before it verify as they were signed and
chained."""

CHAINED_FIELDS = ("seq", *CONTENT_FIELDS)
"""The columns a record's hash covers (and its `rid`, unless it is a legacy record)."""

_HEAD_PURPOSE = ("bankgate audit head v1", "bankgate audit head v2")
_RECORD_PURPOSE = ("bankgate audit record v1", "bankgate audit record v2")
"""Bound into every signed message, so a signature made for one purpose never passes for another; v2 (since
migration 0019) also names the ledger, v1 none."""


@dataclass(frozen=True)
class LedgerIdentity:
    """The ledger signatures are made for: its random `id` (migration 0019), and `unnamed_through`, the last
    position a record or head signed before it (naming no ledger) may hold."""

    id: str
    unnamed_through: int


def is_legacy(record: Mapping[str, Any]) -> bool:
    rid = record.get("rid")
    return rid is None or str(rid).startswith(LEGACY_PREFIX)


def _said(record: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """`record`'s `fields`, without an optional one it leaves NULL. Read by subscript, not `get`: every record
    signed, chained or verified passes here, and a `get` per field is a call per field."""
    said: dict[str, Any] = {}
    for name in fields:
        if name in record and record[name] is not None:
            said[name] = record[name]
        elif name not in _OPTIONAL_FIELDS:
            said[name] = None
    return said


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    body = _said(record, CHAINED_FIELDS)
    if not is_legacy(record):
        body["rid"] = record["rid"]
    return hashlib.sha256(f"{prev_hash}\n{canonical_json(body)}".encode()).hexdigest()


def record_message(record: Mapping[str, Any], key_id: str, ledger: str | None) -> bytes:
    """What a record signature covers: the ledger's id, the record's id and content, never its chain position.
    `ledger` None: the message of a record signed before migration 0019 (v1), which named no ledger."""
    body = _said(record, CONTENT_FIELDS)
    named = {"purpose": _RECORD_PURPOSE[1], "ledger": ledger} if ledger is not None else {"purpose": _RECORD_PURPOSE[0]}
    return canonical_json({**named, "rid": record.get("rid"), "key_id": key_id, **body}).encode()


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key, stored with each signature (so rotated keys still verify)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SignedHead:
    """A statement that the chain had record `seq` with hash `hash` at time `at`, signed by key `key_id`, for
    ledger `ledger` whose records from before its id end at `unnamed_through` (both None: a v1 head, signed
    before migration 0019)."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str
    ledger: str | None = None
    unnamed_through: int | None = None

    def message(self) -> bytes:
        fields = {"seq": self.seq, "hash": self.hash, "at": self.at, "key_id": self.key_id}
        if self.ledger is None:
            return canonical_json({"purpose": _HEAD_PURPOSE[0], **fields}).encode()
        named = {"ledger": self.ledger, "unnamed_through": self.unnamed_through}
        return canonical_json({"purpose": _HEAD_PURPOSE[1], **named, **fields}).encode()

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SignedHead":
        """Raises ValueError naming the first missing or mistyped field."""
        required = (("seq", int), ("hash", str), ("at", str), ("key_id", str), ("signature", str))
        named = (("ledger", str), ("unnamed_through", int))  # both, or neither (a v1 checkpoint)
        fields: dict[str, Any] = {}
        for name, kind in required + (named if data.get("ledger") is not None else ()):
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"field '{name}' is missing or not a {kind.__name__}")
            fields[name] = value
        return cls(**fields)


class HeadSigner:
    """An Ed25519 private key that signs records and chain heads (the server's; never in the database)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_of(self.public_key)

    def sign_head(self, seq: int, head_hash: str, at: str, ledger: LedgerIdentity | None) -> SignedHead:
        """A head for `ledger` (None: a v1 head naming none, as signed before migration 0019)."""
        named = (ledger.id, ledger.unnamed_through) if ledger is not None else (None, None)
        head = SignedHead(seq, head_hash, at, self.key_id, "", *named)
        return replace(head, signature=self._key.sign(head.message()).hex())

    def sign_record(self, record: Mapping[str, Any], ledger: str | None) -> str:
        """The signature of `record` (its `rid` and content) for ledger `ledger` by this key, whose id it names."""
        return self._key.sign(record_message(record, self.key_id, ledger)).hex()


class Keyring:
    """Public keys by key id: all a verifier needs (old keys stay so what they signed still verifies)."""

    def __init__(self, public_keys: Iterable[bytes]) -> None:
        self._keys = {key_id_of(raw): Ed25519PublicKey.from_public_bytes(raw) for raw in public_keys}

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def verify_head(self, head: SignedHead) -> bool:
        """True when `head` was signed by a key of this ring (False for an unknown key or a bad signature)."""
        return self._verify(head.key_id, head.signature, head.message())

    def verify_record(self, record: Mapping[str, Any], ledger: str | None) -> bool:
        """True when the record's `signature` is its key's (`key_id`) over `ledger`, its `rid` and content."""
        key_id, signature = record.get("key_id"), record.get("signature")
        if not isinstance(key_id, str) or not isinstance(signature, str):
            return False
        return self._verify(key_id, signature, record_message(record, key_id, ledger))

    def signed_for(self, record: Mapping[str, Any], ledger: LedgerIdentity, seq: int) -> bool:
        """Whether `record`, standing at position `seq`, is signed for `ledger`: naming it, or, up to
        `ledger.unnamed_through` only, naming no ledger (signed before migration 0019; tried first there)."""
        if seq <= ledger.unnamed_through:
            return self.verify_record(record, None) or self.verify_record(record, ledger.id)
        return self.verify_record(record, ledger.id)

    def _verify(self, key_id: str, signature: str, message: bytes) -> bool:
        key = self._keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(bytes.fromhex(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Finding:
    """One problem verification found. `legacy` marks a gap every ledger from before signed audit has
    (an unsigned chain, postings without records): `audit adopt` may vouch for those, never for others."""

    seq: int | None
    problem: str
    legacy: bool = False

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}" if self.seq is not None else self.problem


def verify_chain(
    records: Iterable[Mapping[str, Any]],
    keys: Keyring,
    ledger: LedgerIdentity,
    heads: Sequence[SignedHead] = (),
    pending: Iterable[Mapping[str, Any]] = (),
) -> list[Finding]:
    """Findings for the chained `records` (in sequence order, each with `seq`, `rid`, `prev_hash`, `hash`,
    `key_id`, `signature`), the signed `heads` (in sequence order) and the `pending` (unchained) records of
    `ledger`; [] when intact. Every record but a legacy one must carry its valid signature for this ledger at
    its position (`Keyring.signed_for`); every head must be valid for this ledger and match the record at its
    position (a head at 0 vouches for the empty chain); the last record must be covered by a head (records
    after the last head were chained without the key); no head may point past the chain (records deleted); no
    record may be held by two rows (copied).

    Each record is read once, in order, and let go: `records` and `pending` may be read from the database a page at a
    time. What is kept is what the checks after it compare: the hashes at the heads' positions, and every rid."""
    findings: list[Finding] = []
    expected_seq, prev = 1, GENESIS
    at_heads = {head.seq for head in heads}
    hashes: dict[int, str] = {0: GENESIS}
    held: dict[str, list[str]] = {}
    chained, all_legacy = False, True
    for record in records:
        seq = int(record["seq"])
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "duplicated or out of order"
            findings.append(Finding(seq, f"sequence jumps from {expected_seq - 1} to {seq} (records {what})"))
        if record["prev_hash"] != prev:
            findings.append(Finding(seq, "does not follow the previous record (inserted, or one before it deleted)"))
        if chain_hash(record["prev_hash"], record) != record["hash"]:
            findings.append(Finding(seq, "content does not match its hash (edited)"))
        legacy = is_legacy(record)
        problem = None if legacy else _signature_problem(record, keys, ledger, seq)
        if problem is not None:
            findings.append(Finding(seq, problem))
        if seq in at_heads:
            hashes[seq] = record["hash"]
        held.setdefault(str(record.get("rid")), []).append(f"record {record['seq']}")
        chained, all_legacy = True, all_legacy and legacy
        expected_seq, prev = seq + 1, record["hash"]
    last, vouched = expected_seq - 1, 0
    for head in heads:
        problem = head_problem(head, keys, ledger)
        if problem is not None:
            findings.append(Finding(None, f"signed head {head.seq}: {problem}"))
        elif head.seq > last:
            findings.append(Finding(None, f"the chain ends at record {last} but a signed head says {head.seq} "
                                    "(records deleted)"))  # fmt: skip
        elif hashes.get(head.seq) != head.hash:
            rewritten = Finding(head.seq, "differs from the signed head at it (the chain was rewritten up to here)")
            findings.append(rewritten)
        else:
            vouched = head.seq
    if chained and vouched < last:
        span = f"record {last}" if vouched + 1 == last else f"records {vouched + 1} to {last}"
        # No head over legacy records alone is what a chain from before signing looks like (or one stripped
        # of every head: the caller tells them apart by records only signing versions write).
        unsigned = not heads and all_legacy
        findings.append(Finding(None, f"no valid signature covers {span} (written without the key)", unsigned))
    position = last  # where the sequencer would chain each waiting record, in this (rid) order
    for record in pending:
        legacy_problem = "is a legacy record, which only the chain may hold (written without the key)"
        problem = legacy_problem if is_legacy(record) else _signature_problem(record, keys, ledger, position + 1)
        if problem is not None:
            findings.append(Finding(None, f"unchained record {record.get('rid')}: {problem}"))
        else:
            position += 1
        held.setdefault(str(record.get("rid")), []).append("unchained")
    return findings + _copies(held)


def _copies(held: Mapping[str, Sequence[str]]) -> list[Finding]:
    """A `rid` more than one row holds: a signed record copied (its key on `rid` dropped), which its signature,
    the writer's own, cannot tell from the record, and which may move no money for the cross-checks to see."""
    return [
        Finding(None, f"record {rid} is held by {len(rows)} rows ({', '.join(rows)}): copied in the database")
        for rid, rows in held.items()
        if len(rows) > 1
    ]


def _signature_problem(record: Mapping[str, Any], keys: Keyring, ledger: LedgerIdentity, seq: int) -> str | None:
    key_id = record.get("key_id")
    if record.get("signature") is None:
        return "carries no signature (written without the key)"
    if key_id not in keys:
        return f"signed by key {key_id}, which is not a known audit key"
    if keys.signed_for(record, ledger, seq):
        return None
    if keys.verify_record(record, None):
        return (f"is signed naming no ledger, as records were before migration 0019, but this ledger's records "
                f"past {ledger.unnamed_through} must name it (copied from another ledger)")  # fmt: skip
    return (
        "its signature does not match its content for this ledger (edited, written without the key, or copied "
        "from another ledger)"
    )


def head_problem(head: SignedHead, keys: Keyring, ledger: LedgerIdentity) -> str | None:
    """What is wrong with `head` as a head of `ledger` (None: nothing): its key, the ledger it was signed for
    (none is allowed only up to `ledger.unnamed_through`: a head from before migration 0019), its signature."""
    if head.key_id not in keys:
        return f"signed by key {head.key_id}, which is not a known audit key"
    if head.ledger is None and head.seq > ledger.unnamed_through:
        return (f"names no ledger, as heads did before migration 0019, but this ledger's heads past record "
                f"{ledger.unnamed_through} must name it (copied from another ledger)")  # fmt: skip
    if head.ledger is not None and head.ledger != ledger.id:
        return (f"was signed for ledger {head.ledger}, not this one ({ledger.id}): copied from another ledger, "
                "or this ledger's id edited")  # fmt: skip
    if head.ledger is not None and head.unnamed_through != ledger.unnamed_through:
        return (f"was signed with records up to {head.unnamed_through} from before this ledger's id, but the "
                f"ledger says {ledger.unnamed_through} (edited)")  # fmt: skip
    if not keys.verify_head(head):
        return "its signature does not match (forged, or this ledger's identity edited)"
    return None


def check_checkpoint(records: Iterable[Mapping[str, Any]], checkpoint: SignedHead) -> list[Finding]:
    """The chain must still hold the checkpoint's record with that exact hash (signature checked by the caller).
    Record 0 is the genesis every chain starts from: a checkpoint of an empty chain is held by every chain."""
    if checkpoint.seq == 0 and checkpoint.hash == GENESIS:
        return []
    last = 0
    for record in records:
        last = int(record["seq"])
        if last == checkpoint.seq:
            if record["hash"] == checkpoint.hash:
                return []
            return [Finding(checkpoint.seq, "differs from the checkpoint (the chain was rewritten at or before it)")]
    return [
        Finding(None, f"the chain ends at record {last}, before the checkpoint's record {checkpoint.seq} "
                "(truncated or rolled back)")
    ]  # fmt: skip
