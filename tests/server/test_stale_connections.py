"""PostgreSQL closed the server's connections while they sat idle (a restart, `pg_terminate_backend`, an idle
timeout): the next transaction to draw one fails on its first round trip, and is run once more on a fresh
connection, so the call succeeds, whether the event loop's connection or the worker threads' pool served it.
Only then: a transaction lost once its COMMIT was sent is never run again (whether it committed is not known),
nor one whose fresh connection failed too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import mcp_types as types
import psycopg
import pytest
from mcp import Client
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from mcp_server.app import build_server, open_state
from mcp_server.audit.reader import verify
from mcp_server.audit.sequencer import Background
from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.storage import loop_connection
from mcp_server.storage.database import CommitUnknown, Database, WouldWait
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.storage.statement import Statement
from policy.testing import ScriptedResponder, approve
from tests.ledger.helpers import when_ready
from tests.server.faults import COMMIT, Fault, Faults, faults_on
from tests.server.harness import Harness
from tests.support import keyed, outcome, postgres_base_url, postgres_schema

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

ROUND_TRIP_LIMIT_S = {"loop": 1.0, "threads": 0.0}
"""Where gate work runs: on the event loop's connection (any round trip is near enough) or in worker threads."""
INSERT = Statement("INSERT INTO audit_heads (seq, hash, at, key_id, signature) VALUES (:seq, '', '', '', '')")
HEADS = text("SELECT COUNT(*) FROM audit_heads")


@pytest.fixture
def harness() -> Iterator[Harness]:
    """A PostgreSQL ledger whose server (`serving`) names its connections, so that the test ends only those."""
    with postgres_schema("bankgate_stale") as url:
        harness = Harness("memory", url)  # the test's own view of the ledger: its connections are not ended
        harness.db_url = tagged(url)
        try:
            yield harness
        finally:
            harness.db.close()


def tagged(url: str) -> str:
    """`url` with an application name of its own, which `pg_stat_activity` shows for each of its connections."""
    name = f"bankgate-{uuid.uuid4().hex[:12]}"
    return make_url(url).update_query_dict({"application_name": name}).render_as_string(hide_password=False)


