"""The required-work floor does the checks and records it claims: a bound that skipped one would
make bankgate's goals look unreachable, or reachable, for the wrong reason."""

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from bench.required_work import APPROVAL_TTL, MAX_PENDING, PRINCIPAL, Asked, Records, register

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


def rows(records: Records, sql: str) -> list[tuple[Any, ...]]:
    """Read behind the floor's back, on a connection of our own."""
    with sqlite3.connect(records.path) as conn:
        return conn.execute(sql).fetchall()


def audit(records: Records) -> list[dict[str, Any]]:
    """The audit records, each checked to carry this floor's signature (`verify` raises otherwise)."""
    found = []
    for record, signature in rows(records, "SELECT record, signature FROM audit ORDER BY id"):
        assert isinstance(record, str) and isinstance(signature, str)
        records.public_key.verify(bytes.fromhex(signature), record.encode())
        found.append(json.loads(record))
    return found


def moved(records: Records) -> dict[str, int]:
    """Each account's balance change since seeding."""
    now = dict(rows(records, "SELECT id, minor FROM balances"))
    return {account: now[account] - OPENING[account] for account in OPENING if now[account] != OPENING[account]}


OPENING = {"ACC-001": 100000000000, "ACC-002": 0, "ACC-003": 0}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approved_transfer_uses_its_approval_once_posts_two_entries_and_signs_its_records(
    records: Records, mode: str
) -> None:
    asked: list[str] = []
    assert call(records, "approve_recorded", TRANSFER, answering(True, asked), mode) == "executed"

    assert len(asked) == 1 and "\nAnswer by: " in asked[0] and "\nReference: APR-" in asked[0]
    [(approval, status, question)] = rows(records, "SELECT id, status, question FROM approvals")
    assert status == "executed" and question == asked[0]
    assert rows(records, "SELECT approval, account_id, minor FROM entries ORDER BY leg") == [
        (approval, "ACC-001", -1234),
        (approval, "ACC-002", 1234),
    ]
    balance_is_entries = "SELECT account_id, sum(minor) FROM entries GROUP BY account_id"
    assert moved(records) == dict(rows(records, balance_is_entries)) == {"ACC-001": -1234, "ACC-002": 1234}
    requested, executed = audit(records)
    assert requested["event"] == "requested" and executed["event"] == "executed"
    assert requested["approval"] == executed["approval"] == approval
    assert requested["question_sha256"] == hashlib.sha256(asked[0].encode()).hexdigest()
    assert executed["arguments"] == TRANSFER and executed["principal"] == PRINCIPAL


def test_a_rejected_approval_is_recorded_as_such_and_moves_nothing(records: Records) -> None:
    assert call(records, "approve_recorded", TRANSFER, answering(False, [])) == "rejected"

    assert rows(records, "SELECT status FROM approvals") == [("rejected",)]
    assert rows(records, "SELECT count(*) FROM entries") == [(0,)] and moved(records) == {}
    assert [record["event"] for record in audit(records)] == ["requested", "rejected"]


def test_nothing_is_settled_without_a_pending_approval_of_exactly_these_arguments(records: Records) -> None:
    call(records, "approve_recorded", TRANSFER, answering(False, []))  # its approval is spent (rejected)
    [spent] = [Asked(*row) for row in rows(records, "SELECT id, question FROM approvals")]
    other = records.ask({**TRANSFER, "amount": "12.35"})

    with pytest.raises(ToolError, match="not pending"):
        records.settle(spent, TRANSFER, 1234, approve=True)
    with pytest.raises(ToolError, match="not pending"):
        records.settle(other, TRANSFER, 1234, approve=True)
    assert rows(records, "SELECT count(*) FROM entries") == [(0,)]


def test_two_requests_alike_are_two_questions_and_an_answer_settles_only_the_one_it_was_shown(
    records: Records,
) -> None:
    first, second = records.ask(TRANSFER), records.ask(TRANSFER)
    assert first.question != second.question  # each states its own reference

    with pytest.raises(ToolError, match="not pending"):
        records.settle(Asked(first.approval, second.question), TRANSFER, 1234, approve=True)
    assert records.settle(first, TRANSFER, 1234, approve=True) == "executed"
    assert dict(rows(records, "SELECT id, status FROM approvals")) == {
        first.approval: "executed",
        second.approval: "pending",
    }


