"""The required-work floor does the checks and records it claims: a bound that skipped one would
make bankgate's goals look unreachable, or reachable, for the wrong reason."""

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.server.mcpserver import MCPServer

from bench.required_work import PRINCIPAL, Records, register

TRANSFER = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "12.34"}
Callback = ElicitationFnT


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "records.db")


def answering(yes: bool, asked: list[str], meanwhile: Callable[[], None] = lambda: None) -> Callback:
    async def callback(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        meanwhile()
        return types.ElicitResult(action="accept", content={"approve": yes})

    return callback


def call(records: Records, tool: str, arguments: dict[str, str], callback: Callback, mode: str = "auto") -> str:
    server = MCPServer("required")
    register(server, records)

    async def scenario() -> str:
        async with Client(server, elicitation_callback=callback, mode=mode) as client:
            result = await client.call_tool(tool, arguments)
        content = result.content[0]
        assert isinstance(content, types.TextContent)
        return ("error: " if result.is_error else "") + content.text

    return anyio.run(scenario)


def rows(records: Records, sql: str) -> list[tuple[object, ...]]:
    """Read behind the floor's back, on a connection of our own."""
    with sqlite3.connect(records.path) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approved_transfer_uses_its_approval_once_moves_the_money_and_signs_its_record(
    records: Records, mode: str
) -> None:
    asked: list[str] = []
    assert call(records, "approve_recorded", TRANSFER, answering(True, asked), mode) == "executed"

    assert len(asked) == 1
    assert rows(records, "SELECT status FROM approvals") == [("approved",)]
    assert rows(records, "SELECT id, minor FROM balances WHERE id IN ('ACC-001', 'ACC-002') ORDER BY id") == [
        ("ACC-001", 100000000000 - 1234),
        ("ACC-002", 1234),
    ]
    [(record, signature)] = rows(records, "SELECT record, signature FROM audit")
    assert isinstance(record, str) and isinstance(signature, str)
    assert json.loads(record)["arguments"] == TRANSFER and json.loads(record)["principal"] == PRINCIPAL
    records.public_key.verify(bytes.fromhex(signature), record.encode())  # raises if not this key's


def test_a_rejected_approval_is_recorded_as_such_and_moves_nothing(records: Records) -> None:
    assert call(records, "approve_recorded", TRANSFER, answering(False, [])) == "rejected"

    assert rows(records, "SELECT status FROM approvals") == [("rejected",)]
    assert rows(records, "SELECT count(*) FROM transfers UNION ALL SELECT count(*) FROM audit") == [(0,), (0,)]


def test_nothing_is_settled_without_a_pending_approval_of_exactly_these_arguments(records: Records) -> None:
    call(records, "approve_recorded", TRANSFER, answering(False, []))  # its approval is spent (rejected)

    with pytest.raises(Exception, match="no pending approval"):
        records.settle("0" * 64, TRANSFER, 1234)
    assert rows(records, "SELECT count(*) FROM transfers") == [(0,)]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({**TRANSFER, "from_account": "ACC-002", "to_account": "ACC-001"}, "not entitled"),
        ({**TRANSFER, "amount": "50000.01"}, "above ceiling"),
        ({"from_account": "ACC-003", "to_account": "ACC-001", "amount": "0.01"}, "insufficient funds"),
        ({**TRANSFER, "amount": "-5.00"}, "not a positive amount"),
    ],
)
def test_the_policy_refuses_before_asking(records: Records, arguments: dict[str, str], reason: str) -> None:
    asked: list[str] = []

    assert reason in call(records, "approve_recorded", arguments, answering(True, asked))
    assert asked == [] and rows(records, "SELECT count(*) FROM approvals") == [(0,)]


def test_the_decision_is_taken_again_at_settlement_on_the_accounts_as_they_are_then(records: Records) -> None:
    def revoke() -> None:
        with sqlite3.connect(records.path) as conn:
            conn.execute("DELETE FROM access WHERE account_id = 'ACC-001'")

    assert "not entitled" in call(records, "approve_recorded", TRANSFER, answering(True, [], revoke))
    assert rows(records, "SELECT count(*) FROM transfers") == [(0,)]
    assert rows(records, "SELECT status FROM approvals") == [("pending",)]  # rolled back with the refusal


def test_a_balance_is_read_only_by_whom_may_see_it(records: Records) -> None:
    never: Callback = answering(True, [])

    assert "balance: $1,000,000,000.00" in call(records, "read_entitled", {"account_id": "ACC-001"}, never)
    assert "unknown account ACC-002" in call(records, "read_entitled", {"account_id": "ACC-002"}, never)
