"""The canonical rendering is byte-exact: everything hashed, bound or signed depends on it."""

import hashlib
from decimal import Decimal

from policy.canonical import canonical_json, digest


def test_sorted_compact_utf8_and_text_for_other_values() -> None:
    value = {"b": [1, {"z": None, "a": "é"}], "a": Decimal("5.00"), "c": True}
    assert canonical_json(value) == '{"a":"5.00","b":[1,{"a":"é","z":null}],"c":true}'


def test_equal_values_render_alike_whatever_their_key_order() -> None:
    assert canonical_json({"x": 1, "y": {"q": 2, "p": 3}}) == canonical_json({"y": {"p": 3, "q": 2}, "x": 1})


def test_digest_is_sha256_of_the_rendering() -> None:
    value = {"tool": "transfer_funds", "arguments": {"amount": "0.01"}}
    assert digest(value) == hashlib.sha256(b'{"arguments":{"amount":"0.01"},"tool":"transfer_funds"}').hexdigest()
