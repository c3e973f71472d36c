"""Versioned schema migrations: `migrations/NNNN_name.sql` applied in order at open.

Each pending file runs in its own write transaction together with its row in
`schema_migrations` (version, name, applied_at), so a migration is either fully applied
and recorded or not at all, and re-opening applies nothing. Two processes opening the same
database at once are serialized: SQLite by the `BEGIN IMMEDIATE` every write transaction
takes, PostgreSQL by a transaction-scoped advisory lock; whoever waits re-reads what is
applied before acting. A ledger with nothing pending is only read, so opening it waits for no
writer. A ledger that records a migration this build does not ship (migrated by a newer build)
is refused at open: an older replica must not run on tables of a shape it does not know. So is one
that applied a migration whose statements differ from this build's file of that number and name (the
file edited after release): each row keeps a checksum of the statements it applied (`Migration.checksum`;
comments and layout do not count). Rows recorded before checksums were kept get this build's, as shipped,
at its first open that may write (trust on first use: an edit made before that cannot be seen).

SQL files must be portable between SQLite and PostgreSQL, except a migration each database
must make its own way (SQLite changes a column's constraints only by rebuilding its table), which
ships one file per database instead: `NNNN_name.sqlite.sql` and `NNNN_name.postgresql.sql`; a
ledger records the checksum of the one it applied. Statements are separated by `;` and may not
contain a `;` themselves (no string literals with semicolons, no trigger bodies); lines starting
with `--` are comments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.exc import DBAPIError

from mcp_server.timestamps import now_text

if TYPE_CHECKING:
    from mcp_server.storage.database import Database

T = TypeVar("T")
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql")
_DIALECTS = frozenset({"sqlite", "postgresql"})
# Arbitrary constant shared by every bankgate process: "bankgate" as a 64-bit integer.
_ADVISORY_LOCK_KEY = int.from_bytes(b"bankgate", "big") >> 1
_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL, checksum TEXT)"
)
_RECORD_COLUMNS = frozenset({"version", "name", "applied_at"})
"""The columns of every bankgate build's `schema_migrations` (`checksum` came later)."""
_LAYOUT = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|(?:\s|--[^\n]*)+""")
"""A string literal or quoted name (group 1, kept whole), else a run of whitespace and comments (one space)."""
_ADD_CHECKSUM = "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT"
_FILL_CHECKSUM = text(
    "UPDATE schema_migrations SET checksum = :checksum WHERE version = :v AND name = :n AND checksum IS NULL"
)


@dataclass(frozen=True)
class Migration:
    """One version's statements: `sql`, or (shipped one file per database) `by_dialect`'s, which `on` picks."""

    version: int
    name: str
    sql: str
    by_dialect: tuple[tuple[str, str], ...] = ()

    def on(self, dialect: str) -> Migration:
        """This migration as `dialect` applies it."""
        return replace(self, sql=dict(self.by_dialect)[dialect], by_dialect=()) if self.by_dialect else self

    def statements(self) -> list[str]:
        """The file's statements, comments removed, split on `;`."""
        code = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [statement.strip() for statement in code.split(";") if statement.strip()]

    @property
    def checksum(self) -> str:
        """SHA-256 of the statements without comments and with their whitespace collapsed, except inside string
        literals and quoted names (data the migration writes): what the file does to the tables."""
        return hashlib.sha256(
            ";\n".join(_LAYOUT.sub(_collapsed, s).strip() for s in self.statements()).encode()
        ).hexdigest()


def _collapsed(match: re.Match[str]) -> str:
    return match.group(1) or " "


@dataclass(frozen=True)
class Recorded:
    """A row of `schema_migrations`: the migration's name, and the checksum of what it applied (None: recorded
    by a build that kept none)."""

    name: str
    checksum: str | None


def available() -> list[Migration]:
    """All migrations shipped in the package, by ascending version (`Migration.on` picks a database's file)."""
    files: dict[int, dict[str | None, tuple[str, str]]] = {}
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_lower_snake[.sqlite|.postgresql].sql")
        version, name, dialect = int(match.group(1)), match.group(2), match.group(3)
        files.setdefault(version, {})[dialect] = (name, entry.read_text(encoding="utf-8"))
    return [_migration(version, files[version]) for version in sorted(files)]


