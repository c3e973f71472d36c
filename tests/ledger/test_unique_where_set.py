"""Migration 0018: a unique column indexes only the rows that set it, and holds every rule it held.

Each index entry a gated call writes is a page it writes: a settled approval (pending_binding NULL) and a movement
without a key or an approval wrote one each before, and the unused `state_digest` one a question. On SQLite the
migration rebuilds two tables inside its transaction, with foreign keys on: the rows, their order and every
CHECK, foreign key and index must come through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import Inspector
from sqlalchemy.exc import IntegrityError

from mcp_server.storage import gate_store, migrations
from mcp_server.storage.database import Database, LedgerNotOpened
from tests.ledger.helpers import plan

APPROVAL = (
    "INSERT INTO approvals (ref, binding, pending_binding, tool, arguments_json, principal, policy_version, question, "
    "created_at, expires_at, status, decided_at, outcome_json, asked_digest, idempotency_key) VALUES "
    "(:ref, :binding, :pending, 'transfer_funds', '{}', 'alice', 'v1', 'Move?', 1.5, 301.5, :status, :decided, "
    ":outcome, :asked, :key)"
)
MOVEMENT = (
    "INSERT INTO transactions (id, kind, memo, created_at, idempotency_key, approval_ref) "
    "VALUES (:id, 'transfer', NULL, '2026-01-01T00:00:00.000000Z', :key, :ref)"
)
ENTRY = "INSERT INTO entries (id, transaction_id, account_id, amount_minor) VALUES (:id, :tx, :account, :amount)"
ACCOUNT = (
    "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at) "
    "VALUES (:id, 'customer', 'Alice', 'USD', 'open', 0, '2026-01-01T00:00:00.000000Z')"
)
DESK = [
    "INSERT INTO desk_approvers (name, role, status, user_handle, added_by, added_at) "
    "VALUES ('erin', 'approver', 'active', 'h-erin', 'local', 1.0)",
    "INSERT INTO desk_credentials (credential_id, approver, public_key, sign_count, rp_id, created_at) "
    "VALUES ('cred-1', 'erin', 'pk', 0, 'localhost', 1.0)",
    "INSERT INTO desk_decisions (approval_ref, approver, verdict, note, decided_at, binding, question_sha256, nonce, "
    "nonce_expires_at, credential_id, rp_id, origin, assertion_json) VALUES ('APR-2', 'erin', 'approved', NULL, 2.0, "
    "'b-2', 'q', 'n', 3, 'cred-1', 'localhost', 'https://localhost', '{}')",
]


def run(conn: Connection, sql: str, **params: Any) -> None:
    conn.execute(text(sql), params)


def approval(conn: Connection, ref: str, binding: str, status: str, asked: str | None, key: str | None = None) -> None:
    """An approval row: pending under its binding, or settled (pending_binding NULL)."""
    pending, decided, outcome = (binding, None, None) if status == "pending" else (None, 2.5, "{}")
    run(
        conn,
        APPROVAL,
        ref=ref,
        binding=binding,
        pending=pending,
        status=status,
        decided=decided,
        outcome=outcome,
        asked=asked,
        key=key,
    )


def written_by_0017(conn: Connection) -> None:
    """What a ledger at 0017 holds: approvals pending and settled (one a desk decided, one with a state digest of
    a release before 0006, one with a BLOB on SQLite), movements with and without a key, and their entries."""
    approval(conn, "APR-1", "b-1", "pending", "d-1", key="k-1")
    approval(conn, "APR-2", "b-2", "executed", "d-2")
    approval(conn, "APR-0", "b-0", "rejected", None)
    run(conn, "UPDATE approvals SET state_digest = 'round-0' WHERE ref = 'APR-0'")
    if conn.dialect.name == "sqlite":  # a JSON column a tool edited into a BLOB (read as before): kept a BLOB
        run(conn, "UPDATE approvals SET outcome_json = CAST(outcome_json AS BLOB) WHERE ref = 'APR-2'")
    for statement in DESK:
        run(conn, statement)
    for account in ("ACC-001", "ACC-002"):
        run(conn, ACCOUNT, id=account)
    for tx, key, ref in (("T-2", None, "APR-2"), ("T-1", "k-9", None), ("T-3", None, None)):
        run(conn, MOVEMENT, id=tx, key=key, ref=ref)
        run(conn, ENTRY, id=f"{tx}-d", tx=tx, account="ACC-001", amount=-5)
        run(conn, ENTRY, id=f"{tx}-c", tx=tx, account="ACC-002", amount=5)


def rows(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the rebuilt tables and of those pointing at them, in the order a plain read returns them."""
    approvals = (
        "SELECT ref, binding, pending_binding, tool, arguments_json, principal, policy_version, question, created_at, "
        "expires_at, status, decided_at, note, outcome_json, bound_json, asked_digest, channel, idempotency_key "
        "FROM approvals"
    )
    order = " ORDER BY rowid" if conn.dialect.name == "sqlite" else " ORDER BY 1"
    return {
        "approvals": [tuple(r) for r in conn.execute(text(approvals + order))],
        "transactions": [tuple(r) for r in conn.execute(text("SELECT * FROM transactions" + order))],
        "entries": [tuple(r) for r in conn.execute(text("SELECT * FROM entries ORDER BY id"))],
        "desk_decisions": [tuple(r) for r in conn.execute(text("SELECT approval_ref, approver FROM desk_decisions"))],
    }


