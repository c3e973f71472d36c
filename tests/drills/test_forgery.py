"""Replay and forgery beyond tests/server/test_rounds.py and test_approvals.py.

Those cover: a replayed round (same state, yes then no), a flipped byte, state moved to other
arguments, garbage state, no state, an answer keyed to an unasked question, a late answer,
state of another principal, and malformed answer content (wrong types, defaults only, an
extra field). Here: state moved to another tool or idempotency key, a rejection replayed as
a yes, content beyond the form, an accept with no content at all, clients that auto-accept
forms, and (PostgreSQL) a replay racing the settlement of its own round, and a question built
while another transfer commits.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import psycopg
import pytest
import sqlalchemy
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from policy.testing import ScriptedResponder
from tests.drills.support import Books, record
from tests.server.interleave import hold_audit_writes
from tests.support import TEST_POLICY, answer, first_round, keyed, outcome

pytestmark = pytest.mark.anyio

REJECT = types.ElicitResult(action="accept", content={"approve": False})
ASK_KEY = "policy.approval_round:ask"


@asynccontextmanager
async def memory_client(db_url: str, callback: Any = None, mode: str = "auto") -> AsyncIterator[Client]:
    """The server in-process under the test policy (long approval lifetime), as principal 'local'."""
    settings = Settings(
        db_url=db_url,
        policy=TEST_POLICY,
        approval_timeout=60,
        seed_demo=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    server = build_server(open_state(settings), settings)
    async with Client(server, elicitation_callback=callback or ScriptedResponder(), mode=mode) as client:
        yield client


@pytest.fixture
def books(db_url: str) -> Iterator[Books]:
    ledger = Books(db_url)
    yield ledger
    ledger.close()


def question(round_: types.InputRequiredResult) -> str:
    request = (round_.input_requests or {})[ASK_KEY]
    assert isinstance(request, types.ElicitRequest) and isinstance(request.params, types.ElicitRequestFormParams)
    return request.params.message


def transfer(books: Books, amount: str = "25.00", memo: str = "forgery") -> dict[str, Any]:
    source, target = books.open_accounts(2, "100.00")
    return {"from_account": source, "to_account": target, "amount": amount, "memo": memo}


async def test_state_moved_to_another_tool_is_refused(books: Books, db_url: str) -> None:
    args = transfer(books)
    async with memory_client(db_url) as client:
        round1 = await first_round(client, "transfer_funds", args)
        with pytest.raises(MCPError) as refused:
            await answer(client, "close_account", {"account_id": args["from_account"]}, round1.request_state)

    assert refused.value.error.code == types.INVALID_PARAMS
    assert books.balance(args["from_account"]) == 10000
    assert books.ledger.balance(args["from_account"]).status == "open"


async def test_a_rejection_replayed_as_a_yes_stays_rejected(books: Books, db_url: str) -> None:
    args = transfer(books)
    async with memory_client(db_url) as client:
        round1 = await first_round(client, "transfer_funds", args)
        rejected = outcome(await answer(client, "transfer_funds", args, round1.request_state, REJECT))
        replayed = [outcome(await answer(client, "transfer_funds", args, round1.request_state)) for _ in range(3)]

    assert rejected["status"] == "rejected" and all(r == rejected for r in replayed)
    assert books.balance(args["from_account"]) == 10000 and books.memo_counts("forgery") == {}
    assert books.events(rejected["approval_ref"]) == ["requested", "rejected"]


async def test_state_sent_with_another_idempotency_key_runs_nothing(books: Books, db_url: str) -> None:
    """The key is part of what was approved: the same sealed yes under another key approves nothing."""
    args = transfer(books)
    async with memory_client(db_url) as client:
        round1 = await first_round(client, "transfer_funds", args, meta=keyed("first"))
        swapped = await answer(client, "transfer_funds", args, round1.request_state, meta=keyed("second"))
        keyless = await answer(client, "transfer_funds", args, round1.request_state)
        assert books.memo_counts("forgery") == {}
        genuine = outcome(await answer(client, "transfer_funds", args, round1.request_state, meta=keyed("first")))
        after = await answer(client, "transfer_funds", args, round1.request_state, meta=keyed("second"))

    # each forgery is only asked its own, new question; nothing ran on the borrowed answer
    for forged in (swapped, keyless, after):
        assert isinstance(forged, types.InputRequiredResult)
        assert question(forged) != question(round1)
    assert genuine["status"] == "executed"
    assert books.memo_counts("forgery") == {"forgery": 1}
    books.assert_sound()


@pytest.mark.parametrize(
    "content",
    [
        {"approve": True, "confirmation": "ACC-001"},  # a confirmation the transfer form does not have
        {"approve": True, "note": "n" * 501},
        {"approve": True, "note": ["a", "b"]},
        {"approve": ["true"]},
        {"approve": True, "approved_by": "the-boss"},
    ],
    ids=["unasked-confirmation", "overlong-note", "list-note", "list-approve", "extra-claim"],
)
async def test_content_beyond_the_form_is_a_rejection(books: Books, db_url: str, content: dict[str, Any]) -> None:
    args = transfer(books)
    async with memory_client(db_url) as client:
        round1 = await first_round(client, "transfer_funds", args)
        reply = types.ElicitResult(action="accept", content=content)
        result = outcome(await answer(client, "transfer_funds", args, round1.request_state, reply))

    assert result["status"] == "rejected"
    assert books.balance(args["from_account"]) == 10000
    assert books.events(result["approval_ref"]) == ["requested", "rejected"]


async def accept_without_content(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    return types.ElicitResult(action="accept")  # says "accept" but sends no form


@pytest.mark.parametrize(
    "mode",
    [
        "auto",
        "legacy",
    ],
)
async def test_an_accept_without_content_is_a_recorded_rejection(books: Books, db_url: str, mode: str) -> None:
    args = transfer(books)
    async with memory_client(db_url, accept_without_content, mode) as client:
        result = await client.call_tool("transfer_funds", args)

    assert books.balance(args["from_account"]) == 10000 and books.memo_counts("forgery") == {}
    assert result.structured_content is not None, result.content
    body = outcome(result)
    assert body["status"] == "rejected"
    assert books.events(body["approval_ref"]) == ["requested", "rejected"]


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {name: spec["default"] for name, spec in schema.get("properties", {}).items() if "default" in spec}


def fill_blanks(schema: dict[str, Any]) -> dict[str, Any]:
    """What a careless client sends: every field filled with its type's empty value."""
    empty = {"boolean": False, "string": "", "number": 0, "integer": 0}
    return {name: spec.get("default", empty.get(spec.get("type"))) for name, spec in schema["properties"].items()}


