"""Two ledgers signed with one key file do not accept each other's audit records or heads (both backends).

The tests' ledgers all share the run's key file, as staging and production, or two banks' test ledgers, set up
from one key do. Each ledger has its own id (migration 0019) that every record and head signs, so a record or a
whole signed chain copied from the other ledger is never chained and is named by `audit verify`; an id edited in
the database (even to the other ledger's) is caught by the ledger's own heads, and a server refuses to start on it.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, text

from mcp_server.audit.identity import LedgerIdentityError
from mcp_server.audit.sequencer import SEQUENCER_LOCK, ChainRefused, Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from policy.store import AuditEntry
from tests.support import BACKENDS, postgres_schema


@pytest.fixture(params=BACKENDS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two ledgers (files, or schemas of one database), A and B, both signed with the run's key file."""
    if request.param == "postgresql":
        with postgres_schema("bankgate_ledger_a") as a, postgres_schema("bankgate_ledger_b") as b:
            yield a, b
    else:
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"


@pytest.fixture
def ledgers(urls: tuple[str, str]) -> Iterator[tuple[Database, Database]]:
    a, b = Database.open(urls[0]), Database.open(urls[1])
    yield a, b
    a.close()
    b.close()


def denied(db: Database) -> str:
    """A signed record that moves no money and names no approval (a call the policy denied), so only its
    signature can tell where it was written: its rid."""
    entry = AuditEntry(at=time.time(), event="denied", principal="local", tool="transfer_funds",
                       arguments={"amount": "1"}, policy_version="test", reason="denied by rule")  # fmt: skip
    (rid,) = db.run(lambda conn: AuditWriter().append(conn, [entry]))
    return rid


def rows(db: Database, table: str, where: str = "1 = 1", **params: object) -> list[dict[str, object]]:
    query = text(f"SELECT * FROM {table} WHERE {where}")
    return db.read(lambda conn: [dict(row) for row in conn.execute(query, params).mappings()])


def insert(db: Database, table: str, copied: list[dict[str, object]]) -> None:
    """`copied` rows into `table` as they are: what someone who can write both databases does."""

    def work(conn: Connection) -> None:
        for row in copied:
            names = ", ".join(row)
            conn.execute(text(f"INSERT INTO {table} ({names}) VALUES (:{', :'.join(row)})"), row)

    db.run(work)


def unchained(row: dict[str, object]) -> dict[str, object]:
    return {**row, "seq": None, "prev_hash": None, "hash": None}


def position(db: Database, rid: str) -> object:
    return db.read(lambda conn: conn.execute(text("SELECT seq FROM audit_log WHERE rid = :rid"), {"rid": rid}).one()[0])


