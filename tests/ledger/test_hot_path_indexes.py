"""The gate's hot-path reads use the narrow indexes migration 0017 leaves (each index a gated call writes is a
page it writes): a daily total reads only records that moved money, the expiry sweep only pending approvals."""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import Connection, inspect, text

from mcp_server.audit import writer
from mcp_server.audit.writer import AuditWriter
from mcp_server.storage import gate_store, migrations
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore
from policy.audit import LedgerIdentity
from policy.store import AuditEntry
from tests.ledger.helpers import plan

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z
MIDNIGHT = NOON - 12 * 3600


def record(amount: int, currency: str | None, at: float = NOON, event: str = "executed") -> AuditEntry:
    return AuditEntry(at, event, "alice", "transfer_funds", {}, "v1", amount_minor=amount, currency=currency)


ENTRIES = [
    record(500, "USD"),
    record(0, None, event="requested"),  # a question: left out of the index, adds nothing
    record(100, None),  # before migration 0011: counted in every currency
    record(700, "EUR"),
    record(900, "USD", at=MIDNIGHT - 1),  # yesterday
]


def daily_total_read_by_index(database: Database) -> int:
    """Today's USD total of alice, checking its query reads migration 0017's index."""
    params = {"principal": "alice", "since": "2026-01-01T00:00:00.000000Z", "currency": "USD"}
    found = database.read(lambda conn: plan(conn, gate_store._MOVED_SINCE.sql, params), snapshot=True)
    assert "audit_moved_by_principal" in found, found
    return SqlGateStore(database).transaction(lambda tx: tx.moved_today_minor("alice", MIDNIGHT, "USD"))


def test_a_daily_total_reads_only_the_records_that_moved_money(database: Database) -> None:
    database.run(lambda conn: AuditWriter().append(conn, ENTRIES))
    assert daily_total_read_by_index(database) == 600


def test_a_ledger_upgraded_to_0017_keeps_its_totals_and_loses_the_deadline_index(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records written before the upgrade are indexed by it (a total counts them as before); the index by
    deadline is gone."""
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [m for m in shipped if m.version < 17])
    older = Database.open(database_url)
    # Before 0019 a ledger had no id (its writer named none); what these records' signatures say is not tested here.
    monkeypatch.setattr(writer, "read_identity", lambda conn: LedgerIdentity("0" * 32, 0))
    # Before 0021 a writer stated no idempotency key (the column did not exist).
    monkeypatch.setattr(writer, "RECORD_COLUMNS", tuple(c for c in writer.RECORD_COLUMNS if c != "idempotency_key"))
    monkeypatch.setattr(writer, "_insert", functools.cache(writer._insert.__wrapped__))
    older.run(lambda conn: AuditWriter().append(conn, ENTRIES))
    older.close()
    monkeypatch.undo()  # this release's migrations and writer again
    database = Database.open(database_url)
    try:
        assert daily_total_read_by_index(database) == 600
        indexes = database.read(lambda conn: {index["name"] for index in inspect(conn).get_indexes("approvals")})
        assert "approvals_pending_by_deadline" not in indexes and "approvals_waiting_by_principal" in indexes
    finally:
        database.close()


def test_the_expiry_sweep_reads_only_pending_approvals_and_sorts_none(database: Database) -> None:
    """Sorted by deadline, each batch of a backlog sorted all of it (draining one was quadratic: 15 ms a batch
    at 100,000 overdue on PostgreSQL); read in index order, a batch stops at its limit."""
    params = {"deadline": NOON, "asked": NOON, "limit": 10}
    found = database.read(lambda conn: plan(conn, gate_store._OVERDUE, params), snapshot=True)
    assert "approvals_waiting_by_principal" in found, found
    assert "Sort" not in found and "ORDER BY" not in found, found


def test_the_sweep_finds_void_yeses_from_the_approvers_not_the_pending_approvals(database: Database) -> None:
    """Testing each pending approval for a void desk yes made an idle sweep at 100,000 pending 7x slower on
    PostgreSQL (93 ms -> 633 ms); read from the approvers through their recent decisions, it reads neither the
    pending approvals nor a revoked approver's history whole, only approvals by their primary key."""

    def fill(conn: Connection) -> None:  # statistics like a ledger's: many pending approvals, a few approvers
        conn.execute(
            text(
                "INSERT INTO desk_approvers (name, role, status, user_handle, added_by, added_at) "
                "VALUES (:n, 'approver', :s, :n, 'admin', 0)"
            ),
            [{"n": f"ap{i}", "s": "revoked" if i == 0 else "active"} for i in range(5)],
        )
        conn.execute(
            text(
                "INSERT INTO approvals (ref, binding, pending_binding, tool, arguments_json, principal, "
                "policy_version, question, created_at, expires_at, status, asked_digest) VALUES (:r, :r, :r, "
                "'transfer_funds', '{}', 'alice', 'v1', 'q', :at, :at + 300, 'pending', :r)"
            ),
            [{"r": f"APR-{i:010X}", "at": NOON} for i in range(2000)],
        )
        conn.execute(text("ANALYZE"))

    database.run(fill)
    params = {"since": NOON, "limit": 10}
    found = database.read(lambda conn: plan(conn, gate_store._VOID_YES, params), snapshot=True)
    assert "desk_decisions_by_approver" in found, found
    assert "approvals_waiting_by_principal" not in found and "Sort" not in found, found