def test_an_answer_past_the_deadline_settles_the_question_expired_and_moves_nothing(records: Records) -> None:
    def later() -> None:
        records.clock = lambda: time.time() + APPROVAL_TTL + 1

    assert call(records, "approve_recorded", TRANSFER, answering(True, [], later)) == "expired"
    assert rows(records, "SELECT status FROM approvals") == [("expired",)]
    assert rows(records, "SELECT count(*) FROM entries") == [(0,)] and moved(records) == {}
    assert [record["event"] for record in audit(records)] == ["requested", "expired"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approval_whose_stored_question_was_altered_runs_nothing(records: Records, mode: str) -> None:
    def alter() -> None:
        with sqlite3.connect(records.path) as conn:
            conn.execute("UPDATE approvals SET question = 'Transfer 0.01 from ACC-001 to ACC-002?'")

    assert call(records, "approve_recorded", TRANSFER, answering(True, [], alter), mode).startswith("error: ")
    assert rows(records, "SELECT status FROM approvals") == [("pending",)]
    assert rows(records, "SELECT count(*) FROM entries") == [(0,)] and moved(records) == {}


def test_an_approval_reset_to_pending_behind_the_floors_back_cannot_move_money_again(records: Records) -> None:
    call(records, "approve_recorded", TRANSFER, answering(True, []))
    [used] = [Asked(*row) for row in rows(records, "SELECT id, question FROM approvals")]
    with sqlite3.connect(records.path) as conn:
        conn.execute("UPDATE approvals SET status = 'pending'")

    with pytest.raises(sqlite3.IntegrityError, match="entries"):
        records.settle(used, TRANSFER, 1234, approve=True)
    assert rows(records, "SELECT count(*), sum(minor) FROM entries") == [(2, 0)]
    assert moved(records) == {"ACC-001": -1234, "ACC-002": 1234}


def test_a_caller_with_max_pending_questions_open_is_refused_before_asking_and_nothing_is_written(
    records: Records,
) -> None:
    for n in range(MAX_PENDING):
        records.ask({**TRANSFER, "amount": f"{n + 1}.00"})
    asked: list[str] = []

    assert "too many pending" in call(records, "approve_recorded", TRANSFER, answering(True, asked))
    assert asked == [] and rows(records, "SELECT count(*) FROM approvals") == [(MAX_PENDING,)]
    assert len(audit(records)) == MAX_PENDING  # one `requested` each, none for the refused call


def test_questions_past_their_deadline_are_not_counted_as_open(records: Records) -> None:
    for n in range(MAX_PENDING):
        records.ask({**TRANSFER, "amount": f"{n + 1}.00"})
    records.clock = lambda: time.time() + APPROVAL_TTL + 1

    records.ask(TRANSFER)
    assert rows(records, "SELECT count(*) FROM approvals") == [(MAX_PENDING + 1,)]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({**TRANSFER, "from_account": "ACC-002", "to_account": "ACC-001"}, "not entitled"),
        ({**TRANSFER, "amount": "50000.01"}, "above ceiling"),
        ({"from_account": "ACC-003", "to_account": "ACC-001", "amount": "0.01"}, "insufficient funds"),
        ({**TRANSFER, "to_account": "ACC-404"}, "unknown account"),
        ({**TRANSFER, "to_account": "ACC-001"}, "the same account"),
    ],
)
def test_the_policy_refuses_before_asking_and_the_refusal_is_recorded(
    records: Records, arguments: dict[str, str], reason: str
) -> None:
    asked: list[str] = []

    assert reason in call(records, "approve_recorded", arguments, answering(True, asked))
    assert asked == [] and rows(records, "SELECT count(*) FROM approvals") == [(0,)]
    [denied] = audit(records)
    assert denied["event"] == "denied" and denied["reason"] == reason and denied["arguments"] == arguments


def test_the_decision_is_taken_again_at_settlement_and_a_failure_is_settled_as_such(records: Records) -> None:
    def revoke() -> None:
        with sqlite3.connect(records.path) as conn:
            conn.execute("DELETE FROM access WHERE account_id = 'ACC-001'")

    assert call(records, "approve_recorded", TRANSFER, answering(True, [], revoke)) == "failed: not entitled"
    assert rows(records, "SELECT status FROM approvals") == [("failed",)]
    assert rows(records, "SELECT count(*) FROM entries") == [(0,)] and moved(records) == {}
    assert [record["event"] for record in audit(records)] == ["requested", "failed"]


def test_a_balance_is_read_only_by_whom_may_see_it(records: Records) -> None:
    never: Callback = answering(True, [])

    assert "balance: $1,000,000,000.00" in call(records, "read_entitled", {"account_id": "ACC-001"}, never)
    assert "unknown account ACC-002" in call(records, "read_entitled", {"account_id": "ACC-002"}, never)


@pytest.mark.parametrize(("mode", "looked_up"), [("auto", True), ("legacy", False)])
def test_only_a_question_answered_in_a_later_round_is_stored_under_the_sdks_digest(
    records: Records, mode: str, looked_up: bool
) -> None:
    """A 2025-11-25 question is answered in the request that asked it: nothing finds it by digest, so none is
    computed (the SDK's models and a hash, ~11 µs) nor indexed (a page a question)."""
    assert call(records, "approve_recorded", TRANSFER, answering(True, []), mode) == "executed"

    [(asked,)] = rows(records, "SELECT asked FROM approvals")
    assert (asked is not None) is looked_up


@pytest.mark.parametrize("amount", ["12.345", "12.3e-3", "nan", "1e30", "-5.00", "0"])
def test_an_amount_the_ledger_would_refuse_is_refused_before_asking_and_moves_nothing(
    records: Records, amount: str
) -> None:
    """Parsed as bankgate's ledger parses it (and the load's bound already did): `int(Decimal(a).scaleb(2))` moved
    $12.34 after asking about 12.345, and raised on 'nan', work the bound skipped that bankgate must do."""
    asked: list[str] = []

    said = call(records, "approve_recorded", {**TRANSFER, "amount": amount}, answering(True, asked))

    assert said.startswith("error: ") and repr(amount) in said
    assert asked == [] and moved(records) == {}
