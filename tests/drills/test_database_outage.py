"""The ledger database goes away under a running server, and comes back.

The server reaches PostgreSQL through an in-test TCP proxy (the shared PostgreSQL service
keeps running for everyone else). Cutting the proxy stands for a stopped database: clients
get a clear `database_unavailable` refusal, `/healthz` says so and `/readyz` is 503, nothing
half-happens, and when the database returns the same server process recovers by itself.
A database that goes silent instead (connections held open, nothing answered) must fail
calls and readiness within seconds too, not hang them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy.engine import make_url

from policy.testing import ScriptedResponder, approve
from tests.drills.proxy import TcpProxy
from tests.drills.support import Books, ServerProcess, connect, record, running
from tests.support import APPROVE, answer, first_round, keyed, outcome

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

RECOVERY_BOUND = 15.0
HEALTH_BOUND = 5.0
"""A health answer is at most one probe interval (1 s) old, and a probe takes at most 3 s."""
UNAVAILABLE = "database_unavailable"


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy to the test's PostgreSQL, and the test database's URL through it."""
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()


def refused_for_outage(result: dict[str, Any]) -> None:
    assert result["status"] == "failed", result
    assert result["error"]["code"] == UNAVAILABLE
    message = result["error"]["message"]
    assert "unavailable" in message and "try again" in message
    for leak in ("psycopg", "sqlalchemy", "Traceback", "127.0.0.1", "connection"):
        assert leak not in message


def reported_down(server: ServerProcess, bound: float) -> tuple[httpx2.Response, httpx2.Response]:
    """/healthz and /readyz once the outage shows (a health answer may be one probe interval old)."""
    started = time.monotonic()
    health = server.get("/healthz")
    while health.json()["database"] == "ok" and time.monotonic() - started < bound:
        time.sleep(0.2)
        health = server.get("/healthz")
    return health, server.get("/readyz")