def verify(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", url])
    return code, capsys.readouterr().out


def ledger_id(db: Database) -> str:
    return str(db.read(lambda conn: conn.execute(text("SELECT id FROM ledger_identity")).scalar_one()))


def test_each_ledger_gets_its_own_id(ledgers: tuple[Database, Database]) -> None:
    a, b = ledgers
    assert len(ledger_id(a)) == 32 and ledger_id(a) != ledger_id(b)


def test_a_record_copied_from_another_ledger_is_never_chained_and_is_named(
    ledgers: tuple[Database, Database], urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = ledgers
    rid = denied(a)
    insert(b, "audit_log", [unchained(row) for row in rows(a, "audit_log", "rid = :rid", rid=rid)])
    own = denied(b)

    Sequencer(b, AuditWriter()).chain()

    assert position(b, rid) is None and position(b, own) == 1
    code, out = verify(urls[1], capsys)
    assert code == 1, out
    assert f"unchained record {rid}: its signature does not match its content for this ledger" in out, out
    assert "copied from another ledger" in out


def test_another_ledgers_chain_copied_whole_with_its_signed_heads_is_named(
    ledgers: tuple[Database, Database], urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """B, new and empty, given A's records and heads as they stand (positions, hashes, signatures): its hashes
    hold, but neither A's heads nor A's records are signed for B, and B's sequencer does not extend them."""
    a, b = ledgers
    for _ in range(2):
        denied(a)
        Sequencer(a, AuditWriter()).chain()
    insert(b, "audit_log", rows(a, "audit_log"))
    insert(b, "audit_heads", rows(a, "audit_heads"))

    code, out = verify(urls[1], capsys)

    assert code == 1, out
    for seq in (1, 2):
        assert f"signed head {seq}: was signed for ledger {ledger_id(a)}, not this one ({ledger_id(b)})" in out, out
        assert f"record {seq}: its signature does not match its content for this ledger" in out, out
    own = denied(b)
    with pytest.raises(ChainRefused, match="was signed for ledger"):
        Sequencer(b, AuditWriter()).chain()
    assert position(b, own) is None


def test_a_record_naming_no_ledger_is_refused_past_the_records_from_before_ledger_ids(
    ledgers: tuple[Database, Database], urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A record signed the way records were before 0019 (another ledger's old one: its key is this ledger's too)
    may stand only where this ledger's own old records do; B, made with 0019, has none."""
    _, b = ledgers
    rid = denied(b)
    (row,) = rows(b, "audit_log", "rid = :rid", rid=rid)
    old = {**row, "rid": f"{rid[:-4]}beef"}
    old["signature"] = AuditWriter().signer.sign_record(old, None)
    insert(b, "audit_log", [old])

    Sequencer(b, AuditWriter()).chain()

    assert position(b, str(old["rid"])) is None and position(b, rid) == 1
    code, out = verify(urls[1], capsys)
    assert code == 1, out
    assert f"unchained record {old['rid']}: is signed naming no ledger" in out and "past 0 must name it" in out, out


def chained_with_heads(db: Database) -> None:
    """A deposit and a denied call, chained after a server's start (so the ledger's identity is sealed)."""
    started = Sequencer(db, AuditWriter())
    started.check_start()
    started.seal()  # as `open_state` does
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("Ada").id, "5")
    Sequencer(db, AuditWriter()).chain()
    denied(db)
    Sequencer(db, AuditWriter()).chain()


@pytest.mark.parametrize(
    ("edits", "says"),
    [
        (["UPDATE ledger_identity SET id = :a"], "was signed for ledger {b}, not this one ({a})"),
        (["UPDATE ledger_identity SET id = :a", "UPDATE audit_heads SET ledger = :a"],
         "its signature does not match (forged, or this ledger's identity edited)"),
        (["UPDATE ledger_identity SET id = :a", "DELETE FROM audit_heads"],
         "no valid signature covers records 1 to 2"),
        (["UPDATE ledger_identity SET unnamed_through = unnamed_through + 100"],
         "signed head 2: its signature does not match (forged, or this ledger's identity edited)"),
    ],
    ids=["id-set-to-the-other-ledgers", "id-and-heads-set-to-the-other-ledgers", "id-set-and-heads-deleted",
         "boundary-raised"],
)  # fmt: skip
def test_a_ledger_identity_edited_in_the_database_is_caught_by_its_own_heads(
    ledgers: tuple[Database, Database],
    urls: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    edits: list[str],
    says: str,
) -> None:
    """B given A's id (and its heads A's id too), or room for records from before ledger ids: A's records would
    then pass for B's, so B's own heads must fail, a restarted server must refuse to sign, and nothing of A's
    may be chained."""
    a, b = ledgers
    chained_with_heads(b)
    own_id = ledger_id(b)

    def edit(conn: Connection) -> None:
        for sql in edits:
            conn.execute(text(sql), {"a": ledger_id(a)} if ":a" in sql else {})

    b.run(edit)
    copied = denied(a)
    insert(b, "audit_log", [unchained(row) for row in rows(a, "audit_log", "rid = :rid", rid=copied)])

    with pytest.raises(LedgerIdentityError, match="is not vouched for, so nothing is signed for it"):
        Sequencer(b, AuditWriter()).check_start()  # a server (or admin command) starting on it
    with pytest.raises(ChainRefused):
        Sequencer(b, AuditWriter()).chain()
    assert position(b, copied) is None
    code, out = verify(urls[1], capsys)
    assert code == 1, out
    assert says.format(a=ledger_id(a), b=own_id) in out, out


def test_a_new_ledger_is_sealed_at_its_first_start_so_an_edited_id_is_caught_before_any_record(
    ledgers: tuple[Database, Database], urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a head naming it, the id of a ledger nothing was written to yet could be swapped unseen: the
    first start signs one over the empty chain (position 0)."""
    a, b = ledgers
    assert main(["admin", "init", "--db", urls[1]]) == 0
    capsys.readouterr()
    heads = rows(b, "audit_heads")
    assert [(h["seq"], h["ledger"]) for h in heads] == [(0, ledger_id(b))]
    assert verify(urls[1], capsys) == (0, "audit chain intact: 0 records\n")

    b.run(lambda conn: conn.execute(text("UPDATE ledger_identity SET id = :a"), {"a": ledger_id(a)}))

    assert main(["admin", "init", "--db", urls[1]]) == 2
    assert "the last signed head (0) was signed for ledger" in capsys.readouterr().err
    with pytest.raises(LedgerIdentityError):
        Sequencer(b, AuditWriter()).check_start()


def test_a_checkpoint_of_another_ledger_is_refused(
    ledgers: tuple[Database, Database], urls: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Signed by the shared key, and over a position B's chain has too: it names ledger A."""
    a, b = ledgers
    denied(a), denied(b)
    checkpoint = tmp_path / "a.json"
    assert main(["audit", "checkpoint", "--db", urls[0], "--out", str(checkpoint)]) == 0
    assert main(["audit", "verify", "--db", urls[1], "--checkpoint", str(checkpoint)]) == 2
    said = capsys.readouterr().err
    assert f"the checkpoint is of another ledger ({ledger_id(a)}), not this one ({ledger_id(b)})" in said, said
    assert main(["audit", "verify", "--db", urls[0], "--checkpoint", str(checkpoint)]) == 0


def test_a_start_never_waits_behind_another_holder_of_the_sequencers_lock() -> None:
    """A replica's batch or an `audit adopt` may hold the sequencer's lock (a test holds it for good): the seal of a
    start (`open_state`) neither chains nor seals behind it, as that holder chains the waiting records and this
    process's own sequencer signs its next head naming the ledger; a start that waited hung behind a held lock."""
    with postgres_schema("bankgate_sealing") as url:
        db = Database.open(url, create=True)  # migrated, not yet sealed: no start has run
        try:
            denied(db)  # a record waiting to be chained
            with psycopg.connect(url, autocommit=False) as holder:
                holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (SEQUENCER_LOCK,))
                sealing = threading.Thread(target=Sequencer(db, AuditWriter()).seal, daemon=True)
                sealing.start()
                sealing.join(timeout=10)
                hung = sealing.is_alive()
                assert rows(db, "audit_heads") == [] and rows(db, "audit_log", "seq IS NOT NULL") == []
            sealing.join(timeout=10)  # the lock let go: a seal that waited ends now
            assert not hung, "a start's seal waited for the sequencer's lock"
            Sequencer(db, AuditWriter()).seal()  # free now: chained, and the head names the ledger
            assert [(h["seq"], h["ledger"]) for h in rows(db, "audit_heads")] == [(1, ledger_id(db))]
        finally:
            db.close()