def say_yes_to_everything(schema: dict[str, Any]) -> dict[str, Any]:
    """An auto-approver: every boolean true, every string left at its default or blank."""
    return {
        name: True if spec.get("type") == "boolean" else spec.get("default", "")
        for name, spec in schema["properties"].items()
    }


class AutoAcceptor:
    def __init__(self, fill: Any) -> None:
        self.fill = fill
        self.asked = 0

    async def __call__(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked += 1
        assert isinstance(params, types.ElicitRequestFormParams)
        return types.ElicitResult(action="accept", content=self.fill(params.requested_schema))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("fill", [schema_defaults, fill_blanks, say_yes_to_everything], ids=lambda f: f.__name__)
async def test_clients_that_auto_accept_forms(books: Books, db_url: str, mode: str, fill: Any) -> None:
    """Defaults and blanks approve nothing; a blanket yes cannot close an account (it must type the id back)."""
    account, keeper = books.open_accounts(2, "10.00")
    args = transfer(books)
    acceptor = AutoAcceptor(fill)
    async with memory_client(db_url, acceptor, mode) as client:
        moved = outcome(await client.call_tool("transfer_funds", args))
        closed = outcome(await client.call_tool("close_account", {"account_id": account, "sweep_to": keeper}))

    assert acceptor.asked == 2
    assert closed["status"] == "rejected" and books.ledger.balance(account).status == "open"
    if fill is say_yes_to_everything:  # indistinguishable from a person's yes: the transfer runs, once
        assert moved["status"] == "executed" and books.memo_counts("forgery") == {"forgery": 1}
    else:
        assert moved["status"] == "rejected" and books.memo_counts("forgery") == {}
    books.assert_sound()


# -- PostgreSQL: a replay racing its own round's settlement ---------------------------------------


async def lock_waiter(dsn: str, blocker: int, pattern: str = "%", timeout: float = 15.0) -> int:
    """Poll until a backend waits on a lock backend `blocker` holds, running a statement like `pattern`. Only
    `blocker`'s: other tests' backends share the database (pytest-xdist), some of them waiting to insert audit
    records too (`hold_audit_writes`), and taking one of theirs lined this race up on nothing."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT min(pid) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)) AND query ILIKE %s",
                (blocker, pattern),
            ).fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
            await anyio.sleep(0.02)
    raise TimeoutError(f"no backend waited on a lock of {blocker} running {pattern!r}")


@pytest.mark.postgres
async def test_a_round_replayed_while_it_settles_gets_the_original_outcome(postgres_url: str) -> None:
    books = Books(postgres_url)
    args = transfer(books, memo="raced")
    async with memory_client(postgres_url) as client:
        round1 = await first_round(client, "transfer_funds", args)
        results: dict[str, types.CallToolResult | types.InputRequiredResult] = {}

        async def send(name: str) -> None:
            results[name] = await answer(client, "transfer_funds", args, round1.request_state)

        with psycopg.connect(_plain(postgres_url)) as holder, anyio.fail_after(60):
            hold_audit_writes(holder)  # the settling commit waits here
            async with anyio.create_task_group() as group:
                group.start_soon(send, "original")
                # the settling transaction moved the money and waits to insert its records, not committed
                settling = await lock_waiter(_plain(postgres_url), holder.info.backend_pid, "%INSERT INTO audit_log%")
                group.start_soon(send, "replay")
                # the replay now waits too: on the principal's turn, the approval row, or the accounts it would move
                await lock_waiter(_plain(postgres_url), settling)
                holder.commit()

    original = outcome(results["original"])
    assert original["status"] == "executed" and books.memo_counts("raced") == {"raced": 1}
    record("forgery-race", replay_result=type(results["replay"]).__name__)
    books.close()
    assert isinstance(results["replay"], types.CallToolResult), "the replay was asked a new question"
    assert outcome(results["replay"]) == original


BALANCE_LINE = re.compile(r"balance: \$([0-9,.]+) now, \$([0-9,.]+) after\.")


@pytest.mark.postgres
async def test_the_question_shows_one_snapshot_of_the_balance(postgres_url: str) -> None:
    """A transfer in flight while the question is built: the question takes no lock, so it neither waits
    for that transfer nor shows half of it; 'now' and 'after' come from one committed snapshot (the
    settlement locks the rows and re-checks them against what was shown)."""
    books = Books(postgres_url)
    args = transfer(books)
    [elsewhere] = books.open_accounts(1, "0")
    async with memory_client(postgres_url) as client:
        engine = sqlalchemy.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as holder, anyio.fail_after(60):
            moving = holder.begin()
            books.ledger.transfer_in(holder, args["from_account"], elsewhere, 1000)  # locks the source row
            asked = await first_round(client, "transfer_funds", args)  # would hang here if asking locked it
            moving.commit()

    message = question(asked)
    match = BALANCE_LINE.search(message)
    assert match is not None, message
    now, after = (float(v.replace(",", "")) for v in match.groups())
    engine.dispose()
    books.close()
    assert (now, after) == (100.0, 75.0), message


def _plain(url: str) -> str:
    """The libpq form of a test URL (psycopg accepts the `options` query parameter as is)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