def end_connections(url: str) -> int:
    """End every server process of `url`'s connections (`pg_terminate_backend`, from a connection of the test's
    own), as a restart of the database would; how many there were."""
    name = make_url(url).query["application_name"]
    with psycopg.connect(postgres_base_url() or "", autocommit=True) as admin:
        pids = [pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    return len(pids)


@asynccontextmanager
async def serving(harness: Harness, where: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """A client of the server in this process, its gate work on the loop's connection (ready) or in threads."""
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", ROUND_TRIP_LIMIT_S[where])
    settings = harness.settings()
    state = open_state(settings)
    # The audit sequencer's thread chains at start and stop only: a tick of its own between the test's calls
    # would meet a closed connection first, and the calls would not.
    state.sequencer = Background(state.sequencer.sequencer, interval=3600, idle_interval=3600)
    assert isinstance(state.gate.store, SqlGateStore)
    db = state.gate.store.db
    responder = ScriptedResponder(*[approve()] * 4)
    try:
        async with Client(build_server(state, settings), elicitation_callback=responder, mode="legacy") as client:
            if where == "loop":
                when_ready(lambda: db.read(lambda conn: 1, wait=False))
            yield client
    finally:
        db.close()


async def unguarded(client: Client, harness: Harness, source: str, target: str) -> None:
    result = await client.call_tool("get_account_balance", {"account_id": source})
    assert outcome(result)["balance_minor"] == harness.balance(source), result


async def gated(client: Client, harness: Harness, source: str, target: str) -> None:
    before = harness.balance(target)
    memo = f"stale-{uuid.uuid4().hex[:8]}"
    args = {"from_account": source, "to_account": target, "amount": "20", "memo": memo}
    result = await client.call_tool("transfer_funds", args, meta=keyed(memo))
    assert isinstance(result, types.CallToolResult) and outcome(result)["status"] == "executed", result
    assert harness.balance(target) == before + 2000


CALLS: dict[str, Callable[[Client, Harness, str, str], Awaitable[None]]] = {"unguarded": unguarded, "gated": gated}


@pytest.mark.parametrize("where", ROUND_TRIP_LIMIT_S)
@pytest.mark.parametrize("call", CALLS)
async def test_a_call_after_the_database_closed_every_connection_succeeds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, where: str, call: str
) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    async with serving(harness, where, monkeypatch) as client:
        await gated(client, harness, source, target)  # the server's connections are open, and used
        assert end_connections(harness.db_url) >= (2 if where == "loop" else 1)

        await CALLS[call](client, harness, source, target)
        await gated(client, harness, source, target)

    assert harness.ledger.check_invariants() == []
    verified = verify(harness.db)
    assert (verified.findings, verified.pending) == ([], 0)  # every record chained, by the stopping sequencer


@pytest.fixture
def pooled(harness: Harness) -> Iterator[Database]:
    """The server's `Database` on the ledger, its pool holding one connection that served a transaction."""
    db = Database.open(harness.db_url)
    db.run(lambda conn: INSERT.run(conn, {"seq": 0}))
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def faults(pooled: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    yield from faults_on(pooled, monkeypatch)


def heads(harness: Harness) -> int:
    return int(harness.db.read(lambda conn: conn.execute(HEADS).scalar_one()))


def test_a_connection_lost_at_its_commit_is_not_run_again(harness: Harness, pooled: Database, faults: Faults) -> None:
    """The COMMIT goes with the transaction's first round trip (its only statement is a write sent with it), on
    a connection that served before: lost there, it is reported unknown, never run again."""
    runs: list[Connection] = []

    def insert(conn: Connection) -> None:
        runs.append(conn)
        INSERT.send(conn, {"seq": 1})

    with faults.armed(3) as seen, pytest.raises(CommitUnknown):
        pooled.run(insert)
    assert (faults.fired, len(runs)) == (COMMIT, 1), seen
    assert heads(harness) == 1  # the server process ended before the COMMIT reached it


def test_a_transaction_is_run_again_once_at_most(harness: Harness, pooled: Database, faults: Faults) -> None:
    """The first attempt meets a connection closed while it sat idle; the fresh one it runs on next is lost
    too: that is reported as any lost connection, not run a third time."""
    runs: list[Connection] = []

    def insert(conn: Connection) -> int:
        runs.append(conn)
        return INSERT.run(conn, {"seq": len(runs)})

    end_connections(harness.db_url)
    with faults.armed(4, Fault.LOST) as seen, pytest.raises(LedgerError) as failed:
        pooled.run(insert)  # BEGIN and INSERT on the closed connection; BEGIN and INSERT (lost) on a fresh one
    assert len(runs) == 2 and faults.fired is not None, seen
    assert failed.value.code == ErrorCode.DATABASE_UNAVAILABLE and not isinstance(failed.value, CommitUnknown)
    assert heads(harness) == 1


PID = text("SELECT pg_backend_pid()")


def test_a_slow_answer_on_the_loop_keeps_the_pooled_connections(
    pooled: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection closed by its own wait running out (`Unanswered`: a slow server, not a closed one)
    says nothing of the pool's: replacing them all would reconnect every worker just as the server is slow."""
    monkeypatch.setattr(loop_connection, "ROUND_TRIP_LIMIT_S", 1.0)
    before = pooled.read(lambda conn: conn.execute(PID).scalar_one())
    when_ready(lambda: pooled.read(lambda conn: 1, wait=False))
    with pytest.raises(WouldWait):  # given up on the loop, for a worker thread to wait out
        pooled.read(lambda conn: conn.execute(text("SELECT pg_sleep(1.5)")).all(), wait=False)
    assert pooled.read(lambda conn: conn.execute(PID).scalar_one()) == before
