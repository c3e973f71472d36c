"""Stored JSON read back (`storage.stored_json.loads`): always `json.loads`'s value, or its error."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.storage.stored_json import loads
from policy.store import Approval

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


@pytest.mark.parametrize("stored", [b'{"a": [1, "\xc3\xa9"]}', b"[1, 2]", '{"a":1}'.encode("utf-16")])
def test_json_stored_as_bytes_reads_as_json_loads_reads_it(stored: bytes) -> None:
    """SQLite hands back a BLOB (a column edited to one) as bytes, which `json.loads` reads."""
    assert loads(bytes(stored)) == json.loads(stored)


def test_an_approval_whose_json_columns_were_made_blobs_reads_back_as_stored(database: Database) -> None:
    """A SQLite column edited to a BLOB of the same JSON (`CAST(... AS BLOB)`, a tool that writes blobs) still
    reads: the approval can be continued or ended, as before `stored_json`, not refused as unreadable."""
    if database.dialect != "sqlite":
        pytest.skip("a PostgreSQL text column holds text only")
    store = SqlGateStore(database)
    asked = Approval(
        ref="APR-1",
        binding="binding-1",
        tool="transfer_funds",
        arguments={"amount": "1", "memo": "é"},
        principal="local",
        policy_version="v1",
        question="question APR-1",
        created_at=0.0,
        expires_at=300.0,
        asked_digest="asked APR-1",
        bound={"amount": "$1.00 (USD)"},
    )
    store.transaction(lambda tx: tx.create_approval(asked, shared=False))
    blobs = text(
        "UPDATE approvals SET arguments_json = CAST(arguments_json AS BLOB), bound_json = CAST(bound_json AS BLOB)"
    )
    database.run(lambda conn: conn.execute(blobs))
    read = store.transaction(lambda tx: tx.lock_approval("APR-1"))
    assert read is not None
    assert (read.arguments, read.bound) == (asked.arguments, asked.bound)
