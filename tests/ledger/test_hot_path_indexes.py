"""The gate's hot-path reads use the narrow indexes migration 0017 leaves (each index a gated call writes is a
page it writes): a daily total reads only records that moved money, the expiry sweep only pending approvals."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, text

from mcp_server.audit.writer import AuditWriter
from mcp_server.storage import gate_store
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore
from policy.store import AuditEntry

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z
MIDNIGHT = NOON - 12 * 3600


def plan(conn: Connection, sql: str, params: Mapping[str, object]) -> str:
    """The plan the database would run `sql` with; PostgreSQL told to read a table whole only as a last resort
    (its tables here are tiny, where reading them whole is cheapest)."""
    if conn.dialect.name == "sqlite":
        return "\n".join(str(row[-1]) for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params))
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(str(row[0]) for row in conn.execute(text("EXPLAIN " + sql), params))


def record(amount: int, currency: str | None, at: float = NOON, event: str = "executed") -> AuditEntry:
    return AuditEntry(at, event, "alice", "transfer_funds", {}, "v1", amount_minor=amount, currency=currency)


def test_a_daily_total_reads_only_the_records_that_moved_money(database: Database) -> None:
    entries = [
        record(500, "USD"),
        record(0, None, event="requested"),  # a question: left out of the index, adds nothing
        record(100, None),  # before migration 0011: counted in every currency
        record(700, "EUR"),
        record(900, "USD", at=MIDNIGHT - 1),  # yesterday
    ]
    database.run(lambda conn: AuditWriter().append(conn, entries))
    store = SqlGateStore(database)
    assert store.transaction(lambda tx: tx.moved_today_minor("alice", MIDNIGHT, "USD")) == 600
    params = {"principal": "alice", "since": "2026-01-01T00:00:00.000000Z", "currency": "USD"}
    assert "audit_moved_by_principal" in database.read(lambda conn: plan(conn, gate_store._MOVED_SINCE.sql, params))


def test_the_expiry_sweep_reads_only_pending_approvals(database: Database) -> None:
    params = {"deadline": NOON, "asked": NOON, "limit": 10}
    found = database.read(lambda conn: plan(conn, gate_store._OVERDUE, params))
    assert "approvals_waiting_by_principal" in found, found
