"""The load floor does the durable work it claims, correctly: a baseline that cut corners would flatter nobody
but would make its ceiling a lie."""

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT

from bench.floor_server import OPENING_MINOR, SHARED, Store, closable, floor_server, open_store
from bench.load import database

BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get("BANKGATE_TEST_POSTGRES_URL") else [])]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    postgres = os.environ["BANKGATE_TEST_POSTGRES_URL"] if request.param == "postgresql" else None
    with database(postgres, tmp_path) as url:
        yield open_store(url)


def answer(yes: bool) -> ElicitationFnT:
    async def callback(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"approve": yes})

    return callback


async def call(store: Store, yes: bool, tool: str, **arguments: str) -> str:
    async with Client(floor_server(store), elicitation_callback=answer(yes)) as client:
        result = await client.call_tool(tool, arguments)
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return ("error: " if result.is_error else "") + content.text


def test_an_approved_transfer_moves_exactly_the_amount_and_a_rejected_one_nothing(store: Store) -> None:
    async def scenario() -> None:
        source, target = SHARED[0], SHARED[1]
        transfer = {"from_account": source, "to_account": target, "memo": "m"}
        assert await call(store, True, "floor_transfer", amount="12.34", **transfer) == "executed"
        assert await call(store, False, "floor_transfer", amount="5.00", **transfer) == "rejected"
        balances = (await store.balance(source), await store.balance(target))
        assert balances == (OPENING_MINOR - 1234, OPENING_MINOR + 1234)

    anyio.run(scenario)


def test_an_overdraft_is_refused_whole(store: Store) -> None:
    async def scenario() -> None:
        too_much = f"{OPENING_MINOR // 100 + 1}.00"
        transfer = {"from_account": SHARED[0], "to_account": SHARED[1], "amount": too_much, "memo": "m"}
        assert (await call(store, True, "floor_transfer", **transfer)).startswith("error: ")
        assert (await store.balance(SHARED[0]), await store.balance(SHARED[1])) == (OPENING_MINOR, OPENING_MINOR)

    anyio.run(scenario)


def test_a_close_sweeps_the_balance_once_and_a_closed_account_takes_no_money(store: Store) -> None:
    async def scenario() -> None:
        account, target = closable(0)[0], SHARED[2]
        assert await call(store, True, "floor_close", account_id=account, sweep_to=target, memo="c") == "executed"
        assert (await store.balance(account), await store.balance(target)) == (0, OPENING_MINOR + 500)
        again = await call(store, True, "floor_close", account_id=account, sweep_to=target, memo="c2")
        into_closed = {"from_account": target, "to_account": account, "amount": "1.00", "memo": "m"}
        assert again.startswith("error: ")
        assert (await call(store, True, "floor_transfer", **into_closed)).startswith("error: ")
        assert (await store.balance(account), await store.balance(target)) == (0, OPENING_MINOR + 500)

    anyio.run(scenario)


def test_a_transfer_to_the_same_account_is_refused(store: Store) -> None:
    async def scenario() -> None:
        to_itself = {"from_account": SHARED[3], "to_account": SHARED[3], "amount": "1.00", "memo": "m"}
        assert (await call(store, True, "floor_transfer", **to_itself)).startswith("error: ")
        assert await store.balance(SHARED[3]) == OPENING_MINOR

    anyio.run(scenario)