def wait_ready(server: ServerProcess, bound: float) -> float:
    """Poll /readyz until 200; return how long recovery took."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        if server.get("/readyz").status_code == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"/readyz still not 200 after {bound}s")


async def test_a_stopped_database_is_reported_clearly_and_recovered_from_without_restart(
    postgres_url: str, proxied: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    proxy, through_proxy = proxied
    books = Books(postgres_url)  # the test's own view bypasses the proxy
    source, target, spare = books.open_accounts(3, "100.00")
    args = {"from_account": source, "to_account": target, "amount": "10.00", "memo": "outage-pending"}
    server = ServerProcess(through_proxy, tmp_path)
    with running(server):
        pid = server.pid
        responder = ScriptedResponder(*[approve() for _ in range(4)])
        async with connect(server.url, responder) as client, connect(server.url, mode="legacy") as legacy:
            assert (
                outcome(await client.call_tool("get_account_balance", {"account_id": source}))["status"] == "executed"
            )
            pending = await first_round(client, "transfer_funds", args)  # a round open when the lights go out
            before = books.memo_counts("outage-")

            proxy.cut("reset")
            refusals = [
                outcome(await client.call_tool("get_account_balance", {"account_id": source})),
                outcome(await legacy.call_tool("get_account_balance", {"account_id": source})),
                outcome(await client.call_tool("transfer_funds", {**args, "memo": "outage-new"})),
                outcome(await client.call_tool("close_account", {"account_id": spare, "sweep_to": target})),
                outcome(await answer(client, "transfer_funds", args, pending.request_state, APPROVE)),
            ]
            health, ready = reported_down(server, HEALTH_BOUND)
            assert responder.questions == [], "nobody may be asked while the ledger cannot be read"

            proxy.restore()
            recovery = wait_ready(server, RECOVERY_BOUND)
            back = [outcome(await client.call_tool("get_account_balance", {"account_id": source})) for _ in range(5)]
            back.append(outcome(await legacy.call_tool("get_account_balance", {"account_id": source})))
            finished = outcome(await answer(client, "transfer_funds", args, pending.request_state, APPROVE))
            fresh = outcome(await client.call_tool("transfer_funds", {**args, "memo": "outage-after"}))
        assert server.pid == pid and server.process is not None and server.process.poll() is None
        assert server.starts == 1

    for refusal in refusals:
        refused_for_outage(refusal)
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "unavailable"}
    assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
    assert before == {} and all(r["status"] == "executed" for r in back)
    assert finished["status"] == "executed" and fresh["status"] == "executed"
    assert books.memo_counts("outage-") == {"outage-pending": 1, "outage-after": 1}
    assert books.balance(source) == 8000 and books.ledger.balance(spare).status == "open"
    books.assert_sound()
    books.close()
    record(
        "database-outage",
        case="database stopped (connections reset)",
        refusals=len(refusals),
        refusal_code=UNAVAILABLE,
        recovery_seconds=round(recovery, 2),
        restarts=0,
    )


SILENCE_BOUND = 8.0


async def test_a_silent_database_gets_a_clear_error_in_bounded_time(
    postgres_url: str, proxied: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    """Once a bug: a call on a pooled connection to a silent server waited without bound."""
    proxy, through_proxy = proxied
    books = Books(postgres_url)
    [account] = books.open_accounts(1, "5.00")
    books.close()
    server = ServerProcess(through_proxy, tmp_path)
    with running(server):
        async with connect(server.url) as client:
            async with anyio.create_task_group() as group:  # several pooled connections, all in use once
                for _ in range(6):
                    group.start_soon(client.call_tool, "get_account_balance", {"account_id": account})
            proxy.cut("blackhole")
            outcomes: dict[str, Any] = {}

            async def call() -> None:
                started = time.monotonic()
                with anyio.move_on_after(SILENCE_BOUND):
                    outcomes["call"] = await client.call_tool("get_account_balance", {"account_id": account})
                    outcomes["call_s"] = time.monotonic() - started

            def probe() -> None:
                """Poll as a load balancer does: an answer may be one probe interval old."""
                started = time.monotonic()
                try:
                    while time.monotonic() - started < SILENCE_BOUND:
                        outcomes["ready"] = httpx2.get(f"{server.base}/readyz", timeout=SILENCE_BOUND).status_code
                        outcomes["ready_s"] = time.monotonic() - started
                        if outcomes["ready"] == 503:
                            return
                        time.sleep(0.2)
                except httpx2.TimeoutException:
                    outcomes["ready"] = "no answer"

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(call)
                    group.start_soon(anyio.to_thread.run_sync, probe)
            finally:
                proxy.restore()  # releases whatever the server is stuck on, so it can stop
            recovery = wait_ready(server, RECOVERY_BOUND)
            after = outcome(await client.call_tool("get_account_balance", {"account_id": account}))

    result = outcomes.get("call")
    assert result is not None, f"the call was still waiting after {SILENCE_BOUND:.0f}s"
    refused_for_outage(outcome(result))
    assert outcomes["ready"] == 503, f"/readyz: {outcomes['ready']} within {SILENCE_BOUND:.0f}s"
    assert after["status"] == "executed"
    record(
        "database-outage",
        case="database silent (connections held, nothing answered)",
        call_refused_after_s=round(outcomes["call_s"], 1),
        readyz_503_after_s=round(outcomes["ready_s"], 1),
        recovery_seconds=round(recovery, 2),
        restarts=0,
    )


async def test_a_connection_lost_at_commit_claims_no_outcome_and_a_keyed_retry_finds_it(
    postgres_url: str, proxied: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    """Once a bug: the settlement's COMMIT reached the database and the connection died before its answer;
    the caller was told the database was unavailable and to try again, although the money had moved, so a
    retry without the key would have moved it twice. Now the reply says the outcome is unknown, and the
    retry under the same key answers with what happened, once."""
    proxy, through_proxy = proxied
    books = Books(postgres_url)
    source, target = books.open_accounts(2, "100.00")
    args = {"from_account": source, "to_account": target, "amount": "10.00", "memo": "lost-commit"}
    server = ServerProcess(through_proxy, tmp_path)
    with running(server):
        async with connect(server.url) as client:
            pending = await first_round(client, "transfer_funds", args, meta=keyed("lost-commit-1"))
            with anyio.fail_after(30):  # the question's record chained: the next COMMIT sent is the settlement's
                while books.unchained():
                    await anyio.sleep(0.05)
            proxy.cut_after(b"COMMIT\x00")  # the statement itself, not READ COMMITTED
            key = keyed("lost-commit-1")
            lost = outcome(await answer(client, "transfer_funds", args, pending.request_state, APPROVE, meta=key))
            proxy.restore()
            wait_ready(server, RECOVERY_BOUND)
            retried = outcome(await client.call_tool("transfer_funds", args, meta=keyed("lost-commit-1")))

    assert lost["status"] == "failed" and lost["error"]["code"] == UNAVAILABLE, lost
    message = lost["error"]["message"]
    assert "not known" in message and "same idempotency key" in message, message
    assert retried["status"] == "executed", retried
    assert books.memo_counts("lost-commit") == {"lost-commit": 1}
    assert books.balance(source) == 9000
    books.assert_sound()
    books.close()
