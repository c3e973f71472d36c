"""The audit log cannot be rewritten by someone who can write the database (both backends).

Every edit, insertion, deletion or reordering is named; a chain recomputed without the signing
key is refused; the ledger and the approvals are cross-checked against the records; a checkpoint
kept outside the database catches a tail truncated or rolled back behind it.
"""

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from mcp_server.audit import reader
from mcp_server.audit.keys import KEY_FILE_ENV, load_signer
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.ledger import books
from mcp_server.ledger.books import Ledger
from mcp_server.storage import migrations
from policy.audit import chain_hash
from policy.testing import ScriptedResponder, approve, reject
from tests.server.harness import Harness
from tests.support import BACKENDS, postgres_schema

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def audited(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A deposit (admin), an approved 10.00 transfer and a rejected 20.00 one: records 1 to 6."""
    if request.param == "postgresql":
        with postgres_schema("bankgate_audit") as url:
            harness = Harness("memory", url)
            try:
                yield await _transfers(harness)
            finally:
                harness.db.close()
    else:
        yield await _transfers(Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}"))


async def _transfers(harness: Harness) -> Harness:
    """Chained after the deposit and after each call (as the server's sequencer may have done), so signed heads end
    at records 1, 4 and 6 whether or not the server's own sequencer chained meanwhile."""
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    sequencer = Sequencer(harness.db, AuditWriter())
    sequencer.chain()
    async with harness.client(ScriptedResponder(approve(note="fine"), reject())) as client:
        for amount in ("10", "20"):
            await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": amount})
            sequencer.chain()
    events = [r["event"] for r in harness.audit()]
    assert events == ["admin", "requested", "approved", "executed", "requested", "rejected"]
    return harness


def verify(harness: Harness, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", harness.db_url, *extra])
    return code, capsys.readouterr().out


def tamper(harness: Harness, *statements: str) -> None:
    def run(conn: Connection) -> None:
        for sql in statements:
            conn.execute(text(sql))

    harness.db.run(run)


def rechain(harness: Harness, *, keep_signatures: bool, legacy: bool = False) -> None:
    """What a database writer without the key can do: renumber the records and recompute every
    hash with the chain's own (public) algorithm, and delete the signed heads it cannot make
    again. `legacy` also gives every record a legacy rid and no signature (a chain from before 0008)."""

    def run(conn: Connection) -> None:
        rows = [dict(r) for r in conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings()]
        conn.execute(text("DELETE FROM audit_log"))
        conn.execute(text("DELETE FROM audit_heads"))
        prev = "0" * 64
        for seq, row in enumerate(rows, start=1):
            original = row["hash"]
            row.update(seq=seq, prev_hash=prev)
            if legacy:
                row.update(rid=f"legacy-{seq}", signature=None, key_id=None)
            row["hash"] = prev = chain_hash(prev, row)
            if row["hash"] != original and not keep_signatures:
                row["signature"] = row["key_id"] = None
            columns = ", ".join(row)
            conn.execute(text(f"INSERT INTO audit_log ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)

    harness.db.run(run)


def executed_transaction(harness: Harness) -> str:
    (record,) = harness.audit(event="executed")
    return str(record["result"]["details"]["transaction_id"])


async def test_untouched_chain_verifies(audited: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(audited, capsys) == (0, "audit chain intact: 6 records\n")


@pytest.mark.parametrize("keep_signatures", [False, True], ids=["signatures-dropped", "signatures-kept"])
async def test_deleting_a_transfer_and_rechaining_without_the_key_is_detected(
    audited: Harness, capsys: pytest.CaptureFixture[str], keep_signatures: bool
) -> None:
    """The issue's first attack: every record of a real transfer deleted, the chain recomputed."""
    (executed,) = audited.audit(event="executed")
    transaction = executed_transaction(audited)
    tamper(audited, f"DELETE FROM audit_log WHERE approval_ref = '{executed['approval_ref']}'")
    rechain(audited, keep_signatures=keep_signatures)
    code, out = verify(audited, capsys)
    assert code == 1 and "audit chain BROKEN (3 records read)" in out
    assert "no valid signature covers records 1 to 3" in out
    assert ("record 2: carries no signature" in out) is not keep_signatures
    assert f"ledger transaction {transaction} (transfer, $10.00) has no audit record" in out
    assert f"approval {executed['approval_ref']} has no 'requested' record" in out


async def test_truncating_the_tail_and_moving_the_head_is_detected(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's second attack, over the executed transfer: the ledger still holds its money movement."""
    transaction = executed_transaction(audited)
    tamper(audited, "DELETE FROM audit_log WHERE seq > 2", "DELETE FROM audit_heads WHERE seq > 2")
    code, out = verify(audited, capsys)
    assert code == 1 and f"ledger transaction {transaction} (transfer, $10.00) has no audit record" in out


@pytest.mark.parametrize(
    ("statements", "says"),
    [
        (["UPDATE audit_log SET note = 'changed' WHERE seq = 3"], "record 3: content does not match its hash (edited)"),
        (["UPDATE audit_log SET amount_minor = 1 WHERE seq = 4"], "record 4: content does not match its hash (edited)"),
        (["UPDATE audit_log SET currency = NULL WHERE seq = 4"], "record 4: content does not match its hash (edited)"),
        (["DELETE FROM audit_log WHERE seq = 3"], "record 4: sequence jumps from 2 to 4"),
        (
            [
                "INSERT INTO audit_log SELECT 'copy-' || rid, seq + 100, at, event, principal, tool, arguments_json, "
                "policy_version, matched_rules_json, reason, approval_ref, question_sha256, note, result_json, "
                "amount_minor, prev_hash, hash, key_id, signature, currency, idempotency_key "
                "FROM audit_log WHERE seq = 2"
            ],
            "record 102: sequence jumps from 6 to 102",
        ),
        (
            [
                "UPDATE audit_log SET seq = 0 - seq WHERE seq IN (5, 6)",
                "UPDATE audit_log SET seq = 11 + seq WHERE seq < 0",
            ],
            "record 5: does not follow the previous record",
        ),
        (["DELETE FROM audit_log WHERE seq = 6"], "the chain ends at record 5 but a signed head says 6"),
        (["UPDATE audit_log SET signature = NULL WHERE seq = 6"], "record 6: carries no signature"),
        (["DELETE FROM audit_heads WHERE seq > 4"], "no valid signature covers record"),
        (["UPDATE audit_heads SET signature = '00' WHERE seq = 4"], "signed head 4: its signature does not match"),
        (
            ["UPDATE audit_log SET result_json = '{' WHERE seq = 4"],
            "record 4: content does not match its hash (edited)",
        ),
    ],
    ids=[
        "edit-note",
        "edit-amount",
        "clear-currency",
        "delete-middle",
        "insert",
        "reorder",
        "truncate-tail",
        "unsign",
        "drop-heads",
        "forge-head",
        "garble-result",
    ],
)
async def test_an_edited_inserted_deleted_or_reordered_record_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str], statements: list[str], says: str
) -> None:
    tamper(audited, *statements)
    code, out = verify(audited, capsys)
    assert code == 1 and "audit chain BROKEN" in out and says in out


async def test_a_transfer_whose_accounts_changed_currency_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The record states the currency it moved; the ledger's accounts, edited to another, no longer agree."""
    transaction = executed_transaction(audited)
    tamper(
        audited,
        "UPDATE accounts SET currency = 'EUR' WHERE id IN "
        f"(SELECT account_id FROM entries WHERE transaction_id = '{transaction}')",
    )
    code, out = verify(audited, capsys)
    assert code == 1 and f"moved USD but ledger transaction {transaction} moves EUR (edited)" in out


async def test_a_balance_edited_without_a_journal_row_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Money made behind the server's back: a balance raised in place, no transaction, no entry. The server spends
    it through the gate (a signed record and a journal row each), so the records and the journal still agree with
    each other; only the balance, which no longer is the sum of its entries, shows it."""
    source, target = audited.open_account("1", "Eve"), audited.open_account("0", "Mallory")
    tamper(audited, f"UPDATE accounts SET balance_minor = balance_minor + 100000 WHERE id = '{source}'")
    async with audited.client(ScriptedResponder(approve())) as client:
        spent = await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": "5"})
    assert spent.structured_content is not None and spent.structured_content["status"] == "executed"
    code, out = verify(audited, capsys)
    assert code == 1 and f"account {source} balance 99600 differs from the sum of its entries -400" in out, out


def without_entry_references(harness: Harness, *statements: str) -> None:
    """`statements` run as a database editor who ignores what entries reference: the sqlite3 shell, which checks no
    foreign key unless told to; on PostgreSQL, the tables' owner dropping the references first."""
    if harness.db_url.startswith("sqlite"):
        engine = create_engine(harness.db_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
                for sql in statements:
                    conn.execute(text(sql))
        finally:
            engine.dispose()
        return
    references = "SELECT conname FROM pg_constraint WHERE conrelid = 'entries'::regclass AND contype = 'f'"

    def drop(conn: Connection) -> None:
        for (name,) in conn.execute(text(references)).all():
            conn.execute(text(f'ALTER TABLE entries DROP CONSTRAINT "{name}"'))

    harness.db.run(drop)
    tamper(harness, *statements)


async def test_money_journaled_under_a_transaction_the_ledger_does_not_hold_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Money made with journal rows that balance (a credit, and the debit of the outside world's account, which may
    go negative) under a transaction id no `transactions` row holds: every balance is its entries' sum and every
    transaction's record agrees, yet no record accounts for the money; the rows naming no transaction show it."""
    eve = audited.open_account("0", "Eve")
    without_entry_references(
        audited,
        f"INSERT INTO entries (id, transaction_id, account_id, amount_minor) VALUES ('E-1', 'TX-NONE', '{eve}', "
        "100000), ('E-2', 'TX-NONE', 'SYS-EXTERNAL-USD', -100000)",
        f"UPDATE accounts SET balance_minor = balance_minor + 100000 WHERE id = '{eve}'",
        "UPDATE accounts SET balance_minor = balance_minor - 100000 WHERE id = 'SYS-EXTERNAL-USD'",
    )
    assert audited.ledger.balance(eve).balance_minor == 100000
    code, out = verify(audited, capsys)
    assert code == 1, out
    assert f"entry E-1 moves 100000 on account {eve} under transaction TX-NONE, which the ledger does not hold" in out


async def test_a_ledger_transaction_without_an_executed_record_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Money moved behind the server's back, with the books kept balanced."""
    source, target = audited.open_account("50", "Eve"), audited.open_account("0", "Mallory")
    tamper(
        audited,
        "INSERT INTO transactions (id, kind, memo, created_at) VALUES ('TX-forged', 'transfer', NULL, "
        "'2026-01-01T00:00:00.000000Z')",
        f"INSERT INTO entries (id, transaction_id, account_id, amount_minor) VALUES ('TX-forged:1', 'TX-forged', "
        f"'{source}', -500), ('TX-forged:2', 'TX-forged', '{target}', 500)",
        f"UPDATE accounts SET balance_minor = balance_minor - 500 WHERE id = '{source}'",
        f"UPDATE accounts SET balance_minor = balance_minor + 500 WHERE id = '{target}'",
    )
    assert audited.ledger.check_invariants() == []
    code, out = verify(audited, capsys)
    assert code == 1 and "ledger transaction TX-forged (transfer, $5.00) has no audit record" in out


async def test_an_executed_record_without_its_ledger_transaction_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    (executed,) = audited.audit(event="executed")
    transaction = executed_transaction(audited)
    details = executed["result"]["details"]
    tamper(
        audited,
        f"DELETE FROM entries WHERE transaction_id = '{transaction}'",
        f"DELETE FROM transactions WHERE id = '{transaction}'",
        f"UPDATE accounts SET balance_minor = balance_minor + 1000 WHERE id = '{details['from_account']}'",
        f"UPDATE accounts SET balance_minor = balance_minor - 1000 WHERE id = '{details['to_account']}'",
    )
    assert audited.ledger.check_invariants() == []
    code, out = verify(audited, capsys)
    assert code == 1
    assert f"record {executed['seq']}: executed transfer_funds names ledger transaction {transaction}, which" in out


@pytest.mark.parametrize(
    ("event", "leg"),
    [("executed", 2), ("executed", 1), ("admin", 2)],
    ids=["transfer-paid-to-another", "transfer-paid-by-another", "deposit-credited-to-another"],
)
async def test_a_ledger_transaction_moved_to_other_accounts_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str], event: str, leg: int
) -> None:
    """A journal row pointed at another account, the balances fixed: the amount and currency still match the
    record, so only the accounts the record names show that the money went elsewhere than approved."""
    eve, mallory = audited.open_account("50", "Eve"), audited.open_account("0", "Mallory")
    Sequencer(audited.db, AuditWriter()).chain()  # Eve's deposit gets its place, as the server's sequencer gives it
    record = next(r for r in audited.audit(event=event) if event == "executed" or r["arguments"]["account_id"] == eve)
    details = record["result"]["details"]
    transaction, amount = details["transaction_id"], details["amount_minor"]
    debit, credit = (
        details.get("from_account", "SYS-EXTERNAL-USD"),
        details.get("to_account", details.get("account_id")),
    )
    other, returned = (eve, amount) if leg == 1 else (mallory, -amount)  # the leg's old account is made whole
    tamper(
        audited,
        f"UPDATE accounts SET balance_minor = balance_minor + {returned} WHERE id = "
        f"(SELECT account_id FROM entries WHERE id = '{transaction}:{leg}')",
        f"UPDATE accounts SET balance_minor = balance_minor - {returned} WHERE id = '{other}'",
        f"UPDATE entries SET account_id = '{other}' WHERE id = '{transaction}:{leg}'",
    )
    assert audited.ledger.check_invariants() == []
    code, out = verify(audited, capsys)
    posted = f"{other} -{amount}, {credit} +{amount}" if leg == 1 else f"{debit} -{amount}, {other} +{amount}"
    assert code == 1, out
    assert (
        f"record {record['seq']}: moved {amount} minor units from {debit} to {credit}, but ledger transaction "
        f"{transaction} posts {posted} (edited)"
    ) in out, out


async def test_a_closing_sweep_paid_to_another_account_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep's record names the closed account and the one it swept to: it verifies, until its credit moves."""
    eve, ben = audited.open_account("50", "Eve"), next(a.id for a in audited.ledger.accounts() if a.owner == "Ben")
    async with audited.client(ScriptedResponder(approve())) as client:
        await client.call_tool("close_account", {"account_id": eve, "sweep_to": ben})
    (record,) = [r for r in audited.audit(event="executed") if r["tool"] == "close_account"]
    transaction = record["result"]["details"]["transaction_id"]
    assert verify(audited, capsys) == (0, "audit chain intact: 10 records\n")

    mallory = audited.open_account("0", "Mallory")
    tamper(
        audited,
        f"UPDATE accounts SET balance_minor = balance_minor - 5000 WHERE id = '{ben}'",
        f"UPDATE accounts SET balance_minor = balance_minor + 5000 WHERE id = '{mallory}'",
        f"UPDATE entries SET account_id = '{mallory}' WHERE id = '{transaction}:2'",
    )
    code, out = verify(audited, capsys)
    assert (
        code == 1
        and (
            f"moved 5000 minor units from {eve} to {ben}, but ledger transaction {transaction} posts {eve} -5000, "
            f"{mallory} +5000 (edited)"
        )
        in out
    ), out


@pytest.mark.parametrize(
    "reopened", ["status = 'open', closed_at = NULL", "status = 'open'", "closed_at = '2030-01-01T00:00:00.000000Z'"]
)
async def test_a_closed_account_reopened_in_the_database_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str], reopened: str
) -> None:
    """A closing is signed (its record's receipt names the account and when it closed). A row set open again behind
    the server's back takes money again (the gate judges the row as it finds it), and moved nothing to make the
    ledger cross-check disagree: the row is held to the closing's record."""
    eve, ada = audited.open_account("0", "Eve"), audited.open_account("10", "Ada")
    async with audited.client(ScriptedResponder(approve())) as client:
        await client.call_tool("close_account", {"account_id": eve})
        Sequencer(audited.db, AuditWriter()).chain()
        tamper(audited, f"UPDATE accounts SET {reopened} WHERE id = '{eve}'")
        if "open" in reopened:
            paid = await client.call_tool("transfer_funds", {"from_account": ada, "to_account": eve, "amount": "1"})
            assert paid.structured_content is not None and paid.structured_content["status"] == "executed"
    (record,) = [r for r in audited.audit(event="executed") if r["tool"] == "close_account"]
    code, out = verify(audited, capsys)
    assert code == 1 and f"record {record['seq']}: closed account {eve} at " in out, out
    assert "but the ledger holds it " in out, out


async def test_a_closed_account_reopened_used_and_closed_again_at_its_old_time_is_named(
    audited: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set open behind the server's back, used as a pass-through (each movement signed and journaled), and closed
    again at its old `closed_at`: the row is what the closing's record says, so only the movements dated after the
    account closed show it."""
    eve, ada, mal = audited.open_account("0", "Eve"), audited.open_account("10", "Ada"), audited.open_account("0")
    async with audited.client(ScriptedResponder(approve(), approve(), approve())) as client:
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        with monkeypatch.context() as then:  # the closing five minutes ago, past any replica's clock skew
            then.setattr(books, "utc_now", lambda: long_ago)
            await client.call_tool("close_account", {"account_id": eve})
        closed_at = audited.db.read(
            lambda conn: conn.execute(text(f"SELECT closed_at FROM accounts WHERE id = '{eve}'")).scalar_one()
        )
        tamper(audited, f"UPDATE accounts SET status = 'open', closed_at = NULL WHERE id = '{eve}'")
        for source, target in ((ada, eve), (eve, mal)):
            moved = {"from_account": source, "to_account": target, "amount": "1"}
            paid = await client.call_tool("transfer_funds", moved)
            assert paid.structured_content is not None and paid.structured_content["status"] == "executed"
        tamper(audited, f"UPDATE accounts SET status = 'closed', closed_at = '{closed_at}' WHERE id = '{eve}'")
    code, out = verify(audited, capsys)
    assert code == 1, out
    assert out.count(f"moved money on account {eve} at ") == 2, out
    assert f"after it closed at {closed_at} (set open in the database, and closed again)" in out, out


async def test_admin_postings_are_audited(audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Money posted outside the gate (a deposit, the demo seed) has its record, so verify accounts for it."""
    (account,) = [a.id for a in audited.ledger.accounts() if a.owner == "Ben"]
    assert main(["admin", "deposit", account, "7.50", "--db", audited.db_url]) == 0
    capsys.readouterr()
    assert verify(audited, capsys) == (0, "audit chain intact: 7 records\n")
    assert [(r["tool"], r["arguments"]["amount"]) for r in audited.audit(event="admin")][1:] == [("deposit", "7.50")]
    seeded = Harness("memory", f"sqlite:///{tmp_path / 'seeded.db'}")
    seeded.ledger.seed_demo()
    assert verify(seeded, capsys) == (0, "audit chain intact: 3 records\n")
    assert [r["tool"] for r in seeded.audit(event="admin")] == ["seed_demo"] * 3


async def test_a_checkpoint_catches_truncation_and_rollback_behind_it(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(checkpoint), "--db", audited.db_url]) == 0
    assert "checkpoint of record 6" in capsys.readouterr().out
    assert verify(audited, capsys, "--checkpoint", str(checkpoint)) == (
        0,
        "audit chain intact: 6 records; it holds the checkpoint's record 6\n",
    )
    # The last (money-less) transaction undone whole, approval included: only the checkpoint can tell.
    (rejected,) = audited.audit(event="rejected")
    tamper(
        audited,
        f"DELETE FROM approvals WHERE ref = '{rejected['approval_ref']}'",
        "DELETE FROM audit_log WHERE seq > 4",
        "DELETE FROM audit_heads WHERE seq > 4",
    )
    assert verify(audited, capsys) == (0, "audit chain intact: 4 records\n")
    code, out = verify(audited, capsys, "--checkpoint", str(checkpoint))
    assert code == 1 and "the chain ends at record 4, before the checkpoint's record 6 (truncated" in out
    # ... and after the rollback, new records take the old numbers: the checkpoint's record differs.
    audited.open_account("1", "Zed")
    audited.open_account("1", "Zoe")
    code, out = verify(audited, capsys, "--checkpoint", str(checkpoint))
    assert code == 1 and "record 6: differs from the checkpoint" in out


async def test_a_transfer_cut_from_the_middle_and_the_rest_chained_again_is_caught_only_behind_a_checkpoint(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A record's signature covers its content, never its position: records after a deleted transfer, their
    positions cleared and the heads over them deleted, are chained again as if new. So everything after the
    latest checkpoint is a tail a database writer can cut, from anywhere in it (the README's threat model)."""
    checkpoint = tmp_path / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(checkpoint), "--db", audited.db_url]) == 0
    (executed,) = audited.audit(event="executed")
    details, ref = executed["result"]["details"], executed["approval_ref"]
    transaction = details["transaction_id"]
    tamper(  # records 2 to 4, the approved $10.00, gone with its money; records 5 and 6 unchained
        audited,
        f"DELETE FROM audit_log WHERE approval_ref = '{ref}'",
        f"DELETE FROM approvals WHERE ref = '{ref}'",
        f"DELETE FROM entries WHERE transaction_id = '{transaction}'",
        f"DELETE FROM transactions WHERE id = '{transaction}'",
        f"UPDATE accounts SET balance_minor = balance_minor + 1000 WHERE id = '{details['from_account']}'",
        f"UPDATE accounts SET balance_minor = balance_minor - 1000 WHERE id = '{details['to_account']}'",
        "UPDATE audit_log SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq > 1",
        "DELETE FROM audit_heads WHERE seq > 1",
    )
    assert audited.ledger.check_invariants() == []
    capsys.readouterr()
    assert verify(audited, capsys) == (0, "audit chain intact: 3 records\n")
    code, out = verify(audited, capsys, "--checkpoint", str(checkpoint))
    assert code == 1 and "the chain ends at record 3, before the checkpoint's record 6 (truncated" in out


async def test_a_checkpoint_from_another_key_is_refused(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    forged = tmp_path / "checkpoint.json"
    other_key = str(tmp_path / "other.key")
    load_signer(Path(other_key))
    assert (
        main(["audit", "checkpoint", "--out", str(forged), "--db", audited.db_url, "--audit-key-file", other_key]) == 2
    )
    assert "not a known audit key" in capsys.readouterr().err  # the chain does not verify under that key
    head = load_signer(Path(other_key)).sign_head(6, audited.audit()[-1]["hash"], "2026-01-01T00:00:00.000000Z", None)
    forged.write_text(json.dumps(head.as_json()))
    verify_with_it = ["audit", "verify", "--db", audited.db_url, "--checkpoint", str(forged)]
    assert main(verify_with_it) == 2
    assert "the checkpoint is not signed by a known audit key" in capsys.readouterr().err
    forged.write_text('{"seq": "6"}')
    assert main(verify_with_it) == 2
    assert "field 'seq' is missing or not a int" in capsys.readouterr().err


def test_a_checkpoint_of_an_empty_chain_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint made before the first record (record 0, the genesis hash) vouches for nothing and is held by
    every chain grown from it, not reported as a truncation."""
    db, checkpoint = f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "checkpoint.json"
    assert main(["admin", "init", "--no-seed", "--db", db]) == 0
    assert main(["audit", "checkpoint", "--out", str(checkpoint), "--db", db]) == 0
    capsys.readouterr()
    verify_with_it = ["audit", "verify", "--db", db, "--checkpoint", str(checkpoint)]
    assert main(verify_with_it) == 0
    assert capsys.readouterr().out == "audit chain intact: 0 records; it holds the checkpoint's record 0\n"
    assert main(["admin", "create", "Ada", "--id", "ACC-001", "--db", db]) == 0
    assert main(["admin", "deposit", "ACC-001", "5", "--db", db]) == 0
    capsys.readouterr()
    assert main(verify_with_it) == 0
    assert capsys.readouterr().out == "audit chain intact: 1 records; it holds the checkpoint's record 0\n"


async def test_a_forged_checkpoint_is_refused_in_one_plain_line(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A checkpoint file is not trusted until its signature is: a key id written as terminal control (to paint
    "audit chain intact" over the refusal) is shown escaped, and a nesting too deep to parse is "not a
    checkpoint" (exit 2), never an unexpected error."""
    forged = tmp_path / "checkpoint.json"
    head = {"seq": 6, "hash": "0" * 64, "at": "2026-01-01T00:00:00.000000Z", "signature": "00"}
    forged.write_text(json.dumps({**head, "key_id": "\x1b[2K\raudit chain intact\u202e"}))
    verify_with_it = ["audit", "verify", "--db", audited.db_url, "--checkpoint", str(forged)]
    assert main(verify_with_it) == 2
    err = capsys.readouterr().err
    assert "not signed by a known audit key" in err and "\\x1b[2K\\raudit chain intact\\u202e" in err
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err
    forged.write_text("[" * 100_000)
    assert main(verify_with_it) == 2
    assert "not a checkpoint written by 'audit checkpoint' (RecursionError)" in capsys.readouterr().err


async def test_an_auditor_verifies_with_the_public_key_only(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    public = tmp_path / "audit.pub"
    assert main(["audit", "public-key"]) == 0
    public.write_text(capsys.readouterr().out)
    assert verify(audited, capsys, "--public-keys", str(public)) == (0, "audit chain intact: 6 records\n")
    other = tmp_path / "other.key"
    load_signer(other)
    assert main(["audit", "public-key", "--audit-key-file", str(other)]) == 0
    public.write_text(capsys.readouterr().out)
    code, out = verify(audited, capsys, "--public-keys", str(public))
    assert code == 1 and "which is not a known audit key" in out


@pytest.mark.parametrize("table", ["audit_heads", "approvals"])
async def test_a_table_renamed_behind_the_servers_back_is_a_finding_not_a_crash(
    audited: Harness, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    """Whatever the database refuses while verifying is named, by its driver's error class, and exits 1: never a
    traceback, a statement with its parameters, or 'unavailable, try again' (SQLite calls a missing table an
    OperationalError, as it does a file it cannot open)."""
    tamper(audited, f"ALTER TABLE {table} RENAME TO {table}_gone")
    code = main(["audit", "verify", "--db", audited.db_url])
    out, err = capsys.readouterr()
    assert (code, err) == (1, ""), err
    error = "UndefinedTable" if audited.db.dialect == "postgresql" else "OperationalError"
    assert out.startswith("audit chain BROKEN (0 records read):\n"), out
    assert f"  reading the audit log failed in the database: {error}: " in out and table in out
    assert "[SQL" not in out and "Traceback" not in out


MISTYPED = [
    ("UPDATE audit_log SET seq = 'x' WHERE seq = 3", "audit_log row rid '{rid3}': seq holds 'x'"),
    ("UPDATE audit_log SET amount_minor = 'abc' WHERE seq = 4", "audit_log row rid '{rid4}': amount_minor holds 'abc'"),
    ("UPDATE audit_heads SET seq = 'x' WHERE seq = 4", "audit_heads row hash '{head4}': seq holds 'x'"),
    (
        "UPDATE entries SET amount_minor = 'z' WHERE id = (SELECT MIN(id) FROM entries WHERE amount_minor > 0)",
        "entries row id '{entry}': amount_minor holds 'z'",
    ),
]
"""Values of another type than their column's, as SQLite keeps them (PostgreSQL refuses them), and what names
each: its table, its row and its column."""
MISTYPED_IDS = ["record-seq", "record-amount", "head-seq", "entry-amount"]


def mistyped(harness: Harness, statement: str, named: str) -> str:
    """Run `statement` (after reading what names its row) and return `named` filled in."""
    rows = {r["seq"]: r for r in harness.audit()}

    def ids(conn: Connection) -> dict[str, str]:
        head4 = conn.execute(text("SELECT hash FROM audit_heads WHERE seq = 4")).scalar_one()
        entry = conn.execute(text("SELECT MIN(id) FROM entries WHERE amount_minor > 0")).scalar_one()
        return {"head4": head4, "entry": entry}

    filled = named.format(rid3=rows[3]["rid"], rid4=rows[4]["rid"], **harness.db.read(ids))
    tamper(harness, statement)
    return filled


@pytest.mark.parametrize(("statement", "named"), MISTYPED, ids=MISTYPED_IDS)
async def test_a_value_of_another_type_than_its_column_is_a_finding_not_a_crash(
    audited: Harness, capsys: pytest.CaptureFixture[str], statement: str, named: str
) -> None:
    """SQLite keeps a text where an integer belongs (PostgreSQL refuses it): such an edit is named by its table, row
    and column, and exits 1, like any other, never a bare 'invalid literal for int()' on stderr (exit 2, what a
    mistyped option gets)."""
    if audited.db.dialect == "postgresql":
        pytest.skip("PostgreSQL refuses a value of another type than its column's")
    expected = mistyped(audited, statement, named)
    code = main(["audit", "verify", "--db", audited.db_url])
    out, err = capsys.readouterr()
    assert (code, err) == (1, ""), err
    assert out.startswith("audit chain BROKEN (0 records read):\n"), out
    assert f"  reading the audit log failed: a stored value is not of its column's type ({expected}" in out, out
    assert "invalid literal" not in out


@pytest.mark.parametrize(("statement", "named"), MISTYPED, ids=MISTYPED_IDS)
@pytest.mark.parametrize(
    ("command", "says"),
    [
        (("checkpoint", "--out", "checkpoint.json"), "the audit chain does not verify (reading the audit log failed"),
        (("adopt",), "refusing to adopt: reading the audit log failed"),
    ],
    ids=["checkpoint", "adopt"],
)
async def test_a_signing_command_on_a_value_of_another_type_than_its_column_is_refused_naming_it(
    audited: Harness,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    statement: str,
    named: str,
    command: tuple[str, ...],
    says: str,
) -> None:
    """`audit checkpoint` and `audit adopt` vouch only for a chain that verifies: a mistyped value is named by its
    table, row and column (never a bare 'invalid literal for int()'), and nothing is signed or written."""
    if audited.db.dialect == "postgresql":
        pytest.skip("PostgreSQL refuses a value of another type than its column's")
    monkeypatch.chdir(tmp_path)
    expected = mistyped(audited, statement, named)
    records = audited.audit()
    code = main(["audit", *command, "--db", audited.db_url])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), out
    assert err.startswith(f"bankgate-mcp: {says}: a stored value is not of its column's type ({expected}"), err
    assert not (tmp_path / "checkpoint.json").exists() and audited.audit() == records


BOUNDARY_TAMPERING = {
    "untouched": (),
    "edited-at-the-boundary": ("UPDATE audit_log SET reason = 'edited' WHERE seq = 3",),
    "reordered-across-it": (
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    ),
    "deleted-at-it": ("DELETE FROM audit_log WHERE seq = 4",),
    "ledger-edited-behind-it": ("UPDATE entries SET amount_minor = amount_minor * 2",),
}
"""With pages of two records (1-2, 3-4, 5-6): an edit, a reordering and a deletion at a page's edge, and money the
records of several pages claim."""


@pytest.mark.parametrize("statements", BOUNDARY_TAMPERING.values(), ids=BOUNDARY_TAMPERING.keys())
async def test_verify_reads_the_log_a_page_at_a_time_and_finds_the_same(
    audited: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, statements: tuple[str, ...]
) -> None:
    """`audit verify` holds a page of records at a time, never the whole log: every read of it asks for at most a
    page (`VERIFY_PAGE`), and what it reports, read in pages of two, is what it reports read whole."""
    tamper(audited, *statements)
    whole = verify(audited, capsys)
    assert whole[0] == (0 if not statements else 1), whole[1]
    limits: list[object] = []

    def page_reads(
        conn: object, clause: object, multiparams: list[dict[str, object]], params: dict[str, object], *_: object
    ) -> None:
        if "FROM audit_log" in str(clause) and "OFFSET" in str(clause):
            limits.extend(p["limit"] for p in multiparams or [params])

    monkeypatch.setattr(reader, "VERIFY_PAGE", 2)
    event.listen(Engine, "before_execute", page_reads)
    try:
        paged = verify(audited, capsys)
    finally:
        event.remove(Engine, "before_execute", page_reads)
    assert paged == whole
    assert len(limits) > 6 and set(limits) == {2}, limits  # 6 records in pages of 2, each check reading them


async def test_records_signed_before_a_key_rotation_still_verify(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key, new_key, rotated = Path(os.environ[KEY_FILE_ENV]), tmp_path / "new.key", tmp_path / "rotated.key"
    old_id, new_id = load_signer(old_key).key_id, load_signer(new_key).key_id
    rotated.write_text(new_key.read_text() + old_key.read_text())  # the new key on top signs; the old one verifies
    rotated.chmod(0o600)
    monkeypatch.setenv(KEY_FILE_ENV, str(rotated))
    after = Ledger(audited.db, audit=AuditWriter())
    after.deposit(after.create_account("After rotation").id, "3")
    assert verify(audited, capsys) == (0, "audit chain intact: 7 records\n")
    signers = [r["key_id"] for r in audited.audit() if r["key_id"]]
    assert signers[-1] == new_id and set(signers[:-1]) == {old_id}
    monkeypatch.setenv(KEY_FILE_ENV, str(new_key))  # the old key dropped: what it signed no longer verifies
    code, out = verify(audited, capsys)
    assert code == 1 and f"signed by key {old_id}, which is not a known audit key" in out


async def test_tail_shows_decisions(audited: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "tail", "-n", "2", "--db", audited.db_url]) == 0
    out = capsys.readouterr().out
    assert "requested" in out and "rejected" in out and "executed" not in out


async def test_tail_states_the_zone_of_its_times(audited: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """Records are dated in UTC; shown as '2026-12-05 06:38:07' alone, an auditor away from UTC reads local time."""
    assert main(["audit", "tail", "-n", "1", "--db", audited.db_url]) == 0
    at = str(audited.audit()[-1]["at"])
    assert f"  {at[:10]} {at[11:19]} UTC  " in capsys.readouterr().out


async def test_tail_shows_what_an_answer_wrote_as_text_never_as_terminal_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An answer's note comes from the client and lands in the audit record: printed raw, it could move the
    auditor's cursor, erase the `executed` line above and print a `rejected` one in its place. `audit tail` shows
    it escaped, each record on its own lines."""
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    args = {"from_account": harness.open_account("100"), "to_account": harness.open_account("0"), "amount": "10"}
    forged = "\x1b[1A\x1b[2K\u202e\r#3  2026-12-04 23:00:00  rejected   local  transfer_funds(amount=10)"
    async with harness.client(ScriptedResponder(approve(note=forged))) as client:
        await client.call_tool("transfer_funds", args)
    assert [r["event"] for r in harness.audit()][-1] == "executed"

    assert main(["audit", "tail", "-n", "20", "--db", harness.db_url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert "note: \\x1b[1A\\x1b[2K\\u202e\\r#3  2026-12-04" in out
    assert not any(line.startswith("#3  2026-12-04 23:00:00") for line in out.splitlines())


async def test_tail_quotes_a_memo_so_it_cannot_pass_for_another_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A memo is the requester's text among the call's arguments: printed bare, "rent, to_account=ACC-9" read
    as a second payee named before the real one (the arguments are listed in key order, the memo first). Each
    value is shown quoted, as one value."""
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    source, target = harness.open_account("100"), harness.open_account("0")
    memo = "rent, to_account=ACC-9) APR-0000000000"
    args = {"from_account": source, "to_account": target, "amount": "10", "memo": memo}
    async with harness.client(ScriptedResponder(approve())) as client:
        await client.call_tool("transfer_funds", args)
    assert [r["event"] for r in harness.audit()][-1] == "executed"

    assert main(["audit", "tail", "-n", "1", "--db", harness.db_url]) == 0
    [line, *_] = capsys.readouterr().out.splitlines()
    assert f'memo="{memo}", to_account="{target}")' in line, line
    rest = line.replace(f'"{memo}"', "")  # the line without the quoted memo: one payee, one approval
    assert rest.count("to_account=") == 1 and rest.count("APR-") == 1, line


@pytest.mark.parametrize("column", ["at", "event", "tool", "approval_ref", "seq", "arguments_json"])
async def test_tail_shows_every_column_a_database_writer_edited_as_text(
    audited: Harness, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    """`audit tail` lists records before anyone verifies them: a column rewritten in the database (its record no
    longer verifies) must not move the auditor's cursor and print a record in its place."""
    if column == "seq" and audited.db.dialect == "postgresql":
        pytest.skip("PostgreSQL refuses text in an integer column")
    forged = "\x1b[1A\x1b[2K\u202e\r#9  2026-12-04 23:00:00  rejected"
    audited.db.run(lambda conn: conn.execute(text(f"UPDATE audit_log SET {column} = :f WHERE event = 'executed'"),
                                             {"f": forged}))  # fmt: skip
    assert main(["audit", "tail", "-n", "20", "--db", audited.db_url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert "\\x1b[1A\\x1b[2K\\u202e\\r#9" in out


@pytest.mark.parametrize("arguments", ["not JSON", "[1, 2]"])
async def test_tail_shows_arguments_edited_out_of_a_json_object_as_stored(
    audited: Harness, capsys: pytest.CaptureFixture[str], arguments: str
) -> None:
    """A record's arguments edited into text that is not JSON ended `audit tail` in a bare JSON error (exit 2), and
    into JSON that is not an object in 'unexpected AttributeError': the record is listed, its arguments as stored."""
    [executed] = audited.audit(event="executed")
    tamper(audited, f"UPDATE audit_log SET arguments_json = '{arguments}' WHERE event = 'executed'")
    assert main(["audit", "tail", "-n", "20", "--db", audited.db_url]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if "executed" in line]
    assert line.endswith(f"  transfer_funds({arguments})  {executed['approval_ref']}"), line


def test_policy_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["policy", "check", str(Path(__file__).with_name("test_policy.toml"))]) == 0
    assert "transfer_funds: default require_approval (any); small -> allow" in capsys.readouterr().out
    args = '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "700"}'
    assert main(["admin", "init", "--db", db, "--seed-demo"]) == 0
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "decision: require_approval" in out and "$5,000.00 now, $4,300.00 after" in out
    assert main(["admin", "accounts", "--db", db]) == 0
    assert "$5,000.00" in capsys.readouterr().out  # explained, not executed
    bad = tmp_path / "bad.toml"
    bad.write_text("[tools.transfer_funds]\ndefault = 'sometimes'\n")
    assert main(["policy", "check", str(bad)]) == 2
    assert f"{bad}:2: tools.transfer_funds.default: must be one of" in capsys.readouterr().err


def auditors_public_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    public = tmp_path / "audit.pub"
    assert main(["audit", "public-key"]) == 0
    public.write_text(capsys.readouterr().out)
    return public


async def test_an_auditors_verify_never_migrates_the_ledger(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With public keys only nothing is written: an auditor's newer bankgate does not migrate the ledger the
    servers run on (they would then refuse to restart); it says the ledger is behind, and changes nothing."""
    public = auditors_public_keys(tmp_path, capsys)
    newer = [*migrations.available(), migrations.Migration(9998, "newer_release", "CREATE TABLE newer_release (x INT)")]
    monkeypatch.setattr(migrations, "available", lambda: newer)
    assert main(["audit", "verify", "--db", audited.db_url, "--public-keys", str(public)]) == 2
    assert "migration 9998_newer_release is not applied" in capsys.readouterr().err
    latest = audited.db.read(lambda conn: conn.execute(text("SELECT MAX(version) FROM schema_migrations")).scalar())
    assert latest == migrations.available()[-2].version


LISTINGS = [
    ("audit", "tail"),
    ("admin", "accounts"),
    ("admin", "history", "ACC-001"),
    ("admin", "invariants"),
    ("admin", "grants"),
    ("approvers", "list"),
]
"""Commands that only read the ledger."""


@pytest.mark.parametrize("command", LISTINGS, ids=[" ".join(c) for c in LISTINGS])
async def test_a_listing_never_migrates_the_ledger(
    audited: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """An operator's newer bankgate reading a ledger its servers still serve on the older release says the ledger
    is behind, and changes nothing: migrated, the ledger would be refused by the servers at their next start."""
    newer = [*migrations.available(), migrations.Migration(9998, "newer_release", "CREATE TABLE newer_release (x INT)")]
    monkeypatch.setattr(migrations, "available", lambda: newer)
    assert main([*command, "--db", audited.db_url]) == 2
    assert "migration 9998_newer_release is not applied" in capsys.readouterr().err
    latest = audited.db.read(lambda conn: conn.execute(text("SELECT MAX(version) FROM schema_migrations")).scalar())
    assert latest == migrations.available()[-2].version


@pytest.mark.parametrize("command", LISTINGS, ids=[" ".join(c) for c in LISTINGS])
async def test_a_listing_needs_no_audit_key(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Reading signs nothing: an operator or auditor without the signing key (kept on the servers) may list."""
    missing = tmp_path / "no-such.key"
    assert main([*command, "--db", audited.db_url, "--audit-key-file", str(missing)]) == 0, capsys.readouterr().err
    assert not missing.exists()


async def test_an_auditor_with_read_only_access_verifies(
    audited: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """PostgreSQL: an auditor's role may only read the ledger's schema; `verify --public-keys` needs no more."""
    if audited.db.dialect != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    public = auditors_public_keys(tmp_path, capsys)
    role, base, url = f"auditor_{uuid.uuid4().hex[:12]}", make_url(audited.db_url), make_url(audited.db_url)
    schema = audited.db.read(lambda conn: conn.execute(text("SELECT current_schema()")).scalar_one())
    with psycopg.connect(base.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        c.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        try:
            code = main(["audit", "verify", "--db", url.set(username=role).render_as_string(hide_password=False),
                         "--public-keys", str(public)])  # fmt: skip
            assert (code, capsys.readouterr().out) == (0, "audit chain intact: 6 records\n")
        finally:
            c.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
