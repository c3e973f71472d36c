"""The sequencer chains what writers committed, whoever wrote it and however many chain at once.

Writers insert signed, unchained records with no shared row; sequencers (in the background of
every server, and before verify) chain them. Whatever the interleaving, the result is one
gap-free chain that verifies; a record no key holder wrote is never chained and is named; a
record committed but not chained when its process died is chained by the next start.
"""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from bench.audit_bench import append_with_head_row, gated_call
from mcp_server.app import open_state
from mcp_server.audit import reader as audit_log
from mcp_server.audit.keys import AuditKeyError, load_signer
from mcp_server.audit.sequencer import Background, Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.ledger.books import Ledger
from mcp_server.settings import Settings
from mcp_server.storage import migrations
from mcp_server.storage.database import Database
from policy.audit import Keyring
from policy.testing import ScriptedResponder
from tests.server.harness import Harness
from tests.support import BACKENDS, postgres_schema

pytestmark = pytest.mark.anyio

WRITERS, DEPOSITS = 6, 8


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with postgres_schema("bankgate_seq") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'ledger.db'}"


def deposit_concurrently(db_url: str, accounts: list[str]) -> None:
    """`WRITERS` threads, each with its own connection pool (as separate processes), each depositing."""

    def write(account: str) -> None:
        database = Database.open(db_url)
        try:
            ledger = Ledger(database)
            for _ in range(DEPOSITS):
                ledger.deposit(account, "1")
        finally:
            database.close()

    threads = [threading.Thread(target=write, args=(account,)) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def backlog(url: str, *, deposits: int, replicas: int) -> tuple[Database, list[Database]]:
    """A ledger with `deposits` records waiting to be chained, and `replicas` more pools on it (as replicas)."""
    db = Database.open(url)
    ledger = Ledger(db)
    account = ledger.create_account("Backlog").id
    for _ in range(deposits):
        ledger.deposit(account, "1")
    return db, [Database.open(url) for _ in range(replicas)]


def chained(db: Database) -> list[int]:
    return [
        int(s)
        for (s,) in db.read(
            lambda c: c.execute(text("SELECT seq FROM audit_log WHERE seq IS NOT NULL ORDER BY seq")).all()
        )
    ]


def test_concurrent_writers_and_racing_sequencers_make_one_gap_free_chain(db_url: str) -> None:
    """Writers in several threads while two sequencers (two pools, as two replicas) chain at once."""
    db = Database.open(db_url)
    ledger = Ledger(db)
    accounts = [ledger.create_account(f"Writer {n}").id for n in range(WRITERS)]
    ledger.deposit(accounts[0], "1")  # the currency's system account exists before the writers race
    replicas = [Database.open(db_url) for _ in range(2)]
    sequencers = [Background(Sequencer(replica, AuditWriter()), interval=0.005) for replica in replicas]
    with sequencers[0].running(), sequencers[1].running():
        deposit_concurrently(db_url, accounts)
    expected = WRITERS * DEPOSITS + 1
    assert chained(db) == list(range(1, expected + 1))
    verified = audit_log.verify(db)
    assert (verified.records, verified.pending, verified.findings) == (expected, 0, [])
    heads = db.read(lambda c: c.execute(text("SELECT COUNT(*) FROM audit_heads")).scalar_one())
    assert 1 <= heads <= expected
    for replica in [*replicas, db]:
        replica.close()


@pytest.mark.postgres
def test_two_sequencers_racing_on_one_backlog_chain_it_once(tmp_path: Path) -> None:
    """Threads released together onto one backlog: the advisory lock lets one batch chain it; the other
    finds nothing left (or waits and continues from the first's head)."""
    with postgres_schema("bankgate_race") as url:
        db, replicas = backlog(url, deposits=20, replicas=4)
        start = threading.Barrier(len(replicas))
        batches: list[int] = []

        def race(replica: Database) -> None:
            sequencer = Sequencer(replica, AuditWriter())
            start.wait(timeout=10)
            batches.extend(len(batch.positions) for batch in sequencer.chain())

        threads = [threading.Thread(target=race, args=(replica,)) for replica in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert batches == [20]
        assert chained(db) == list(range(1, 21))
        assert audit_log.verify(db).findings == []
        for replica in [*replicas, db]:
            replica.close()


def test_a_record_written_without_the_key_is_never_chained_and_is_named(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database.open(db_url)
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("Ada").id, "5")
    record = {"rid": "0000000000000000-forged-0000", "at": "2026-01-01T00:00:00.000000Z", "event": "executed",
              "principal": "mallory", "tool": "transfer_funds", "arguments_json": "{}", "policy_version": "",
              "matched_rules_json": "[]", "reason": "", "amount_minor": 0,
              "key_id": "0" * 16, "signature": "00"}  # fmt: skip
    columns = ", ".join(record)
    db.run(lambda c: c.execute(text(f"INSERT INTO audit_log ({columns}) VALUES (:{', :'.join(record)})"), record))
    ledger.deposit(ledger.create_account("Ben").id, "7")
    code = main(["audit", "verify", "--db", db_url])
    out = capsys.readouterr().out
    assert code == 1
    assert "audit chain BROKEN (2 records read, and 1 records not chained yet (pending))" in out
    assert f"unchained record {record['rid']}: signed by key {'0' * 16}, which is not a known audit key" in out
    assert chained(db) == [1, 2]  # both deposits chained around it
    db.close()


def test_a_forged_records_id_cannot_write_lines_of_its_own(
    db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever writes to the database chooses an unsigned record's id: `audit verify` and the server's log
    name it, and a line break or a terminal escape in it must not print a line of its own (e.g. 'intact')."""
    db = Database.open(db_url)
    Ledger(db).deposit(Ledger(db).create_account("Ada").id, "5")
    rid = "0000000000000000-forged\x1b[2K\raudit chain intact: 2 records\n"
    record = {"rid": rid, "at": "2026-01-01T00:00:00.000000Z", "event": "executed",
              "principal": "mallory", "tool": "transfer_funds", "arguments_json": "{}", "policy_version": "",
              "matched_rules_json": "[]", "reason": "", "amount_minor": 0,
              "key_id": "0" * 16, "signature": "00"}  # fmt: skip
    columns = ", ".join(record)
    db.run(lambda c: c.execute(text(f"INSERT INTO audit_log ({columns}) VALUES (:{', :'.join(record)})"), record))
    with caplog.at_level(logging.ERROR):
        Sequencer(db, AuditWriter(None)).chain()
    assert main(["audit", "verify", "--db", db_url]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert not any(line.startswith("audit chain intact") for line in out.splitlines())
    assert "unchained record 0000000000000000-forged\\x1b[2K\\raudit chain intact: 2 records\\n: " in out
    logged = [
        r.getMessage() for r in caplog.records if "not signed for this ledger by a known audit key" in r.getMessage()
    ]
    assert logged and all("\n" not in m and "\x1b" not in m for m in logged)
    db.close()


async def test_records_committed_but_not_chained_when_the_process_died_are_chained_at_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer that commits and dies before any sequencer ran: its records wait, acknowledged and signed;
    a read-only verification reports them as pending; the next server start chains them."""
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    public = tmp_path / "audit.pub"
    assert main(["audit", "public-key"]) == 0
    public.write_text(capsys.readouterr().out)
    assert main(["audit", "verify", "--db", harness.db_url, "--public-keys", str(public)]) == 0
    assert capsys.readouterr().out == ("audit chain intact: 0 records, and 3 records not chained yet (pending)\n")
    async with harness.client(ScriptedResponder()):
        pass  # the server's sequencer chains at start, before any call
    assert chained(harness.db) == [1, 2, 3]
    assert main(["audit", "verify", "--db", harness.db_url, "--public-keys", str(public)]) == 0
    assert capsys.readouterr().out == "audit chain intact: 3 records\n"


def test_a_tampered_tail_stops_the_sequencer_from_signing_over_it(db_url: str) -> None:
    """A record chained without the key past the last signed head: the sequencer refuses to extend it."""
    db = Database.open(db_url)
    ledger = Ledger(db)
    sequencer = Sequencer(db, AuditWriter())
    ledger.deposit(ledger.create_account("Ada").id, "5")
    sequencer.chain()
    db.run(lambda c: c.execute(text("UPDATE audit_log SET note = 'x' WHERE seq = 1")))
    ledger.deposit(ledger.create_account("Ben").id, "5")
    assert [len(b.positions) for b in sequencer.chain()] == [1]  # an edit keeps the tail's hash: verify names it
    db.run(lambda c: c.execute(text("UPDATE audit_log SET hash = 'f' WHERE seq = 2")))
    ledger.deposit(ledger.create_account("Cy").id, "5")
    with pytest.raises(Exception, match="not at the last signed head's record 2"):
        sequencer.chain()
    assert chained(db) == [1, 2]
    db.close()


def test_a_ledger_chained_under_the_head_row_migrates_and_still_verifies(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records chained and signed the way every writer did before 0008 keep their places and hashes;
    their head signatures move to `audit_heads`; new records are chained after them."""
    before = [m for m in migrations.available() if m.version < 8]
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "available", lambda: before)
        old = Database.open(db_url)
        signer = AuditWriter().signer
        for n in range(3):

            def append_old(conn: Connection, n: int = n) -> None:
                append_with_head_row(conn, signer, gated_call(n), prefix="")

            old.run(append_old)
        old.close()
    db = Database.open(db_url)  # applies 0008
    assert audit_log.verify(db) == audit_log.Verification(9, 0, [])
    heads = db.read(lambda c: c.execute(text("SELECT seq FROM audit_heads ORDER BY seq")).scalars().all())
    assert heads == [3, 6, 9]
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("After").id, "1")
    assert audit_log.verify(db, sequencer=Sequencer(db, AuditWriter())) == audit_log.Verification(10, 0, [])
    db.run(lambda c: c.execute(text("UPDATE audit_log SET note = 'x' WHERE seq = 2")))
    assert "record 2: content does not match its hash (edited)" in map(str, audit_log.verify(db).findings)
    db.close()


def test_rows_its_own_writer_inserted_unchanged_are_chained_without_a_signature_check(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's sequencer shares its writer: what that writer signed is chained on its remembered digest;
    a record another writer (another process) signed is still verified."""
    db = Database.open(db_url)
    writer, other = AuditWriter(), Ledger(db)  # the other ledger signs with the same key, as another replica
    account = other.create_account("Ada").id
    other.deposit(account, "5")
    Ledger(db, audit=writer).deposit(account, "7")
    checked: list[str] = []
    verify_record = Keyring.verify_record

    def counting(keys: Keyring, record: Mapping[str, Any], ledger: str | None) -> bool:
        checked.append(str(record["rid"]))
        return verify_record(keys, record, ledger)

    monkeypatch.setattr(Keyring, "verify_record", counting)
    (batch,) = Sequencer(db, writer).chain()
    assert len(batch.positions) == 2
    assert len(checked) == 1 and batch.positions[checked[0]] == 1  # only the other writer's deposit
    assert audit_log.verify(db).findings == []
    db.close()


def test_a_batch_is_worked_out_without_the_lock_writers_queue_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one write lock, which every writer of the process queues on. Checking and hashing a batch is
    most of its work: done in a read, a write that must not wait (the event loop's) still goes through
    meanwhile, on the very database the sequencer writes to. (PostgreSQL's sequencer lock is its own.)"""
    db = Database.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(db)
    account = ledger.create_account("Ada").id
    ledger.deposit(account, "5")
    waiting = db.read(lambda c: c.execute(text("SELECT COUNT(*) FROM audit_log WHERE seq IS NULL")).scalar_one())
    sequencer = Sequencer(db, AuditWriter())
    plan = sequencer._plan
    written: list[int] = []

    def plan_while_another_writes(conn: Connection) -> Any:
        written.append(db.run(lambda c: c.execute(text("UPDATE accounts SET owner = owner")).rowcount, wait=False))
        return plan(conn)

    monkeypatch.setattr(sequencer, "_plan", plan_while_another_writes)
    (batch,) = sequencer.chain()
    assert written == [2] and len(batch.positions) == waiting > 0  # both accounts touched; every record chained
    assert audit_log.verify(db).findings == []
    db.close()


def test_a_batch_planned_before_another_sequencer_chained_is_planned_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas' sequencers: the second chains the records while the first's plan of them waits to be
    written. The first finds the chain's tail moved, writes nothing and plans again: one chain, no fork."""
    db, replicas = backlog(db_url, deposits=3, replicas=2)
    first, second = (Sequencer(replica, AuditWriter()) for replica in replicas)
    plan, raced = first._plan, list[int]()

    def plan_then_race(conn: Connection) -> Any:
        planned = plan(conn)
        if not raced:
            raced.extend(len(batch.positions) for batch in second.chain())
        return planned

    monkeypatch.setattr(first, "_plan", plan_then_race)
    assert first.chain() == []
    assert raced == [len(chained(db))] and chained(db) == list(range(1, len(chained(db)) + 1))
    heads = db.read(lambda c: c.execute(text("SELECT COUNT(*) FROM audit_heads")).scalar_one())
    assert heads == 1 and audit_log.verify(db).findings == []
    for replica in [*replicas, db]:
        replica.close()


@pytest.mark.parametrize("edit", ["note = 'edited'", "amount_minor = amount_minor + 1", "signature = '00'"])
def test_a_row_its_own_writer_signed_then_edited_in_the_database_is_never_chained(db_url: str, edit: str) -> None:
    db = Database.open(db_url)
    writer = AuditWriter()
    ledger = Ledger(db, audit=writer)
    account = ledger.create_account("Ada").id
    ledger.deposit(account, "5")
    db.run(lambda c: c.execute(text(f"UPDATE audit_log SET {edit}")))
    ledger.deposit(account, "7")
    (batch,) = Sequencer(db, writer).chain()
    assert len(batch.positions) == 1  # the second deposit's record, not the edited first
    findings = [str(f) for f in audit_log.verify(db).findings]
    assert any(f.startswith("unchained record ") and "signature" in f for f in findings), findings
    db.close()


@dataclass
class CountingSequencer(Sequencer):
    looks: int = field(default=0, init=False)

    def pending(self) -> bool:
        self.looks += 1
        return super().pending()


def test_an_idle_background_sequencer_waits_for_its_writer_instead_of_polling(tmp_path: Path) -> None:
    """No record waits: no look at the database however many intervals pass; an append wakes it."""
    db = Database.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    writer = AuditWriter()
    ledger = Ledger(db, audit=writer)
    account = ledger.create_account("Idle").id
    sequencer = CountingSequencer(db, writer)
    with Background(sequencer, interval=0.001, idle_interval=3600).running():
        time.sleep(0.3)  # three hundred intervals
        idle_looks = sequencer.looks
        ledger.deposit(account, "1")
        deadline = time.monotonic() + 60
        while audit_log.verify(db).pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert audit_log.verify(db).pending == 0
    assert idle_looks <= 3  # the start's tick (chaining the account's records), one more, then waiting
    db.close()


def test_an_append_whose_commit_comes_many_intervals_after_its_signal_is_still_chained(tmp_path: Path) -> None:
    """The signal precedes the commit; a slow commit must not leave its record waiting for the idle look."""
    db = Database.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    writer = AuditWriter()
    ledger = Ledger(db, audit=writer)
    account = ledger.create_account("Slow commit").id
    with Background(Sequencer(db, writer), interval=0.001, idle_interval=3600).running():
        time.sleep(0.05)
        signal = writer.appended
        writer.appended = threading.Event()  # the deposit below signals nobody: its signal is this one,
        signal.set()  # given a hundred intervals before the commit
        time.sleep(0.1)
        ledger.deposit(account, "1")
        deadline = time.monotonic() + 30
        while audit_log.verify(db).pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert audit_log.verify(db).pending == 0
    db.close()


def test_a_server_whose_key_file_lacks_the_chains_signing_key_is_refused_at_start(db_url: str, tmp_path: Path) -> None:
    """A replica started without the shared key file (it creates one of its own) would sign records the other
    replicas never chain, and could chain none itself: it is refused at start, naming the key it lacks. A ring
    holding that key below a new one (a rotation) starts."""
    db = Database.open(db_url)
    ledger = Ledger(db)
    ledger.deposit(ledger.create_account("Shared key").id, "1")
    (batch,) = Sequencer(db, AuditWriter()).chain()
    db.close()
    own = tmp_path / "own.key"
    signed_by = rf"{own} does not exist, and the ledger's audit chain is signed by key {batch.head.key_id}"
    with pytest.raises(AuditKeyError, match=signed_by):
        open_state(Settings(db_url=db_url, audit_key_file=own, _env_file=None))  # type: ignore[call-arg]
    assert not own.exists()  # refused, it leaves no key of its own behind
    load_signer(own)  # one made elsewhere
    with pytest.raises(AuditKeyError, match=rf"last signed by key {batch.head.key_id}, which {own} does not hold"):
        open_state(Settings(db_url=db_url, audit_key_file=own, _env_file=None))  # type: ignore[call-arg]
    rotated = tmp_path / "rotated.key"
    rotated.write_text(own.read_text() + AuditWriter().key_path.read_text())
    rotated.chmod(0o600)
    open_state(Settings(db_url=db_url, audit_key_file=rotated, _env_file=None)).ledger.db.close()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "command",
    [["admin", "deposit", "ACC", "1"], ["admin", "grant", "dan", "viewer", "ACC"], ["approvers", "add", "zed"]],
    ids=["deposit", "grant", "approver"],
)
def test_a_command_whose_key_file_lacks_the_chains_signing_key_writes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """An operator's command run with another key file (on another host, say) would sign records nobody chains,
    as a replica would: refused before it writes, naming the key."""
    db = Database.open(db_url)
    ledger = Ledger(db)
    account = ledger.create_account("Shared key").id
    ledger.deposit(account, "1")
    (batch,) = Sequencer(db, AuditWriter()).chain()
    count = text("SELECT count(*) FROM audit_log")
    before = db.read(lambda conn: conn.execute(count).scalar_one())
    own = tmp_path / "own.key"
    load_signer(own)  # a key file of its own (a missing one is refused as missing: test_cli_bad_input)
    argv = [part if part != "ACC" else account for part in command]
    code = main([*argv, "--db", db_url, "--audit-key-file", str(own)])
    assert code != 0 and f"last signed by key {batch.head.key_id}" in capsys.readouterr().err
    assert db.read(lambda conn: conn.execute(count).scalar_one()) == before
    db.close()