def _migration(version: int, files: dict[str | None, tuple[str, str]]) -> Migration:
    """One version's files: a portable one, or one for each database under one name."""
    names = {name for name, _ in files.values()}
    if len(names) > 1 or (set(files) != {None} and set(files) != _DIALECTS):
        raise RuntimeError(
            f"migration {version:04d} must ship one portable file, or one for each of {sorted(_DIALECTS)} under one "
            f"name: found {sorted(str(d) for d in files)} named {sorted(names)}"
        )
    if None in files:
        return Migration(version, *files[None])
    return Migration(version, names.pop(), "", tuple(sorted((str(d), sql) for d, (_, sql) in files.items())))


def applied(conn: Connection) -> dict[int, Recorded]:
    """Versions recorded in `schema_migrations`, with their names and checksums."""
    checksum = "checksum" if _keeps_checksums(conn) else "NULL"
    rows = conn.execute(text(f"SELECT version, name, {checksum} FROM schema_migrations ORDER BY version"))
    return {int(version): Recorded(str(name), summed) for version, name, summed in rows}


def apply_pending(database: Database) -> list[int]:
    """Apply every migration not yet recorded, one transaction each; return the versions applied. A migration
    whose statement the database refuses (its schema already has what `schema_migrations` says is missing) is
    rolled back whole and named (LedgerNotOpened), never reported as the database being unavailable. A ledger
    that records a migration this build does not ship is refused before anything is applied (`_check_known`).
    A ledger with nothing pending is only read: opening it waits for no writer (SQLite's write lock, another
    process's migrations). One that meets contention (a deadlock with a reader of the tables it changes) is run
    again, as any transaction; a lost connection or a permission refused is reported as such."""
    from mcp_server.storage.database import refused_by_schema  # database imports this module

    shipped = [migration.on(database.dialect) for migration in available()]
    done = database.read(_recorded)
    if done is not None:
        _check_known(done, shipped)
        if any(row.checksum is None for row in done.values()):
            _changing_tables(
                database, lambda conn: _record_checksums(conn, shipped), "Recording the ledger's migration checksums"
            )
        if all(migration.version in done for migration in shipped):
            return []
    newly_applied: list[int] = []
    for migration in [m for m in shipped if done is None or m.version not in done]:  # each re-read under the lock

        def apply(conn: Connection, migration: Migration = migration) -> bool:
            _lock_schema(conn)
            conn.exec_driver_sql(_CREATE_TABLE)
            done = applied(conn)
            _check_known(done, shipped)
            if migration.version in done:
                return False
            for statement in migration.statements():
                try:
                    conn.exec_driver_sql(statement)
                except DBAPIError as exc:
                    if not refused_by_schema(exc):
                        raise  # contention is run again, a lost connection or a permission reported as such
                    raise _not_applied(migration, exc) from exc
            conn.execute(
                text("INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES (:v, :n, :at, :sum)"),
                {"v": migration.version, "n": migration.name, "at": now_text(), "sum": migration.checksum},
            )
            return True

        upgrade = f"Bringing the ledger to this bankgate's schema (migration {migration.version:04d}_{migration.name})"
        if _changing_tables(database, apply, upgrade):
            newly_applied.append(migration.version)
    return newly_applied


def _changing_tables(database: Database, work: Callable[[Connection], T], what: str) -> T:
    """`database.run(work)`, work that changes the ledger's tables (`what`): refused a permission, it says that this
    needs their owner, not only a user that may write rows (an application's usual role, which has that)."""
    from mcp_server.storage.database import AccessDenied  # database imports this module

    try:
        return database.run(work)
    except AccessDenied as denied:
        raise AccessDenied(
            denied.reason,
            write=True,
            needs=f"{what} needs a user that may change its tables (SQLite: write its file and folder; PostgreSQL: "
            "the role that owns them, with CREATE on their schema): run `bankgate-mcp admin init --db URL` once as "
            "that user, then start again",
        ) from denied


