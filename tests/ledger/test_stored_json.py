"""Stored JSON read back (`storage.stored_json.loads`): always `json.loads`'s value, or its error."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_server.storage.stored_json import loads

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON, st.booleans())
def test_what_the_store_writes_reads_back_as_json_loads_reads_it(value: object, sort_keys: bool) -> None:
    text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", [' {"a": 1}', '{"a": 1} \n', "[1, 2]\t", "\ufeff{}"])
def test_whitespace_around_it_is_read_as_json_loads_reads_it(text: str) -> None:
    def answer(read: object) -> object:
        try:
            return read(text)  # type: ignore[operator]
        except ValueError as error:
            return type(error), str(error)

    assert answer(loads) == answer(json.loads)


@pytest.mark.parametrize("text", ["", "nul", '{"a":}', '"abc', "{}x", '{"a": 1} 2', "[1,]"])
def test_what_is_not_json_is_refused_with_json_loads_own_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as caught:
        loads(text)
    assert (caught.value.msg, caught.value.pos) == (expected.value.msg, expected.value.pos)
