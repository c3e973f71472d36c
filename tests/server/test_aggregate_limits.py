"""A limit on a total over a principal's calls holds when the calls come at once.

The policy allows up to 500.00, asks above that, and denies whatever would take the
principal past 1,000.00 today. Concurrent calls, allowed or approved, must never together
move more; on PostgreSQL the calls are made to decide and act before any of them commits
(`interleave`), which is exactly when a total read outside the principal's turn is stale.
"""

from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from tests.server.harness import Harness
from tests.server.interleave import Gathering, audit_head_held
from tests.support import LIMIT_POLICY

pytestmark = pytest.mark.anyio

LIMIT_MINOR = 1000_00


def client(ledger: Harness, mode: str, responder: Any = None) -> Client:
    settings = Settings(
        db_url=ledger.db_url,
        policy=LIMIT_POLICY,
        seed_demo=False,
        principal="alice",
        _env_file=None,  # type: ignore[call-arg]
    )
    return Client(build_server(open_state(settings), settings), elicitation_callback=responder, mode=mode)


def postgres_url(ledger: Harness) -> str | None:
    return ledger.db_url if ledger.db_url.startswith("postgresql") else None


def moved_today(ledger: Harness) -> int:
    return sum(r["amount_minor"] for r in ledger.audit(principal="alice", event="executed"))


async def test_daily_limit_holds_under_concurrent_transfers(ledger_harness: Harness, mode: str) -> None:
    pairs = [(ledger_harness.open_account("400"), ledger_harness.open_account("0")) for _ in range(4)]
    statuses: list[str] = []

    async def transfer(source: str, target: str) -> None:
        async with client(ledger_harness, mode) as alice:
            result = await alice.call_tool(
                "transfer_funds", {"from_account": source, "to_account": target, "amount": "400"}
            )
        assert result.structured_content is not None
        statuses.append(result.structured_content["status"])

    async with audit_head_held(postgres_url(ledger_harness)) as head, anyio.create_task_group() as group:
        for source, target in pairs:
            group.start_soon(transfer, source, target)
        await head.until_waiting(len(pairs))
        head.release()

    assert sorted(statuses) == ["denied", "denied", "executed", "executed"]
    assert sum(ledger_harness.balance(target) for _, target in pairs) == 800_00 == moved_today(ledger_harness)
    assert ledger_harness.ledger.check_invariants() == []


async def test_daily_limit_holds_for_concurrently_approved_transfers(ledger_harness: Harness, mode: str) -> None:
    pairs = [(ledger_harness.open_account("600"), ledger_harness.open_account("0")) for _ in range(2)]
    gathering = Gathering()
    results: list[dict[str, Any]] = []

    async def transfer(source: str, target: str) -> None:
        async with client(ledger_harness, mode, gathering) as alice:
            result = await alice.call_tool(
                "transfer_funds", {"from_account": source, "to_account": target, "amount": "600"}
            )
        assert result.structured_content is not None
        results.append(dict(result.structured_content))

    async with anyio.create_task_group() as group:
        for source, target in pairs:
            group.start_soon(transfer, source, target)
        await gathering.until_asked(len(pairs))
        async with audit_head_held(postgres_url(ledger_harness)) as head:
            gathering.release()  # both approvals are settled at once
            await head.until_waiting(len(pairs))

    assert sorted(r["status"] for r in results) == ["denied", "executed"]
    [denied] = [r for r in results if r["status"] == "denied"]
    assert "At most 1,000.00 a day" in denied["message"]
    assert ledger_harness.events(denied["approval_ref"]) == ["requested", "approved", "denied"]
    assert sum(ledger_harness.balance(target) for _, target in pairs) == 600_00 == moved_today(ledger_harness)
    assert moved_today(ledger_harness) <= LIMIT_MINOR
