"""Idempotency keys: the first outcome of a keyed request is stored and replayed forever.

A key binds to a digest of the request it first arrived with (`policy.canonical.digest`). The same key with the same
request returns the stored result and moves nothing; the same key with any other request
is an `idempotency_conflict`. Keys and results live in `idempotency_keys` and are
written in the same transaction as the movement they describe, so they are exactly as
durable as the money. The ledger's own keyed operations store nothing when refused
(retrying after the cause is fixed is allowed); a gated tool call stores whatever ended it,
refusals included, since its key names the call (see `policy.gate`).

A writer recalls with `hold=True`: it takes the key's turn first, so a concurrent request
with the same key waits for this transaction and then finds what it stored. Storing a key
therefore never meets a unique violation, and another request under a stored key is an
`idempotency_conflict` found before anything runs, not an error after.
"""

import json
from typing import Any

from sqlalchemy import Connection

from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.storage import stored_json
from mcp_server.storage.locks import Space, take_turn
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import now_text

_SELECT = Statement("SELECT request_digest, result_json FROM idempotency_keys WHERE key = :key")
_INSERT = Statement(
    "INSERT INTO idempotency_keys (key, request_digest, result_json, created_at)"
    " VALUES (:key, :digest, :result, :created_at)"
)


def recall(conn: Connection, key: str, digest: str, *, hold: bool = False) -> dict[str, Any] | None:
    """The stored result for `key`, `None` if unused; a different request is a conflict.

    `hold`: take the key's turn first (in a write transaction that may store the key).
    """
    if hold:
        take_turn(conn, Space.IDEMPOTENCY_KEY, key)
    row = _SELECT.one(conn, {"key": key})
    if row is None:
        return None
    stored_digest, result_json = row
    if stored_digest != digest:
        raise LedgerError(
            ErrorCode.IDEMPOTENCY_CONFLICT,
            "This idempotency key was already used for a different request; use a new key.",
            field="idempotency_key",
        )
    result: dict[str, Any] = stored_json.loads(result_json)
    return result


def remember(conn: Connection, key: str, digest: str, result: dict[str, Any]) -> None:
    """Store `result` as the outcome of `key`; commits (or not) with the caller's transaction.

    The caller recalled `key` with `hold=True` in this transaction and found it unused.
    """
    _INSERT.send(
        conn,
        {"key": key, "digest": digest, "result": json.dumps(result, sort_keys=True), "created_at": now_text()},
    )
