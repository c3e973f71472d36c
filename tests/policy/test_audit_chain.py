"""A signed head vouches for exactly one (seq, hash, time, key) and for every record chained before it."""

import dataclasses
import secrets
from typing import Any

import pytest

from policy.audit import GENESIS, HeadSigner, Keyring, SignedHead, chain_hash, verify_chain

SIGNER = HeadSigner(secrets.token_bytes(32))
KEYS = Keyring([SIGNER.public_key])
AT = "2026-01-01T00:00:00.000000Z"


def chain(count: int, signed: set[int]) -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for seq in range(1, count + 1):
        record: dict[str, Any] = {"seq": seq, "at": AT, "event": "executed", "prev_hash": prev, "amount_minor": seq}
        record["hash"] = prev = chain_hash(prev, record)
        head = SIGNER.sign_head(seq, prev, AT) if seq in signed else None
        record["key_id"], record["signature"] = (head.key_id, head.signature) if head else (None, None)
        records.append(record)
    return records


@pytest.mark.parametrize("field", ["seq", "hash", "at", "key_id"])
def test_a_signed_head_covers_each_of_its_fields(field: str) -> None:
    head = SIGNER.sign_head(7, "ab" * 32, AT)
    assert KEYS.verify_head(head)
    changed = {"seq": 8, "hash": "cd" * 32, "at": AT.replace("01T", "02T"), "key_id": "0" * 16}[field]
    assert not KEYS.verify_head(dataclasses.replace(head, **{field: changed}))


def test_a_head_from_another_key_or_with_a_garbled_signature_is_refused() -> None:
    other = HeadSigner(secrets.token_bytes(32)).sign_head(1, GENESIS, AT)
    assert not KEYS.verify_head(other)
    assert not KEYS.verify_head(dataclasses.replace(SIGNER.sign_head(1, GENESIS, AT), signature="zz"))


def test_a_checkpoint_round_trips_through_json_and_names_a_bad_field() -> None:
    head = SIGNER.sign_head(3, GENESIS, AT)
    assert SignedHead.from_json(head.as_json()) == head
    with pytest.raises(ValueError, match="field 'seq' is missing or not a int"):
        SignedHead.from_json({**head.as_json(), "seq": True})


def test_records_after_the_last_signature_are_named() -> None:
    assert verify_chain(chain(4, {2, 4}), KEYS) == []
    findings = [str(f) for f in verify_chain(chain(4, {2}), KEYS)]
    assert findings == ["no valid signature covers records 3 to 4 (written without the key)"]
