"""Migrations: every version applied once, recorded, and safe under concurrent opens."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.reflection import Inspector

from mcp_server.storage import migrations
from mcp_server.storage.database import AccessDenied, Database, LedgerNotOpened
from tests.ledger.helpers import held_elsewhere
from tests.support import postgres_schema


def recorded(db: Database) -> list[tuple[int, str]]:
    return db.read(
        lambda conn: [(int(v), str(n)) for v, n in conn.execute(text("SELECT version, name FROM schema_migrations"))]
    )


def test_fresh_database_gets_every_version(database: Database) -> None:
    shipped = [(m.version, m.name) for m in migrations.available()]
    assert shipped[0] == (1, "ledger")
    assert sorted(recorded(database)) == shipped
    applied_at = database.read(
        lambda conn: conn.execute(text("SELECT applied_at FROM schema_migrations WHERE version = 1")).scalar_one()
    )
    assert applied_at.endswith("Z") and len(applied_at) == len("2024-01-01T00:00:00.000000Z")


def test_reopening_applies_nothing(database_url: str) -> None:
    Database.open(database_url).close()
    db = Database.open(database_url)
    try:
        assert migrations.apply_pending(db) == []
        assert len(recorded(db)) == len(migrations.available())
    finally:
        db.close()


def test_concurrent_opens_apply_each_version_once(database_url: str) -> None:
    opened: list[Database] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait()
        try:
            opened.append(Database.open(database_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(recorded(opened[0])) == [(m.version, m.name) for m in migrations.available()]
    for db in opened:
        db.close()


def test_statements_split_on_semicolons_and_drop_comments() -> None:
    migration = migrations.Migration(
        9, "demo", "-- a; comment\nCREATE TABLE a (x INT);\n\n  -- b\nCREATE INDEX i ON a (x);\n"
    )
    assert migration.statements() == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x)"]


def test_a_migration_the_schema_already_has_is_named_not_retried(database_url: str) -> None:
    """A ledger whose `schema_migrations` lost a row (edited, or restored in part) runs that migration again at
    open; it fails and changes nothing, and the refusal names the migration and why, instead of calling the
    database unavailable (an operator told "try again shortly" waits for nothing)."""
    db = Database.open(database_url)
    db.run(lambda conn: conn.execute(text("DELETE FROM schema_migrations WHERE version = 12")))
    db.close()
    with pytest.raises(LedgerNotOpened, match=r"migration 0012_approval_channel could not be applied: .*channel"):
        Database.open(database_url)
    with pytest.raises(LedgerNotOpened, match=r"schema_migrations"):
        Database.open(database_url, create=False)


def test_a_ledger_migrated_by_a_newer_build_is_refused(database_url: str) -> None:
    """A server older than the ledger's schema (a replica not yet upgraded) would run on tables it does not know
    the shape of; it is refused at open, naming the version it lacks, and changes nothing."""
    db = Database.open(database_url)
    db.run(
        lambda conn: conn.execute(
            text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', 'x')")
        )
    )
    db.close()
    with pytest.raises(LedgerNotOpened, match=r"9999_from_the_future.*does not ship: it was migrated by a newer"):
        Database.open(database_url)


def test_a_ledger_whose_migration_differs_from_this_builds_is_refused(database_url: str) -> None:
    """Two builds that each shipped a different migration under one number: the ledger's is not this build's,
    whatever the number says; it is refused at open, naming both."""
    db = Database.open(database_url)
    db.run(lambda conn: conn.execute(text("UPDATE schema_migrations SET name = 'elsewhere' WHERE version = 12")))
    db.close()
    with pytest.raises(LedgerNotOpened, match=r"0012_elsewhere.*0012_approval_channel"):
        Database.open(database_url)


def test_opening_a_migrated_ledger_takes_no_write_lock(backend: str, database_url: str) -> None:
    """A ledger with nothing to migrate is opened with reads only: a server or a read-only command starts while
    another process holds the write lock (SQLite) or the migrations' lock (PostgreSQL), instead of waiting for
    it and failing as 'too busy'."""
    Database.open(database_url).close()
    holder = Database.open(database_url)

    def take(conn: Connection) -> None:
        if backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrations._ADVISORY_LOCK_KEY})
        else:
            conn.execute(text("UPDATE accounts SET owner = owner"))

    try:
        with held_elsewhere(holder, take):
            started = time.monotonic()
            Database.open(database_url).close()
            assert time.monotonic() - started < 2
    finally:
        holder.close()


def test_a_ledger_another_server_creates_meanwhile_is_not_taken_for_another_applications(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers starting on one empty database: the other one's first migration (the ledger's tables and
    `schema_migrations` together) may commit between this one looking for `schema_migrations` and counting
    the tables. Those tables are the ledger's: this server opens it, never refusing it as something else's."""
    look_for = Inspector.has_table

    def others_commit_after_the_look(inspector: Inspector, *args: Any, **kwargs: Any) -> bool:
        found = look_for(inspector, *args, **kwargs)
        monkeypatch.setattr(Inspector, "has_table", look_for)  # the other server looks undisturbed
        other = threading.Thread(target=lambda: Database.open(database_url).close())
        other.start()
        other.join()
        return found

    monkeypatch.setattr(Inspector, "has_table", others_commit_after_the_look)
    db = Database.open(database_url)
    try:
        assert sorted(recorded(db)) == [(m.version, m.name) for m in migrations.available()]
    finally:
        db.close()


