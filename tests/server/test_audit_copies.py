"""A signed record copied in the database is never chained twice, never stalls the chain, and is named (both backends).

Whoever may change the schema can drop the audit log's key on `rid` and insert a copy of a signed record: of one
still waiting for the sequencer, or of a chained one with its position cleared. The copy's signature is the
writer's own, so nothing but the repeated `rid` tells it apart. The sequencer leaves every copy unchained (and says
so) and chains the rest; `audit verify`, with the key file or only the public keys, names the copied record even
when it moves no money.
"""

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from policy.store import AuditEntry
from tests.support import BACKENDS, postgres_schema


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ledger with one deposit, chained, whose audit log no longer keeps `rid` unique."""
    if request.param == "postgresql":
        with postgres_schema("bankgate_copies") as url:
            yield _keyless(url)
    else:
        yield _keyless(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.open(db_url)
    yield database
    database.close()


def _keyless(url: str) -> str:
    database = Database.open(url)
    ledger = Ledger(database)
    ledger.deposit(ledger.create_account("Ada").id, "5")
    Sequencer(database, AuditWriter()).chain()
    database.run(_drop_rid_key)
    database.close()
    return url


def _drop_rid_key(conn: Connection) -> None:
    """What a database editor with DDL rights does; SQLite has no DROP CONSTRAINT, so the table is rebuilt
    without its primary key (keeping `seq UNIQUE`)."""
    if conn.dialect.name == "postgresql":
        key = conn.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = 'audit_log'::regclass AND contype = 'p'")
        ).scalar_one()
        conn.execute(text(f'ALTER TABLE audit_log DROP CONSTRAINT "{key}"'))
        return
    schema = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'audit_log'")).scalar_one()
    assert "rid TEXT PRIMARY KEY" in schema, schema
    conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_keyed"))
    conn.execute(text(schema.replace("rid TEXT PRIMARY KEY", "rid TEXT")))
    conn.execute(text("INSERT INTO audit_log SELECT * FROM audit_log_keyed"))
    conn.execute(text("DROP TABLE audit_log_keyed"))


def moves_no_money(db: Database) -> str:
    """A signed record that names no money and no approval (a call the policy denied): its rid."""
    entry = AuditEntry(at=time.time(), event="denied", principal="local", tool="transfer_funds",
                       arguments={"amount": "1"}, policy_version="test", reason="denied by rule")  # fmt: skip
    (rid,) = db.run(lambda conn: AuditWriter().append(conn, [entry]))
    return rid


def copy(db: Database, rid: str) -> None:
    """Insert a copy of record `rid`, unchained (its position, if it has one, cleared)."""
    listed = ", ".join(c for c in _columns(db) if c not in ("seq", "prev_hash", "hash"))
    insert = f"INSERT INTO audit_log ({listed}) SELECT {listed} FROM audit_log WHERE rid = :rid"
    db.run(lambda conn: conn.execute(text(insert), {"rid": rid}))


def _columns(db: Database) -> list[str]:
    return list(db.read(lambda conn: conn.execute(text("SELECT * FROM audit_log LIMIT 0")).keys()))


def positions(db: Database, rid: str) -> list[int | None]:
    rows = db.read(lambda conn: conn.execute(text("SELECT seq FROM audit_log WHERE rid = :rid"), {"rid": rid}).all())
    return sorted((row[0] for row in rows), key=lambda seq: (seq is None, seq or 0))


def public_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    public = tmp_path / "audit.pub"
    assert main(["audit", "public-key"]) == 0
    public.write_text(capsys.readouterr().out)
    return public


def test_a_copied_waiting_record_is_left_unchained_and_the_chain_goes_on(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    rid = moves_no_money(db)
    copy(db, rid)
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("Ben").id, "7")  # acknowledged after the copy: it must still be chained

    with caplog.at_level(logging.ERROR):
        Sequencer(db, AuditWriter()).chain()

    assert positions(db, rid) == [None, None]
    chained = db.read(lambda c: c.execute(text("SELECT seq, event FROM audit_log WHERE seq IS NOT NULL")).all())
    assert sorted(chained) == [(1, "admin"), (2, "admin")]
    logged = [r.getMessage() for r in caplog.records if rid in r.getMessage()]
    assert logged and "2 rows" in logged[0], [r.getMessage() for r in caplog.records]

    code = main(["audit", "verify", "--db", db_url])
    out = capsys.readouterr()
    assert code == 1, out
    assert f"record {rid} is held by 2 rows (unchained, unchained)" in out.out
    assert "Traceback" not in out.err


def test_a_chained_records_copy_with_its_position_cleared_is_never_chained_again(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sequencer = Sequencer(db, AuditWriter())
    rid = moves_no_money(db)
    sequencer.chain()
    copy(db, rid)
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("Ben").id, "7")

    sequencer.chain()
    assert main(["audit", "verify", "--db", db_url]) == 1  # chains once more, with a new sequencer

    assert positions(db, rid) == [2, None]
    out = capsys.readouterr().out
    assert f"record {rid} is held by 2 rows (record 2, unchained)" in out
    assert "audit chain BROKEN (3 records read, and 1 records not chained yet (pending))" in out


@pytest.mark.parametrize("chained", [False, True], ids=["waiting", "chained"])
def test_an_auditor_with_only_the_public_keys_names_a_copy_that_moves_no_money(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, chained: bool
) -> None:
    public = public_keys(tmp_path, capsys)
    rid = moves_no_money(db)
    if chained:
        Sequencer(db, AuditWriter()).chain()
    copy(db, rid)

    code = main(["audit", "verify", "--db", db_url, "--public-keys", str(public)])

    out = capsys.readouterr().out
    assert code == 1, out
    where = "record 2, unchained" if chained else "unchained, unchained"
    assert f"record {rid} is held by 2 rows ({where})" in out
