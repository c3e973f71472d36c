"""Hostile and malformed arguments through a real MCP client: a clear error, and nothing changes."""

from typing import Any

import pytest
from sqlalchemy import text

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness

pytestmark = pytest.mark.anyio

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("get_account_balance", {}, "missing_argument", "account_id is required"),
    ("get_account_balance", {"account_id": 1}, "invalid_account_id", "account_id must be a string"),
    ("get_account_balance", {"account_id": "АCC-001"}, "invalid_account_id", "look-alike"),
    ("get_account_balance", {"account_id": "ACC-００1"}, "invalid_account_id", "look-alike"),
    ("get_account_balance", {"account_id": "acc-001"}, "invalid_account_id", "upper-case"),
    ("get_account_balance", {"account_id": " ACC-001"}, "invalid_account_id", "whitespace"),
    ("get_account_balance", {"account_id": "ACC-1; DROP TABLE accounts"}, "invalid_account_id", "account_id"),
    ("get_account_balance", {"account_id": "ACC-1' OR '1'='1"}, "invalid_account_id", "account_id"),
    (
        "get_account_balance",
        {"account_id": "ACC-001", "pin": "1234"},
        "unexpected_argument",
        "unexpected argument 'pin'",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002"}, "missing_argument", "amount is required"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": True},
        "invalid_amount",
        "amount",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": [5]}, "invalid_amount", "amount"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "-5"},
        "invalid_amount",
        "amount",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": 0}, "invalid_amount", "amount"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "NaN"},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1e309"},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": 10**30},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "0.001"},
        "invalid_amount",
        "decimal",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5", "memo": 7},
        "invalid_memo",
        "memo",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-001", "amount": "5"}, "same_account", "ACC-001"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-404", "amount": "5"},
        "unknown_account",
        "ACC-404",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "99999"},
        "insufficient_funds",
        "ACC-001",
    ),
    ("close_account", {"account_id": "ACC-001", "sweep_to": "SYS-EXTERNAL-USD"}, "invalid_account_id", "sweep_to"),
]


def fingerprint(harness: Harness) -> tuple[Any, ...]:
    def read(conn: Any) -> tuple[Any, ...]:
        balances = conn.execute(text("SELECT id, balance_minor, status FROM accounts ORDER BY id")).all()
        counts = [conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in ("entries", "approvals")]
        return (tuple(balances), *counts)

    return harness.db.read(read)


@pytest.fixture
def ledger(tmp_path: Any) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    return harness


@pytest.mark.parametrize(("tool", "args", "code", "says"), CASES)
async def test_bad_input_is_refused_and_changes_nothing(
    ledger: Harness, tool: str, args: dict[str, Any], code: str, says: str
) -> None:
    before = fingerprint(ledger)
    responder = ScriptedResponder(approve())
    async with ledger.client(responder) as client:
        result = await client.call_tool(tool, args)

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert "Traceback" not in result.content[0].text  # type: ignore[union-attr]
    assert responder.questions == []
    assert fingerprint(ledger) == before
