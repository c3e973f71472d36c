"""`audit adopt`: a ledger from before signed audit passes `audit verify` again, and nothing else does.

The pre-upgrade ledger is made with today's code and then rewound to what the old version left:
its `admin` records deleted (the old version audited neither deposits nor the demo funding), every
signature and key id removed (it had no key and those columns did not exist before 0005), and the
chain renumbered and rehashed. That is a faithful stand-in because the old version chained the same
columns with the same `chain_hash` (only signing and `admin` records were added), so the result is
byte for byte the chain it would have written for the same gated calls, beside the same ledger.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcp_server.audit import reader as audit_log
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.timestamps import now_text
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.server.test_audit_cli import rechain, tamper, verify

pytestmark = pytest.mark.anyio

HINT = "`bankgate-mcp audit adopt`"


async def made_before_signing(harness: Harness) -> list[str]:
    """The demo funding, a deposit and an approved transfer, as the old version left them; returns the
    ledger transactions it posted without a record (the demo funding and the deposit)."""
    harness.ledger.seed_demo()
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    async with harness.client(ScriptedResponder(approve())) as client:
        await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": "10"})
    unrecorded = [str(r["result"]["details"]["transaction_id"]) for r in harness.audit(event="admin")]
    tamper(harness, "DELETE FROM audit_log WHERE event = 'admin'")
    rechain(harness, keep_signatures=False, legacy=True)
    assert [r["event"] for r in harness.audit()] == ["requested", "approved", "executed"]
    return sorted(unrecorded)


def adopt(harness: Harness, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["audit", "adopt", "--db", harness.db_url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def checkpoint(harness: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> int:
    code = main(["audit", "checkpoint", "--out", str(tmp_path / "checkpoint.json"), "--db", harness.db_url])
    capsys.readouterr()
    return code


@pytest.mark.parametrize("written_since", [False, True], ids=["untouched-since", "written-since"])
async def test_an_upgraded_ledger_verifies_once_adopted(
    harness: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path, written_since: bool
) -> None:
    """Before: verify names the old postings (and, if nothing was written since the upgrade, the unsigned
    chain) and ends with the hint; checkpoint refuses. After one adoption both pass."""
    unrecorded = await made_before_signing(harness)
    if written_since:  # today's server signs its first write, which covers the old records before it
        harness.open_account("5", "Cy")
    code, out = verify(harness, capsys)
    assert code == 1 and out.rstrip().endswith(HINT)
    for tx in unrecorded:
        assert f"ledger transaction {tx} (" in out and "has no audit record (posted outside the gate)" in out
    assert ("no valid signature covers records 1 to 3 (written without the key)" in out) is not written_since
    assert checkpoint(harness, capsys, tmp_path) == 2
    before = len(harness.audit())

    code, out, _ = adopt(harness, capsys)
    assert code == 0 and f"adopted in signed record {before + 1}: {len(unrecorded)} ledger transactions" in out
    assert "and records 1 to 3 written before signing" in out
    assert "(funding, $5,000.00)" in out and "(deposit, $100.00)" in out
    (adoption,) = harness.audit(tool="adopt_history")
    details = adoption["result"]["details"]
    assert sorted(item["transaction_id"] for item in details["adopted"]) == unrecorded
    assert details["unsigned_through"] == 3 and adoption["signature"] is not None
    assert verify(harness, capsys) == (0, f"audit chain intact: {before + 1} records\n")
    assert checkpoint(harness, capsys, tmp_path) == 0


async def test_an_old_demo_ledger_never_used_has_an_empty_chain_to_adopt(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commonest upgrade: the default ledger, seeded by an old version and never used, has no record."""
    harness.ledger.seed_demo()
    tamper(harness, "DELETE FROM audit_log", "DELETE FROM audit_heads")
    code, out = verify(harness, capsys)
    assert code == 1 and out.count("(posted outside the gate)") == 3 and out.rstrip().endswith(HINT)
    code, out, _ = adopt(harness, capsys)
    assert (
        code == 0 and out.splitlines()[0] == "adopted in signed record 1: 3 ledger transactions posted without a record"
    )
    assert verify(harness, capsys) == (0, "audit chain intact: 1 records\n")


