"""A URL naming what is not a bankgate ledger (another application's database, a file that is not SQLite, a URL
missing a slash) is refused at open in one line naming what is wrong, and nothing is written there."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from mcp_server.storage.database import Database, LedgerNotOpened

RAILS_APP = (
    "CREATE TABLE schema_migrations (version varchar NOT NULL PRIMARY KEY)",
    "CREATE TABLE users (id integer PRIMARY KEY, email varchar)",
    "INSERT INTO schema_migrations (version) VALUES ('20240101120000')",
)
"""Another application's database with a `schema_migrations` table of its own (Rails, dbmate, golang-migrate and
Ecto all name theirs so), not bankgate's."""


def execute(backend: str, url: str, *statements: str) -> None:
    """Run `statements` on the database at `url` as another application does (not through bankgate)."""
    if backend == "sqlite":
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite, lite:
            for statement in statements:
                lite.execute(statement)
        return
    with psycopg.connect(url, autocommit=True) as pg:
        for statement in statements:
            pg.execute(statement)


def contents(backend: str, url: str) -> object:
    """Every table and row of the database at `url`."""
    if backend == "sqlite":
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite:
            return list(lite.iterdump())
    with psycopg.connect(url) as pg:
        tables = pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
        return sorted(tables), pg.execute("SELECT version FROM schema_migrations").fetchall()


@pytest.mark.parametrize("create", [True, False])
def test_another_applications_schema_migrations_is_not_taken_for_a_ledger(
    backend: str, database_url: str, create: bool
) -> None:
    """Its `schema_migrations` is not bankgate's: the refusal says the database holds something else (it was an
    "unexpected OperationalError" quoting `SELECT version, name … FROM schema_migrations` over three lines)."""
    execute(backend, database_url, *RAILS_APP)
    before = contents(backend, database_url)
    says = "holds 2 tables of something else and no bankgate ledger" if create else "holds no bankgate ledger"
    with pytest.raises(LedgerNotOpened, match=says):
        Database.open(database_url, create=create)
    with pytest.raises(LedgerNotOpened, match="holds no bankgate ledger"):
        Database.open(database_url, create=False, migrate=False)
    assert contents(backend, database_url) == before


def test_a_database_holding_only_views_of_something_else_is_not_made_a_ledger(backend: str, database_url: str) -> None:
    """A schema of views (a reporting schema over another's tables, say) is someone else's too: the ledger's tables
    were created beside them, as in an empty database."""
    execute(backend, database_url, "CREATE VIEW monthly_totals AS SELECT 1 AS total")
    with pytest.raises(LedgerNotOpened, match="holds 1 view of something else and no bankgate ledger"):
        Database.open(database_url)
    with pytest.raises(LedgerNotOpened, match="holds no bankgate ledger"):
        Database.open(database_url, create=False)


@pytest.mark.parametrize("create", [True, False])
def test_another_applications_sqlite_file_is_left_as_it_was(tmp_path: Path, create: bool) -> None:
    """Refused, and not one byte of it changed: opening had switched it to WAL journaling (its header rewritten,
    `-wal` and `-shm` files beside it), which an application that does not expect WAL may not read."""
    file = tmp_path / "app.db"
    execute("sqlite", f"sqlite:///{file}", "CREATE TABLE customers (name TEXT)")
    before = file.read_bytes()
    with pytest.raises(LedgerNotOpened, match="something else" if create else "holds no bankgate ledger"):
        Database.open(str(file), create=create)
    assert file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["app.db"]


def test_an_empty_file_is_not_made_a_database_unless_creating(tmp_path: Path) -> None:
    file = tmp_path / "empty.db"
    file.touch()
    with pytest.raises(LedgerNotOpened, match="holds no bankgate ledger"):
        Database.open(str(file), create=False)
    assert file.stat().st_size == 0


@pytest.mark.parametrize("create", [True, False])
def test_a_file_that_is_not_sqlite_is_named_so(tmp_path: Path, create: bool) -> None:
    """One line naming the file (it was "unexpected DatabaseError: file is not a database" and SQLAlchemy's link
    on a second line), and the file left as it was."""
    file = tmp_path / "notes.txt"
    file.write_text("meeting notes, not a database\n" * 20)
    before = file.read_bytes()
    with pytest.raises(
        LedgerNotOpened, match=rf"^{file} is not a SQLite database \(file is not a database\)"
    ) as caught:
        Database.open(f"sqlite:///{file}", create=create)
    assert "\n" not in str(caught.value)
    assert file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_damaged_sqlite_ledger_is_named_so(tmp_path: Path) -> None:
    """A ledger whose first page is overwritten: one line naming the file and SQLite's reason, not "unexpected
    DatabaseError" with the SQL that met it."""
    file = tmp_path / "ledger.db"
    Database.open(str(file)).close()
    damaged = bytearray(file.read_bytes())
    damaged[100:300] = b"\xff" * 200
    file.write_bytes(damaged)
    with pytest.raises(
        LedgerNotOpened, match=rf"^{file} is a damaged SQLite database \(database disk image is malformed\)"
    ):
        Database.open(str(file), create=False)
    assert file.read_bytes() == damaged


@pytest.mark.parametrize("url", ["sqlite:/ledger.db", "sqlite:ledger.db", "postgresql:/bank@db.internal/bank"])
def test_a_url_missing_its_slashes_is_refused_not_taken_for_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """It was a relative path: `admin init` created a `sqlite:` or `postgresql:` folder holding a new ledger."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LedgerNotOpened, match=r"the database URL is malformed.*sqlite:///path"):
        Database.open(url, create=True)
    assert list(tmp_path.iterdir()) == []
