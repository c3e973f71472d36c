"""The canonical rendering is byte-exact: everything hashed, bound or signed depends on it."""

import hashlib
import json
from decimal import Decimal

import pytest
from pytest import MonkeyPatch

from policy import canonical
from policy.canonical import canonical_json, digest


def test_sorted_compact_utf8_and_text_for_other_values() -> None:
    value = {"b": [1, {"z": None, "a": "é"}], "a": Decimal("5.00"), "c": True}
    assert canonical_json(value) == '{"a":"5.00","b":[1,{"a":"é","z":null}],"c":true}'


def test_equal_values_render_alike_whatever_their_key_order() -> None:
    assert canonical_json({"x": 1, "y": {"q": 2, "p": 3}}) == canonical_json({"y": {"p": 3, "q": 2}, "x": 1})


def test_digest_is_sha256_of_the_rendering() -> None:
    value = {"tool": "transfer_funds", "arguments": {"amount": "0.01"}}
    assert digest(value) == hashlib.sha256(b'{"arguments":{"amount":"0.01"},"tool":"transfer_funds"}').hexdigest()


@pytest.mark.parametrize("accelerated", [True, False])
def test_renders_as_the_json_module_does_with_the_same_options(accelerated: bool, monkeypatch: MonkeyPatch) -> None:
    """The prebuilt C encoder (or, without it, the pure-Python one) and `json.dumps` agree, floats, escapes, bare
    values and other types included."""
    if not accelerated:
        monkeypatch.setattr(canonical, "_RENDER", None)
    values: list[object] = [
        {"b": [1.5, 1e100, -0.0, {"z": None}], "a": 'q"\\\n\u2028é\x00', "n": -(2**70), "t": (1, "x")},
        "alone",
        12,
        None,
        [],
        {},
        {"d": Decimal("0.10"), "set": "ok"},
    ]
    for value in values:
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        assert canonical_json(value) == expected
