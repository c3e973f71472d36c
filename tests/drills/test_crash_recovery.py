"""SIGKILL of a real server mid-load, restart on the same database and key ring, retry by key.

Clients on both protocol revisions run approved transfers, each with its own idempotency
key and a memo naming it. After the kill and restart every client re-sends every request
it had sent: an acknowledged one must come back unchanged without anyone being asked
again, an interrupted one must finish, and the ledger must hold exactly one transaction
per executed key — none lost, none doubled — with the invariants and the audit chain intact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from policy.testing import ScriptedResponder, approve
from tests.drills.support import KEY_RING, Books, ServerProcess, connect, record, running, scaled
from tests.support import keyed, outcome

pytestmark = pytest.mark.anyio

WORKERS = scaled(6, minimum=2)
PER_WORKER = scaled(40, minimum=10)
KILL_AFTER = scaled(24, minimum=6)
CALL_TIMEOUT = 30.0


@dataclass
class Request:
    key: str
    args: dict[str, Any]


@dataclass
class Worker:
    mode: str
    plan: list[Request]
    sent: list[Request] = field(default_factory=list)
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


def plan(accounts: list[str], prefix: str) -> list[Worker]:
    rng = random.Random(7)
    workers = []
    for w in range(WORKERS):
        requests = []
        for n in range(PER_WORKER):
            source, target = rng.sample(accounts, 2)
            key = f"{prefix}-{w}-{n}"
            amount = f"{rng.randint(101, 2500) / 100:.2f}"  # above 1.00: every one needs an approval
            requests.append(Request(key, {"from_account": source, "to_account": target, "amount": amount, "memo": key}))
        workers.append(Worker("auto" if w % 2 == 0 else "legacy", requests))
    return workers


async def run_until_killed(server: ServerProcess, workers: list[Worker]) -> None:
    """Run every worker; once KILL_AFTER calls are acknowledged, SIGKILL the server under them."""
    enough = anyio.Event()

    async def drive(worker: Worker) -> None:
        responder = ScriptedResponder()
        try:
            async with connect(server.url, responder, mode=worker.mode, timeout=CALL_TIMEOUT) as client:
                for request in worker.plan:
                    responder.script.append(approve())
                    worker.sent.append(request)
                    with anyio.fail_after(CALL_TIMEOUT):
                        result = await client.call_tool("transfer_funds", request.args, meta=keyed(request.key))
                    worker.acknowledged[request.key] = outcome(result)
                    if sum(len(w.acknowledged) for w in workers) >= KILL_AFTER:
                        enough.set()
        except Exception as exc:  # the server died under the call: it stays unacknowledged
            worker.error = type(exc).__name__

    async with anyio.create_task_group() as group:
        for worker in workers:
            group.start_soon(drive, worker)
        with anyio.fail_after(90):
            await enough.wait()
        server.kill()


async def retry_everything(server: ServerProcess, workers: list[Worker]) -> tuple[dict[str, dict[str, Any]], int]:
    """Re-send every request each worker had sent, with the same key; return the outcomes and questions asked."""
    final: dict[str, dict[str, Any]] = {}
    asked = 0

    async def again(worker: Worker) -> None:
        nonlocal asked
        responder = ScriptedResponder(*[approve() for _ in worker.sent])
        async with connect(server.url, responder, mode=worker.mode, timeout=CALL_TIMEOUT) as client:
            for request in worker.sent:
                with anyio.fail_after(CALL_TIMEOUT):
                    result = await client.call_tool("transfer_funds", request.args, meta=keyed(request.key))
                final[request.key] = outcome(result)
        asked += len(responder.questions)

    async with anyio.create_task_group() as group:
        for worker in workers:
            group.start_soon(again, worker)
    return final, asked


async def test_sigkill_mid_load_loses_nothing_and_doubles_nothing(db_url: str, tmp_path: Path) -> None:
    books = Books(db_url)
    accounts = books.open_accounts(8, "400.00")
    total = books.customer_total()
    workers = plan(accounts, "crash")
    server = ServerProcess(db_url, tmp_path, keys=KEY_RING)
    try:
        with running(server):
            await run_until_killed(server, workers)
            assert server.process is not None and server.process.returncode == -9
            killed_pid = server.pid
            at_kill = books.memo_counts("crash-")  # what the dead server had committed
            server.start()
            server.wait_ready()
            assert server.pid != killed_pid
            final, asked = await retry_everything(server, workers)
    finally:
        server.stop()

    acknowledged = {k: v for w in workers for k, v in w.acknowledged.items()}
    interrupted = [r.key for w in workers for r in w.sent if r.key not in w.acknowledged]
    assert len(acknowledged) >= KILL_AFTER
    assert interrupted, "the kill landed between calls; no request was in flight"

    # an acknowledged transfer was committed before the kill (not merely redone by the retry) ...
    assert all(at_kill[k] == 1 for k, r in acknowledged.items() if r["status"] == "executed")
    assert set(at_kill.values()) <= {1}
    # ... and its retry returns it unchanged without asking anyone
    for key, result in acknowledged.items():
        assert final[key] == result
    assert asked <= len(interrupted)

    # exactly one ledger transaction per executed key, none for any other
    counts = books.memo_counts("crash-")
    executed = {key for key, result in final.items() if result["status"] == "executed"}
    assert {key for key, result in acknowledged.items() if result["status"] == "executed"} <= executed
    assert all(result["status"] in ("executed", "failed") for result in final.values()), final
    assert all(final[key]["error"]["code"] == "insufficient_funds" for key in final.keys() - executed)
    assert set(counts) == executed and set(counts.values()) <= {1}
    assert books.customer_total() == total
    audit_records = books.assert_sound()
    books.close()
    record(
        "crash-recovery",
        backend=db_url.split(":", 1)[0],
        clients=WORKERS,
        acknowledged_before_kill=len(acknowledged),
        in_flight_at_kill=len(interrupted),
        committed_but_unacknowledged=len([k for k in interrupted if at_kill.get(k)]),
        executed=len(executed),
        duplicates=sum(n - 1 for n in counts.values()),
        lost=len([k for k, r in acknowledged.items() if r["status"] == "executed" and counts.get(k) != 1]),
        audit_records=audit_records,
    )
