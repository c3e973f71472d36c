"""The audit chain, and the signatures that let it be checked without trusting the database.

Each record's hash covers its content and the previous record's hash, so editing, inserting,
deleting or reordering a record breaks the chain at that point. The hash alone is no proof:
anyone who can write the database can recompute it. So every writing transaction signs the
head it leaves (the last record's seq and hash) with an Ed25519 key held outside the database,
and that signature covers every record before it. A verifier needs only the public key; a
forger needs the private one. A `SignedHead` kept outside the database (a checkpoint) also
catches a tail truncated or rolled back behind it, which no signature inside the database can.

Why signatures rather than an HMAC chain: HMAC costs ~3 µs per record against ~50 µs per
signature, but whoever can verify an HMAC can also forge it. One signature per transaction (not
per record: the hash chain carries the rest) costs a few percent of a gated call at most, and
lets an auditor verify with only the public key.
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from policy.canonical import canonical_json

GENESIS = "0" * 64

CHAINED_FIELDS = (
    "seq",
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
)
"""The columns a record's hash covers, as stored (JSON fields as their stored text)."""

_HEAD_PURPOSE = "bankgate audit head v1"
"""Bound into every signed message, so a signature made for anything else never passes as a head."""


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    body = canonical_json({name: record.get(name) for name in CHAINED_FIELDS})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key, stored with each signature (so rotated keys still verify)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SignedHead:
    """A statement that the chain had record `seq` with hash `hash` at time `at`, signed by key `key_id`."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str

    def message(self) -> bytes:
        return _head_message(self.seq, self.hash, self.at, self.key_id)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SignedHead":
        """Raises ValueError naming the first missing or mistyped field."""
        fields: dict[str, Any] = {}
        for name, kind in (("seq", int), ("hash", str), ("at", str), ("key_id", str), ("signature", str)):
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"field '{name}' is missing or not a {kind.__name__}")
            fields[name] = value
        return cls(**fields)


def _head_message(seq: int, head_hash: str, at: str, key_id: str) -> bytes:
    return canonical_json(
        {"purpose": _HEAD_PURPOSE, "seq": seq, "hash": head_hash, "at": at, "key_id": key_id}
    ).encode()


class HeadSigner:
    """An Ed25519 private key that signs chain heads (the server's; never stored in the database)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_of(self.public_key)

    def sign_head(self, seq: int, head_hash: str, at: str) -> SignedHead:
        signature = self._key.sign(_head_message(seq, head_hash, at, self.key_id)).hex()
        return SignedHead(seq, head_hash, at, self.key_id, signature)


class Keyring:
    """Public keys by key id: all a verifier needs (old keys stay so records they signed still verify)."""

    def __init__(self, public_keys: Iterable[bytes]) -> None:
        self._keys = {key_id_of(raw): Ed25519PublicKey.from_public_bytes(raw) for raw in public_keys}

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def verify_head(self, head: SignedHead) -> bool:
        """True when `head` was signed by a key of this ring (False for an unknown key or a bad signature)."""
        key = self._keys.get(head.key_id)
        if key is None:
            return False
        try:
            key.verify(bytes.fromhex(head.signature), head.message())
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
    records: Sequence[Mapping[str, Any]], keys: Keyring, head: tuple[int, str] | None = None
) -> list[Finding]:
    """Findings for `records` (in sequence order, each with `seq`, `prev_hash`, `hash`, `key_id`,
    `signature`); [] when intact. Every signature must verify, and the last record must carry one:
    records after the last valid signature were written (or rewritten) without the key."""
    findings: list[Finding] = []
    expected_seq, prev = 1, GENESIS
    vouched = 0
    for record in records:
        seq = int(record["seq"])
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "duplicated or out of order"
            findings.append(Finding(seq, f"sequence jumps from {expected_seq - 1} to {seq} (records {what})"))
        if record["prev_hash"] != prev:
            findings.append(Finding(seq, "does not follow the previous record (inserted, or one before it deleted)"))
        if chain_hash(record["prev_hash"], record) != record["hash"]:
            findings.append(Finding(seq, "content does not match its hash (edited)"))
        if record.get("signature") is not None:
            signed = SignedHead(seq, record["hash"], record["at"], str(record.get("key_id")), record["signature"])
            if signed.key_id not in keys:
                findings.append(Finding(seq, f"signed by key {signed.key_id}, which is not a known audit key"))
            elif not keys.verify_head(signed):
                findings.append(Finding(seq, "its signature does not match (the chain was rewritten up to here)"))
            else:
                vouched = seq
        expected_seq, prev = seq + 1, record["hash"]
    last = (expected_seq - 1, prev)
    if records and vouched != last[0]:
        span = f"record {last[0]}" if vouched + 1 == last[0] else f"records {vouched + 1} to {last[0]}"
        unsigned = all(record.get("signature") is None for record in records)
        # Nothing signed at all is what a chain from before signing looks like (or one stripped of every
        # signature: the caller tells them apart by records only signing versions write).
        findings.append(Finding(None, f"no valid signature covers {span} (written without the key)", unsigned))
    if head is not None and head != last and not (head[0] == 0 and last[0] == 0):
        findings.append(
            Finding(None, f"the chain ends at record {last[0]} but the head says {head[0]} (records deleted)")
        )
    return findings


def check_checkpoint(records: Sequence[Mapping[str, Any]], checkpoint: SignedHead) -> list[Finding]:
    """The chain must still hold the checkpoint's record with that exact hash (signature checked by the caller)."""
    for record in records:
        if int(record["seq"]) == checkpoint.seq:
            if record["hash"] == checkpoint.hash:
                return []
            return [Finding(checkpoint.seq, "differs from the checkpoint (the chain was rewritten at or before it)")]
    last = int(records[-1]["seq"]) if records else 0
    return [
        Finding(None, f"the chain ends at record {last}, before the checkpoint's record {checkpoint.seq} "
                "(truncated or rolled back)")
    ]  # fmt: skip