@pytest.fixture
def upgraded(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, dict[str, Any]]]:
    """A ledger written at 0017, then opened by this build; with its rows as 0017 left them."""
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [m for m in shipped if m.version < 18])
    older = Database.open(database_url)
    older.run(written_by_0017)
    before = older.run(rows)
    older.close()
    monkeypatch.setattr(migrations, "available", lambda: shipped)
    database = Database.open(database_url)
    try:
        yield database, before
    finally:
        database.close()


def unique_indexes(url: str, table: str) -> dict[str, str]:
    """Each unique index of `table` by its column, with its WHERE clause ('' for none), read on a new connection."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            found = inspect(conn).get_indexes(table)
            dialect = conn.dialect.name
    finally:
        engine.dispose()
    return {
        str(index["column_names"][0]): str(index.get("dialect_options", {}).get(f"{dialect}_where", ""))
        for index in found
        if index["unique"]
    }


def test_a_unique_column_indexes_only_the_rows_that_set_it(database: Database, database_url: str) -> None:
    """Pages: a settled approval leaves pending_binding's index, a movement without a key or approval never
    enters those indexes, and no question writes a state_digest entry (the column is gone)."""
    approvals, movements = unique_indexes(database_url, "approvals"), unique_indexes(database_url, "transactions")
    assert "pending_binding IS NOT NULL" in approvals["pending_binding"], approvals
    assert approvals["asked_digest"] == "", approvals  # set by every approval since 0006: all of them
    assert "state_digest" not in approvals
    assert "idempotency_key IS NOT NULL" in movements["idempotency_key"], movements
    assert "approval_ref IS NOT NULL" in movements["approval_ref"], movements
    columns = database.read(lambda conn: {c["name"] for c in inspect(conn).get_columns("approvals")})
    assert "state_digest" not in columns and "pending_binding" in columns


def schema(url: str) -> dict[str, dict[str, Any]]:
    """Every table's columns (type, NULL, DEFAULT), keys, foreign keys, CHECKs, unique constraints and the other
    indexes (with their WHERE), as the database reports them on a new connection."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        found = inspect(engine)
        return {table: _table(found, table) for table in found.get_table_names()}
    finally:
        engine.dispose()


