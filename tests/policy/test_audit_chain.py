"""A signed head vouches for exactly one (seq, hash, time, key) and for every record chained before it."""

import dataclasses
import secrets
from typing import Any

import pytest

from policy.audit import (
    CHAINED_FIELDS,
    GENESIS,
    HeadSigner,
    Keyring,
    LedgerIdentity,
    SignedHead,
    chain_hash,
    verify_chain,
)

SIGNER = HeadSigner(secrets.token_bytes(32))
KEYS = Keyring([SIGNER.public_key])
AT = "2026-01-01T00:00:00.000000Z"
LEDGER = LedgerIdentity("ab" * 16, 0)


def chain(count: int, signed: set[int]) -> tuple[list[dict[str, Any]], list[SignedHead]]:
    """`count` signed records, chained, and a signed head at each position in `signed`."""
    records, heads, prev = [], [], GENESIS
    for seq in range(1, count + 1):
        record: dict[str, Any] = {"rid": f"r{seq}", "at": AT, "event": "executed", "amount_minor": seq}
        record.update(key_id=SIGNER.key_id, signature=SIGNER.sign_record(record, LEDGER.id), seq=seq, prev_hash=prev)
        record["hash"] = prev = chain_hash(prev, record)
        if seq in signed:
            heads.append(SIGNER.sign_head(seq, prev, AT, LEDGER))
        records.append(record)
    return records, heads


@pytest.mark.parametrize("field", ["seq", "hash", "at", "key_id"])
def test_a_signed_head_covers_each_of_its_fields(field: str) -> None:
    head = SIGNER.sign_head(7, "ab" * 32, AT, LEDGER)
    assert KEYS.verify_head(head)
    changed = {"seq": 8, "hash": "cd" * 32, "at": AT.replace("01T", "02T"), "key_id": "0" * 16}[field]
    changes: dict[str, Any] = {field: changed}
    assert not KEYS.verify_head(dataclasses.replace(head, **changes))


def test_a_head_from_another_key_or_with_a_garbled_signature_is_refused() -> None:
    other = HeadSigner(secrets.token_bytes(32)).sign_head(1, GENESIS, AT, LEDGER)
    assert not KEYS.verify_head(other)
    assert not KEYS.verify_head(dataclasses.replace(SIGNER.sign_head(1, GENESIS, AT, LEDGER), signature="zz"))


def test_a_checkpoint_round_trips_through_json_and_names_a_bad_field() -> None:
    head = SIGNER.sign_head(3, GENESIS, AT, LEDGER)
    assert SignedHead.from_json(head.as_json()) == head
    with pytest.raises(ValueError, match="field 'seq' is missing or not a int"):
        SignedHead.from_json({**head.as_json(), "seq": True})


def test_records_after_the_last_signed_head_are_named() -> None:
    records, heads = chain(4, {2, 4})
    assert verify_chain(records, KEYS, LEDGER, heads) == []
    records, heads = chain(4, {2})
    findings = [str(f) for f in verify_chain(records, KEYS, LEDGER, heads)]
    assert findings == ["no valid signature covers records 3 to 4 (written without the key)"]


@pytest.mark.parametrize("field", ["rid", "event", "amount_minor", "key_id"])
def test_a_record_signature_covers_its_id_and_content_but_not_its_position(field: str) -> None:
    record = chain(1, {1})[0][0]
    assert KEYS.verify_record(record, LEDGER.id) and KEYS.verify_record(
        {**record, "seq": 9, "prev_hash": "x", "hash": "y"}, LEDGER.id
    )
    assert not KEYS.verify_record({**record, field: {"rid": "r2", "event": "denied", "amount_minor": 2,
                                                     "key_id": "0" * 16}[field]}, LEDGER.id)  # fmt: skip


def test_a_records_currency_is_signed_and_chained_when_set_and_absent_from_older_records() -> None:
    """Records from before migration 0011 (no currency) keep the message and hash they were given."""
    record = chain(1, {1})[0][0]
    assert record.get("currency") is None and KEYS.verify_record({**record, "currency": None}, LEDGER.id)
    assert chain_hash(GENESIS, record) == chain_hash(GENESIS, {**record, "currency": None})
    stated = {**record, "currency": "EUR"}
    stated["signature"] = SIGNER.sign_record(stated, LEDGER.id)
    assert KEYS.verify_record(stated, LEDGER.id)
    assert not KEYS.verify_record({**stated, "currency": "USD"}, LEDGER.id)
    assert not KEYS.verify_record({**stated, "currency": None}, LEDGER.id)
    assert chain_hash(GENESIS, stated) != chain_hash(GENESIS, record)


def test_a_field_absent_reads_as_null_in_a_records_message_and_hash() -> None:
    """A record with every column (as the writer and the database give it) is read by key, one lacking some
    (older tools, these tests) field by field: both say the same."""
    record = chain(1, {1})[0][0]
    full = {**dict.fromkeys(CHAINED_FIELDS), **record}
    assert KEYS.verify_record(full, LEDGER.id) and chain_hash(GENESIS, full) == chain_hash(GENESIS, record)
    assert not KEYS.verify_record({**full, "note": "added"}, LEDGER.id)


def test_an_unchained_record_must_carry_its_own_valid_signature() -> None:
    records, heads = chain(2, {2})
    good = {**records[0], "rid": "r3", "seq": None, "prev_hash": None, "hash": None}
    good["signature"] = SIGNER.sign_record(good, LEDGER.id)
    forged = {**good, "rid": "r4"}  # a copy under a new id: the signature no longer matches
    unsigned = {**good, "rid": "r5", "signature": None, "key_id": None}
    legacy = {**good, "rid": "legacy-9", "signature": None, "key_id": None}
    findings = [str(f) for f in verify_chain(records, KEYS, LEDGER, heads, [good, forged, unsigned, legacy])]
    assert findings == [
        "unchained record r4: its signature does not match its content for this ledger (edited, written without the "
        "key, or copied from another ledger)",
        "unchained record r5: carries no signature (written without the key)",
        "unchained record legacy-9: is a legacy record, which only the chain may hold (written without the key)",
    ]