def forge_transfer(harness: Harness, created_at: str) -> None:
    """Money moved behind the server's back, with the books kept balanced."""
    source, target = harness.open_account("50", "Eve"), harness.open_account("0", "Mallory")
    tamper(
        harness,
        f"INSERT INTO transactions (id, kind, memo, created_at) VALUES ('TX-forged', 'transfer', NULL, '{created_at}')",
        f"INSERT INTO entries (id, transaction_id, account_id, amount_minor) VALUES ('TX-forged:1', 'TX-forged', "
        f"'{source}', -500), ('TX-forged:2', 'TX-forged', '{target}', 500)",
        f"UPDATE accounts SET balance_minor = balance_minor - 500 WHERE id = '{source}'",
        f"UPDATE accounts SET balance_minor = balance_minor + 500 WHERE id = '{target}'",
    )
    assert harness.ledger.check_invariants() == []


async def test_a_transaction_posted_after_the_adoption_is_still_named(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Adoption covers what it listed, once: money moved behind the server's back later is a forgery,
    even dated back to before signing; it gets no hint, and a second adoption refuses to cover it."""
    await made_before_signing(harness)
    assert adopt(harness, capsys)[0] == 0
    forge_transfer(harness, "2020-01-01T00:00:00.000000Z")
    code, out = verify(harness, capsys)
    assert code == 1 and "ledger transaction TX-forged (transfer, $5.00) has no audit record" in out
    assert HINT not in out
    records = len(harness.audit())
    code, _, err = adopt(harness, capsys)
    assert code == 2 and "refusing to adopt" in err and "ledger transaction TX-forged (transfer, $5.00)" in err
    assert len(harness.audit()) == records


async def test_an_adopted_posting_paid_to_another_account_is_named(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adopted posting has no record of its own stating its accounts: the adoption states them, so its credit
    moved to another account (both balances kept their entries' sums) is named like any gated transfer's."""
    await made_before_signing(harness)
    assert adopt(harness, capsys)[0] == 0
    (funding,) = [a for a in harness.ledger.accounts() if a.id == "ACC-002"]
    mallory = harness.ledger.create_account("Mallory").id
    tamper(
        harness,
        f"UPDATE entries SET account_id = '{mallory}' WHERE account_id = 'ACC-002' AND amount_minor > 0",
        f"UPDATE accounts SET balance_minor = {funding.balance_minor} WHERE id = '{mallory}'",
        "UPDATE accounts SET balance_minor = 0 WHERE id = 'ACC-002'",
    )
    assert harness.ledger.check_invariants() == []
    code, out = verify(harness, capsys)
    assert code == 1 and "from SYS-EXTERNAL-USD to ACC-002, but ledger transaction" in out, out
    assert f"posts SYS-EXTERNAL-USD -{funding.balance_minor}, {mallory} +{funding.balance_minor} (edited)" in out, out


async def test_an_adopted_deposit_into_an_account_closed_long_before_the_adoption_verifies(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adoption is dated when it vouched, not when the old deposit it adopts was posted: an account closed
    before it (its deposit adopted) is no account used after its closing."""
    cy, ada = harness.open_account("5", "Cy"), harness.open_account("0", "Ada")
    async with harness.client(ScriptedResponder(approve())) as client:
        closed = await client.call_tool("close_account", {"account_id": cy, "sweep_to": ada})
    assert closed.structured_content is not None and closed.structured_content["status"] == "executed"
    tamper(harness, "DELETE FROM audit_log WHERE event = 'admin'")
    rechain(harness, keep_signatures=False, legacy=True)
    with monkeypatch.context() as later:  # the upgrade, five minutes after the old version's closing
        now = time.time
        later.setattr(time, "time", lambda: now() + 300)
        code, _, err = adopt(harness, capsys)
    assert code == 0, err
    code, out = verify(harness, capsys)
    assert code == 0, out


async def test_a_forgery_on_a_ledger_made_after_the_upgrade_is_never_adopted(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A posting dated after the first signature cannot be an old version's (every signing version records
    its postings), so neither the hint nor adopt treat it as one, adoption or not."""
    harness.ledger.seed_demo()
    forge_transfer(harness, now_text())
    code, out = verify(harness, capsys)
    assert code == 1 and "ledger transaction TX-forged (transfer, $5.00) has no audit record" in out
    assert HINT not in out
    code, _, err = adopt(harness, capsys)
    assert code == 2 and "ledger transaction TX-forged (transfer, $5.00)" in err
    assert harness.audit(tool="adopt_history") == []


@pytest.mark.parametrize(
    "statements",
    [
        ["UPDATE audit_log SET note = 'changed' WHERE seq = 2"],
        ["DELETE FROM audit_log WHERE seq = 2"],
    ],
    ids=["edited", "deleted"],
)
async def test_adopt_refuses_a_tampered_old_chain(
    harness: Harness, capsys: pytest.CaptureFixture[str], statements: list[str]
) -> None:
    await made_before_signing(harness)
    tamper(harness, *statements)
    code, out = verify(harness, capsys)
    assert code == 1 and HINT not in out
    records = harness.audit()
    code, _, err = adopt(harness, capsys)
    assert code == 2 and "refusing to adopt" in err
    assert "record 3: does not follow the previous record" in err or "record 2: content does not match" in err
    assert harness.audit() == records


async def test_adopt_refuses_a_new_chain_stripped_of_its_signatures(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without signatures a new chain looks old, but its `admin` records say a signing version wrote it."""
    harness.ledger.seed_demo()
    Sequencer(harness.db, AuditWriter()).chain()
    tamper(harness, "UPDATE audit_log SET signature = NULL, key_id = NULL", "DELETE FROM audit_heads")
    code, out = verify(harness, capsys)
    assert code == 1 and "no valid signature covers records 1 to 3" in out and HINT not in out
    code, _, err = adopt(harness, capsys)
    assert code == 2 and "no valid signature covers records 1 to 3" in err
    assert harness.audit(tool="adopt_history") == []


async def test_adopting_twice_changes_nothing(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    await made_before_signing(harness)
    assert adopt(harness, capsys)[0] == 0
    records = harness.audit()
    assert adopt(harness, capsys)[:2] == (0, "nothing to adopt: every ledger transaction has its audit record "
                                          "and a signature covers the chain\n")  # fmt: skip
    assert harness.audit() == records


async def test_two_adoptions_at_once_write_one_record(harness: Harness) -> None:
    """Each holds the sequencer's lock from its reading to its record, so the second sees the first's and stops."""
    await made_before_signing(harness)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: audit_log.adopt(harness.db, Sequencer(harness.db, AuditWriter())), range(2)))
    assert sorted(result is None for result in results) == [False, True]
    assert len(harness.audit(tool="adopt_history")) == 1
    assert audit_log.verify(harness.db).findings == []


async def test_a_ledger_made_after_the_upgrade_has_nothing_to_adopt(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.ledger.seed_demo()
    records = harness.audit()
    code, out, _ = adopt(harness, capsys)
    assert code == 0 and out.startswith("nothing to adopt")
    assert harness.audit() == records


async def test_adopt_needs_the_existing_key(
    harness: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Vouching is for a person holding the ledger's key: adopt never creates one."""
    await made_before_signing(harness)
    missing = tmp_path / "missing.key"
    code, _, err = adopt(harness, capsys, "--audit-key-file", str(missing))
    assert code == 2 and "does not exist" in err and not missing.exists()
    assert harness.audit(tool="adopt_history") == []


async def test_adopt_prints_a_forged_transaction_id_escaped(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A posting's id comes from the database, which may have been edited: one holding a line break
    and a terminal escape must not print as a line of bankgate's own nor clear the operator's screen."""
    [posting, *_] = await made_before_signing(harness)
    forged = "TX-1\n  TX-FORGED (deposit, $1,000,000.00)\x1b[2J"
    tamper(
        harness,
        f"INSERT INTO transactions (id, kind, memo, created_at, idempotency_key) SELECT '{forged}', kind, memo,"
        f" created_at, NULL FROM transactions WHERE id = '{posting}'",
        f"UPDATE entries SET transaction_id = '{forged}' WHERE transaction_id = '{posting}'",
        f"DELETE FROM transactions WHERE id = '{posting}'",
    )

    code, out, _ = adopt(harness, capsys)
    assert code == 0
    assert "\x1b" not in out and "\n  TX-FORGED" not in out
    assert "  TX-1\\n  TX-FORGED (deposit, $1,000,000.00)\\x1b[2J (" in out