def _table(found: Inspector, table: str) -> dict[str, Any]:
    unique = found.get_unique_constraints(table)
    return {
        "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in found.get_columns(table)],
        "key": found.get_pk_constraint(table)["constrained_columns"],
        "references": sorted(
            (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
            for f in found.get_foreign_keys(table)
        ),
        "checks": sorted(" ".join(c["sqltext"].split()) for c in found.get_check_constraints(table)),
        "unique": sorted(tuple(u["column_names"]) for u in unique),
        "indexes": {  # PostgreSQL lists a unique constraint's own index too
            str(i["name"]): (
                tuple(i["column_names"]),
                bool(i["unique"]),
                " ".join(str(v) for k, v in i.get("dialect_options", {}).items() if k.endswith("_where")),
            )
            for i in found.get_indexes(table)
            if i["name"] not in {u["name"] for u in unique}
        },
    }


def test_every_table_is_0017s_but_for_the_unique_columns_and_state_digest(
    make_database_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else of any table changes: a column's type, NULL or DEFAULT, a CHECK, a foreign key either way (entries
    and desk_decisions point at the rebuilt tables), an index: 0017's schema with the intended change is 0018's."""
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [m for m in shipped if m.version < 18])
    older_url, url = make_database_url(), make_database_url()
    Database.open(older_url).close()
    monkeypatch.setattr(migrations, "available", lambda: [m for m in shipped if m.version <= 18])
    Database.open(url).close()
    expected, found = schema(older_url), schema(url)
    approvals, movements = expected["approvals"], expected["transactions"]
    approvals["columns"] = [column for column in approvals["columns"] if column[0] != "state_digest"]
    approvals["unique"].remove(("pending_binding",))
    approvals["unique"].remove(("state_digest",))
    movements["unique"].remove(("idempotency_key",))
    set_only = {
        ("approvals", "approvals_one_pending", "pending_binding"),
        ("transactions", "transactions_by_idempotency_key", "idempotency_key"),
        ("transactions", "transactions_by_approval", "approval_ref"),
    }
    for table, index, column in set_only:
        expected[table]["indexes"][index] = ((column,), True, "")
        where = found[table]["indexes"][index][2]
        assert where.replace("(", "").replace(")", "") == f"{column} IS NOT NULL", (index, where)
        found[table]["indexes"][index] = ((column,), True, "")
    assert found == expected


def test_the_upgrade_keeps_every_row_in_its_order(upgraded: tuple[Database, dict[str, Any]]) -> None:
    database, before = upgraded
    assert database.read(rows) == before
    if database.dialect == "sqlite":
        assert database.read(lambda conn: conn.exec_driver_sql("PRAGMA foreign_key_check").all()) == []


REFUSED: list[tuple[str, Callable[[Connection], None]]] = [
    ("a second pending question for one binding", lambda c: approval(c, "APR-9", "b-1", "pending", "d-9")),
    ("a pending question without its binding", lambda c: run(c, "UPDATE approvals SET status = 'pending'")),
    ("an unknown status", lambda c: run(c, "UPDATE approvals SET status = 'lost' WHERE ref = 'APR-0'")),
    ("a question asked twice", lambda c: run(c, "UPDATE approvals SET asked_digest = 'd-1' WHERE ref = 'APR-2'")),
    ("a second movement for one key", lambda c: run(c, MOVEMENT, id="T-9", key="k-9", ref=None)),
    ("a second movement for one approval", lambda c: run(c, MOVEMENT, id="T-9", key=None, ref="APR-2")),
    ("an unknown kind of movement", lambda c: run(c, "UPDATE transactions SET kind = 'gift' WHERE id = 'T-1'")),
    ("an entry of no movement", lambda c: run(c, ENTRY, id="E-9", tx="T-9", account="ACC-001", amount=1)),
    ("a decision on no approval", lambda c: run(c, "UPDATE desk_decisions SET approval_ref = 'APR-9'")),
    ("a movement deleted under its entries", lambda c: run(c, "DELETE FROM transactions WHERE id = 'T-1'")),
    ("an approval deleted under its decision", lambda c: run(c, "DELETE FROM approvals WHERE ref = 'APR-2'")),
]


@pytest.mark.parametrize(("rule", "breaking"), REFUSED, ids=[rule for rule, _ in REFUSED])
def test_the_upgraded_tables_refuse_what_they_refused(
    upgraded: tuple[Database, dict[str, Any]], rule: str, breaking: Callable[[Connection], None]
) -> None:
    database, before = upgraded
    with pytest.raises(IntegrityError):
        database.run(breaking)
    assert database.read(rows) == before, rule


def test_rows_without_a_key_or_an_approval_never_collide(upgraded: tuple[Database, dict[str, Any]]) -> None:
    database, _ = upgraded

    def unkeyed_and_settled(conn: Connection) -> None:
        run(conn, MOVEMENT, id="T-8", key=None, ref=None)
        approval(conn, "APR-8", "b-1", "expired", "d-8")  # the binding of APR-1, still pending

    database.run(unkeyed_and_settled)


def test_each_database_applies_its_own_file_and_records_its_checksum(database: Database) -> None:
    shipped = {m.version: m for m in migrations.available()}[18]
    mine = shipped.on(database.dialect)
    other = shipped.on("postgresql" if database.dialect == "sqlite" else "sqlite")
    assert mine.name == other.name == "unique_only_where_set" and mine.checksum != other.checksum
    recorded = database.read(
        lambda conn: conn.execute(text("SELECT checksum FROM schema_migrations WHERE version = 18")).scalar_one()
    )
    assert recorded == mine.checksum


def test_a_migration_shipped_for_one_database_only_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each database must find its own file: one missing would leave its ledgers a shape the code does not know."""
    with pytest.raises(RuntimeError, match="migration 0042 must ship one portable file, or one for each"):
        migrations._migration(42, {"sqlite": ("halves", "SELECT 1")})
    with pytest.raises(RuntimeError, match="under one name"):
        migrations._migration(42, {"sqlite": ("one", "SELECT 1"), "postgresql": ("other", "SELECT 1")})
    with pytest.raises(RuntimeError, match="one portable file"):
        migrations._migration(42, {None: ("both", "SELECT 1"), "sqlite": ("both", "SELECT 1")})


def test_a_database_file_edited_after_it_was_applied_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Database.open(database_url).close()
    shipped = migrations.available()
    edited = [
        migrations.Migration(m.version, m.name, m.sql, tuple((d, sql + ";\nSELECT 1") for d, sql in m.by_dialect))
        if m.version == 18
        else m
        for m in shipped
    ]
    monkeypatch.setattr(migrations, "available", lambda: edited)
    with pytest.raises(LedgerNotOpened, match="0018_unique_only_where_set as statements that differ"):
        Database.open(database_url)


def test_a_keyed_question_finds_its_binding_pending_through_the_narrow_index(database: Database) -> None:
    """`binding = :v` implies the index's `IS NOT NULL`, so both databases still read the pending one by index."""
    found = database.read(lambda conn: plan(conn, gate_store._BY_PENDING_BINDING.sql, {"v": "b-1"}), snapshot=True)
    assert "approvals_one_pending" in found, found