def check_current(database: Database) -> None:
    """Refuse (`LedgerNotOpened`) a ledger not at exactly this build's schema, only reading: for every command but
    `admin init` and `serve` (an auditor's `audit verify --public-keys`, perhaps under a role that may only read)."""
    from mcp_server.storage.database import LedgerNotOpened  # database imports this module

    shipped = [migration.on(database.dialect) for migration in available()]
    done = database.read(applied)
    _check_known(done, shipped)
    missing = [migration for migration in shipped if migration.version not in done]
    if missing:
        first = missing[0]
        raise LedgerNotOpened(
            f"the ledger is older than this bankgate: migration {first.version:04d}_{first.name} is not applied "
            f"({len(missing)} pending), and only `admin init` and `serve` migrate; upgrade it with `bankgate-mcp "
            "admin init` (as a server of this release does at start), or use the bankgate release its servers run"
        )


def kept_here(inspector: Inspector) -> bool:
    """Whether the database holds bankgate's `schema_migrations`, not another application's of that name (Rails,
    dbmate, golang-migrate and Ecto all keep their own so, without a `name`)."""
    if not inspector.has_table("schema_migrations"):
        return False
    return {column["name"] for column in inspector.get_columns("schema_migrations")} >= _RECORD_COLUMNS


def _recorded(conn: Connection) -> dict[int, Recorded] | None:
    """`applied`, or None on a database without `schema_migrations` (a new ledger)."""
    return applied(conn) if inspect(conn).has_table("schema_migrations") else None


def _check_known(done: dict[int, Recorded], shipped: list[Migration]) -> None:
    """Refuse a ledger migrated by another build: a version this one does not ship (a newer build's), one it
    ships under another name (a build that numbered a different migration alike), or one applied as other
    statements (its file edited since). Its tables are not the shape this code reads and writes, so running
    on them would go wrong in ways no error names."""
    from mcp_server.storage.database import LedgerNotOpened  # database imports this module

    ours = {migration.version: migration for migration in shipped}
    for version, row in done.items():
        migration = ours.get(version)
        if migration is None or migration.name != row.name:
            instead = f"ships {version:04d}_{migration.name} instead" if migration else "does not ship"
            raise LedgerNotOpened(
                f"the ledger records migration {version:04d}_{row.name}, which this bankgate {instead}: it was "
                "migrated by a newer bankgate or another build; run that version, or upgrade this one to it"
            )
        if row.checksum is not None and row.checksum != migration.checksum:
            raise LedgerNotOpened(
                f"the ledger applied migration {version:04d}_{row.name} as statements that differ from the one "
                "this bankgate ships under that name (the file was edited after it was applied): its tables are "
                "not the shape this build expects; run the build that migrated it, or restore that file"
            )


def _keeps_checksums(conn: Connection) -> bool:
    return any(column["name"] == "checksum" for column in inspect(conn).get_columns("schema_migrations"))


def _record_checksums(conn: Connection, shipped: list[Migration]) -> None:
    """Give the rows a build recorded without checksums this build's (adding the column if it lacks it), under
    the migrations' lock: what they applied is taken to be what this build ships under their names."""
    _lock_schema(conn)
    if not _keeps_checksums(conn):
        conn.exec_driver_sql(_ADD_CHECKSUM)
    for migration in shipped:
        conn.execute(_FILL_CHECKSUM, {"checksum": migration.checksum, "v": migration.version, "n": migration.name})


def _not_applied(migration: Migration, refused: DBAPIError) -> Exception:
    """The refusal of a migration the database would not take, naming it and the database's reason."""
    from mcp_server.storage.database import LedgerNotOpened  # database imports this module

    reason = (str(refused.orig).strip().splitlines() or [type(refused.orig).__name__])[0]
    return LedgerNotOpened(
        f"migration {migration.version:04d}_{migration.name} could not be applied: {reason}. Nothing was changed; "
        "the ledger's schema does not match what its schema_migrations table records (edited, or restored in "
        "part?): restore the database from a backup"
    )


def _lock_schema(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
