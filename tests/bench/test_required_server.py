"""The load's required-work bound does the checks and records it claims, on both backends: a bound that
skipped one would make bankgate's load goals look unreachable, or reachable, for the wrong reason."""

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import mcp_types as types
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.server.mcpserver.exceptions import ToolError

from bench.floor_server import OPENING_MINOR, SHARED, closable
from bench.load import database
from bench.required_server import Facts, Outcome, Store, open_store, required_server

BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get("BANKGATE_TEST_POSTGRES_URL") else [])]
KEY = Ed25519PrivateKey.generate()
SOURCE, TARGET = SHARED[0], SHARED[1]
Content = dict[str, str | int | float | bool | list[str] | None]
"""An answer's form content, as the SDK types it."""
TRANSFER = {"from_account": SOURCE, "to_account": TARGET, "amount": "12.34", "memo": "m"}


class Bound:
    """A store, and a connection of the test's own to its database (reads and edits behind the server's back)."""

    def __init__(self, url: str) -> None:
        self.url, self.store = url, open_store(url)

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        if self.url.startswith("sqlite:///"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None) as conn:
                return conn.execute(statement).fetchall()
        with psycopg.connect(self.url, autocommit=True) as pg:
            cursor = pg.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def balances(self, *ids: str) -> list[int]:
        rows = self.sql(f"SELECT id, balance_minor FROM required_accounts WHERE id IN {(*ids, '')}")
        found = {str(account): int(str(minor)) for account, minor in rows}
        return [found[i] for i in ids]


@pytest.fixture(params=BACKENDS)
def bound(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bound]:
    postgres = os.environ["BANKGATE_TEST_POSTGRES_URL"] if request.param == "postgresql" else None
    with database(postgres, tmp_path) as url:
        yield Bound(url)


def answering(content: Content, asked: list[str], meanwhile: Callable[[], object] = lambda: None) -> ElicitationFnT:
    async def callback(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        meanwhile()
        return types.ElicitResult(action="accept", content=content)

    return callback


def call(store: Store, tool: str, arguments: dict[str, str], callback: ElicitationFnT, mode: str = "auto") -> str:
    async def scenario() -> str:
        async with Client(required_server(store, KEY), elicitation_callback=callback, mode=mode) as client:
            result = await client.call_tool(tool, arguments)
        content = result.content[0]
        assert isinstance(content, types.TextContent)
        return ("error: " if result.is_error else "") + content.text

    return anyio.run(scenario)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approved_transfer_uses_its_approval_once_moves_the_money_and_signs_its_record(
    bound: Bound, mode: str
) -> None:
    asked: list[str] = []
    assert call(bound.store, "required_transfer", TRANSFER, answering({"approve": True}, asked), mode) == "executed"

    assert len(asked) == 1
    assert bound.sql("SELECT status FROM required_approvals") == [("approved",)]
    assert bound.balances(SOURCE, TARGET) == [OPENING_MINOR - 1234, OPENING_MINOR + 1234]
    assert bound.sql("SELECT what, memo FROM required_outcomes") == [("executed", "m")]
    [(record, signature)] = bound.sql("SELECT record, signature FROM required_audit")
    assert isinstance(record, str) and isinstance(signature, str)
    assert json.loads(record)["arguments"] == TRANSFER and json.loads(record)["principal"] == "local"
    KEY.public_key().verify(bytes.fromhex(signature), record.encode())  # raises if not this key's


def test_a_rejected_approval_is_recorded_as_such_and_moves_nothing(bound: Bound) -> None:
    assert call(bound.store, "required_transfer", TRANSFER, answering({"approve": False}, [])) == "rejected"

    assert bound.sql("SELECT status FROM required_approvals") == [("rejected",)]
    assert bound.balances(SOURCE, TARGET) == [OPENING_MINOR, OPENING_MINOR]
    assert bound.sql("SELECT count(*) FROM required_audit") == [(0,)]


def test_an_approval_settles_only_the_arguments_it_was_given_for_and_once(bound: Bound) -> None:
    call(bound.store, "required_transfer", TRANSFER, answering({"approve": True}, []))
    bound.sql("UPDATE required_approvals SET digest = 'another call'")
    pending = "INSERT INTO required_approvals (digest, status) VALUES ('another call', 'pending')"
    bound.sql(pending)

    def settle_again() -> None:
        async def replay() -> None:
            await bound.store.settle(
                "0" * 64, (SOURCE, TARGET), lambda approval, facts: pytest.fail("decided without an approval")
            )

        anyio.run(replay)

    with pytest.raises(Exception, match="no pending approval"):
        settle_again()
    assert bound.balances(SOURCE, TARGET) == [OPENING_MINOR - 1234, OPENING_MINOR + 1234]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({**TRANSFER, "to_account": SOURCE}, "two different open accounts"),
        ({**TRANSFER, "from_account": "ACC-999"}, "unknown account ACC-999"),
        ({**TRANSFER, "amount": "50000.01"}, "above ceiling"),
        ({**TRANSFER, "amount": f"{OPENING_MINOR // 100 + 1}.00"}, "insufficient funds"),
        ({**TRANSFER, "amount": "-5.00"}, "not a positive amount"),
        ({**TRANSFER, "amount": "twelve"}, "not a positive amount"),
        ({**TRANSFER, "amount": "NaN"}, "not a positive amount"),
        ({**TRANSFER, "amount": "1.005"}, "not a positive amount"),
    ],
)
def test_the_policy_refuses_before_asking(bound: Bound, arguments: dict[str, str], reason: str) -> None:
    asked: list[str] = []

    assert reason in call(bound.store, "required_transfer", arguments, answering({"approve": True}, asked))
    assert asked == [] and bound.sql("SELECT count(*) FROM required_approvals") == [(0,)]


