"""A daily limit on money moved holds when the same caller moves it through different tools at once.

`moved_today_minor` counts transfers and the balances closes sweep alike, so a transfer and a close
decided concurrently must be decided one after the other (the principal's turn), never both against the
same stale total. On PostgreSQL both are made to decide and act before either commits (`audit_head_held`).
"""

from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from tests.server.harness import Harness
from tests.server.interleave import audit_head_held

pytestmark = pytest.mark.anyio

POLICY = """
[tools.get_account_balance]
default = "allow"

[tools.transfer_funds]
default = "allow"

[[tools.transfer_funds.rules]]
name = "daily"
when = "moved_today_minor + amount_minor > minor(1000)"
outcome = "deny"
reason = "At most 1,000.00 a day per caller."

[tools.close_account]
default = "allow"

[[tools.close_account.rules]]
name = "daily"
when = "moved_today_minor + amount_minor > minor(1000)"
outcome = "deny"
reason = "At most 1,000.00 a day per caller."
"""


async def test_a_transfer_and_a_close_at_once_never_pass_the_limit_together(
    ledger_harness: Harness, mode: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    settings = Settings(
        db_url=ledger_harness.db_url,
        policy=policy,
        seed_demo=False,
        principal="alice",
        _env_file=None,  # type: ignore[call-arg]
    )
    closing, sink = ledger_harness.open_account("600"), ledger_harness.open_account("0")
    paying, payee = ledger_harness.open_account("600"), ledger_harness.open_account("0")
    calls = [
        ("close_account", {"account_id": closing, "sweep_to": sink}),
        ("transfer_funds", {"from_account": paying, "to_account": payee, "amount": "600"}),
    ]
    statuses: dict[str, str] = {}

    async def call(tool: str, args: dict[str, str]) -> None:
        async with Client(build_server(open_state(settings), settings), mode=mode) as alice:
            result = await alice.call_tool(tool, args)
        assert result.structured_content is not None
        statuses[tool] = result.structured_content["status"]

    url = ledger_harness.db_url if ledger_harness.db_url.startswith("postgresql") else None
    async with audit_head_held(url) as head, anyio.create_task_group() as group:
        for tool, args in calls:
            group.start_soon(call, tool, args)
        await head.until_waiting(len(calls))
        head.release()

    assert sorted(statuses.values()) == ["denied", "executed"], statuses
    moved = sum(r["amount_minor"] for r in ledger_harness.audit(principal="alice", event="executed"))
    assert moved == 600_00 == ledger_harness.balance(sink) + ledger_harness.balance(payee)
    assert ledger_harness.ledger.check_invariants() == []