def edited(version: int, edit: Callable[[str], str]) -> list[migrations.Migration]:
    """The shipped migrations, with `version`'s file changed by `edit`."""
    return [replace(m, sql=edit(m.sql)) if m.version == version else m for m in migrations.available()]


def test_a_migration_edited_after_it_was_applied_is_refused(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build whose migration file differs from the one the ledger applied under the same number and name (edited
    after release) expects tables of another shape: it is refused at open, naming the migration, and a command
    that writes nothing refuses it too. An edit to comments or layout changes no table and is accepted."""
    Database.open(database_url).close()
    changed = edited(15, lambda sql: sql.replace("expires_at", "used_at"))
    relaid = edited(15, lambda sql: "-- reworded\n" + sql.replace(" ON ", "\n    ON  "))
    monkeypatch.setattr(migrations, "available", lambda: changed)
    with pytest.raises(
        LedgerNotOpened, match=r"0015_desk_challenges_by_subject as statements that differ from the one this bankgate"
    ):
        Database.open(database_url)
    with pytest.raises(LedgerNotOpened, match=r"0015_desk_challenges_by_subject.*edited after it was applied"):
        Database.open(database_url, create=False, migrate=False)
    monkeypatch.setattr(migrations, "available", lambda: relaid)
    Database.open(database_url).close()


def test_a_checksum_counts_each_character_of_a_string_literal_and_no_comment() -> None:
    """What a string literal holds is data the migration writes: an edit inside one, whitespace too, is an edit.
    A comment, at a line's end too, and the layout and line endings (a Windows checkout's CRLF) are not."""
    shipped = migrations.Migration(99, "notes", "UPDATE accounts\nSET note = 'paid  in full' -- why\nWHERE id = 'a b'")

    def summed(edit: Callable[[str], str]) -> str:
        return replace(shipped, sql=edit(shipped.sql)).checksum

    assert summed(lambda sql: sql.replace("'paid  in full'", "'paid in full'")) != shipped.checksum
    assert summed(lambda sql: sql.replace("'a b'", "'a\tb'")) != shipped.checksum
    assert summed(lambda sql: sql.replace("-- why", "-- reworded: why")) == shipped.checksum
    assert summed(lambda sql: sql.replace("\n", "\r\n")) == shipped.checksum
    assert (
        summed(lambda sql: "-- 0099\n" + sql.replace("\nSET", "\n    SET").replace(" = ", "\t=  ")) == shipped.checksum
    )


def test_a_ledger_migrated_before_checksums_is_checked_from_its_next_open(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger whose `schema_migrations` predates checksums has them recorded, as shipped, by the first open of
    a build that keeps them (a command that writes nothing leaves it as it is); from then on an edit is refused."""
    db = Database.open(database_url)
    db.run(lambda conn: conn.execute(text("ALTER TABLE schema_migrations DROP COLUMN checksum")))
    db.close()
    reader = Database.open(database_url, create=False, migrate=False)
    kept = reader.read(lambda conn: [column["name"] for column in inspect(conn).get_columns("schema_migrations")])
    reader.close()
    assert "checksum" not in kept
    Database.open(database_url).close()
    changed = edited(3, lambda sql: sql.replace("'viewer'", "'reader'"))
    monkeypatch.setattr(migrations, "available", lambda: changed)
    with pytest.raises(LedgerNotOpened, match=r"0003_entitlements.*edited after it was applied"):
        Database.open(database_url)


@pytest.mark.postgres
def test_a_role_that_may_write_rows_but_not_change_tables_is_told_what_the_upgrade_needs() -> None:
    """An application's usual role (rows read and written, the tables another role's) meeting a pending migration:
    the refusal names the migration and that it needs the tables' owner, and nothing is changed. It said "Writing
    needs … a role with write privileges on its tables", which that role has."""
    with postgres_schema("bankgate_app_role") as url:
        shipped = migrations.available()
        with pytest.MonkeyPatch.context() as older:
            older.setattr(migrations, "available", lambda: [m for m in shipped if m.version < 17])
            Database.open(url).close()
        role = f"app_{uuid.uuid4().hex[:12]}"
        admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            assert schema is not None
            conn.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA "{schema[0]}" TO "{role}"')
            conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema[0]}" TO "{role}"')
            try:
                with pytest.raises(AccessDenied) as caught:
                    Database.open(make_url(url).set(username=role).render_as_string(hide_password=False))
                versions = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            finally:
                conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
    assert versions == (16,)
    message = caught.value.message
    assert "nothing was changed" in message and "write privileges" not in message
    assert "migration 0017_hot_path_indexes" in message and "the role that owns" in message