def test_an_operator_role_taken_away_makes_the_account_unknown(bound: Bound) -> None:
    bound.sql("DELETE FROM required_roles")

    assert "unknown account" in call(bound.store, "required_transfer", TRANSFER, answering({"approve": True}, []))
    assert "unknown account" in call(bound.store, "required_balance", {"account_id": SOURCE}, answering({}, []))


def test_an_owner_may_act_but_a_viewer_may_only_read(bound: Bound) -> None:
    bound.sql("DELETE FROM required_roles")
    bound.sql(f"INSERT INTO required_access VALUES ('local', '{SOURCE}', 'viewer'), ('local', '{TARGET}', 'owner')")
    approve = answering({"approve": True}, [])

    assert "not entitled" in call(bound.store, "required_transfer", TRANSFER, approve)
    assert "balance: $20,000.00" in call(bound.store, "required_balance", {"account_id": SOURCE}, approve)
    back = {**TRANSFER, "from_account": TARGET, "to_account": SOURCE}
    assert call(bound.store, "required_transfer", back, approve) == "executed"


def test_the_decision_is_taken_again_at_settlement_on_the_accounts_as_they_are_then(bound: Bound) -> None:
    revoke = answering({"approve": True}, [], lambda: bound.sql("DELETE FROM required_roles"))

    assert "unknown account" in call(bound.store, "required_transfer", TRANSFER, revoke)
    assert bound.balances(SOURCE, TARGET) == [OPENING_MINOR, OPENING_MINOR]
    assert bound.sql("SELECT status FROM required_approvals") == [("pending",)]  # rolled back with the refusal


def test_a_close_needs_its_id_typed_back_sweeps_once_and_a_closed_account_takes_nothing(bound: Bound) -> None:
    account, target = closable(0)[0], SHARED[2]
    close = {"account_id": account, "sweep_to": target, "memo": "c"}

    wrong = call(bound.store, "required_close", close, answering({"approve": True, "account_id": "CLOSE-x"}, []))
    assert "is not" in wrong and bound.sql("SELECT status FROM required_approvals") == [("rejected",)]
    typed = answering({"approve": True, "account_id": account}, [])
    assert call(bound.store, "required_close", {**close, "memo": "c2"}, typed) == "executed"
    assert bound.balances(account, target) == [0, OPENING_MINOR + 500]
    assert "two different open accounts" in call(bound.store, "required_close", {**close, "memo": "c3"}, typed)
    into_closed = {**TRANSFER, "from_account": target, "to_account": account}
    assert "two different open accounts" in call(bound.store, "required_transfer", into_closed, typed)
    assert bound.balances(account, target) == [0, OPENING_MINOR + 500]


def test_two_settlements_racing_for_one_approval_move_the_money_once(bound: Bound) -> None:
    bound.sql("INSERT INTO required_approvals (digest, status) VALUES ('raced', 'pending')")
    outcomes: list[str] = []

    def decide(approval: int, facts: dict[str, Facts]) -> Outcome:
        return Outcome(((SOURCE, -100), (TARGET, 100)), (), "executed", "raced", "{}", "")

    async def settle() -> None:
        try:
            await bound.store.settle("raced", (SOURCE, TARGET), decide)
            outcomes.append("executed")
        except ToolError as refused:
            outcomes.append(str(refused))

    async def race() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(settle)
            group.start_soon(settle)

    anyio.run(race)
    assert sorted(outcomes) == ["executed", "no pending approval for these arguments"]
    assert bound.balances(SOURCE, TARGET) == [OPENING_MINOR - 100, OPENING_MINOR + 100]
