"""The audit chain detects every edit, insertion and deletion; the CLI reports it readably."""

from pathlib import Path

import pytest
from sqlalchemy import text

from mcp_server.cli import main
from policy.testing import ScriptedResponder, approve, reject
from tests.server.harness import Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def audited(tmp_path: Path) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    async with harness.client(ScriptedResponder(approve(note="fine"), reject())) as client:
        for amount in ("10", "20"):
            await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": amount})
    assert [r["event"] for r in harness.audit()] == ["requested", "approved", "executed", "requested", "rejected"]
    return harness


def verify(harness: Harness, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", harness.db_url])
    return code, capsys.readouterr().out


def tamper(harness: Harness, sql: str) -> None:
    harness.db.run(lambda conn: conn.execute(text(sql)))


async def test_untouched_chain_verifies(audited: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(audited, capsys) == (0, "audit chain intact: 5 records\n")


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("UPDATE audit_log SET note = 'changed' WHERE seq = 3", "record 3: content does not match its hash (edited)"),
        ("UPDATE audit_log SET amount_minor = 1 WHERE seq = 3", "record 3: content does not match its hash (edited)"),
        ("DELETE FROM audit_log WHERE seq = 2", "record 3: sequence jumps from 1 to 3"),
        (
            "INSERT INTO audit_log SELECT seq + 100, at, event, principal, tool, arguments_json, "
            "policy_version, matched_rules_json, reason, approval_ref, question_sha256, note, result_json, "
            "amount_minor, prev_hash, hash FROM audit_log WHERE seq = 2",
            "record 102: sequence jumps from 5 to 102",
        ),
        ("DELETE FROM audit_log WHERE seq = 5", "the chain ends at record 4 but the head says 5"),
    ],
    ids=["edit-note", "edit-amount", "delete-middle", "insert", "truncate-tail"],
)
async def test_tampering_is_found(audited: Harness, capsys: pytest.CaptureFixture[str], sql: str, says: str) -> None:
    tamper(audited, sql)
    code, out = verify(audited, capsys)
    assert code == 1 and "audit chain BROKEN" in out and says in out


async def test_tail_shows_decisions(audited: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "tail", "-n", "2", "--db", audited.db_url]) == 0
    out = capsys.readouterr().out
    assert "requested" in out and "rejected" in out and "executed" not in out


def test_policy_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["policy", "check", str(Path(__file__).with_name("test_policy.toml"))]) == 0
    assert "transfer_funds: default require_approval; small -> allow" in capsys.readouterr().out
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
