"""The policy's confirmation messages reach every client: the AG-UI tool result and a plain MCP call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx2
import pytest

from agent_host.emulator import Emulator
from tests.host.helpers import ledger_target, settings_for

from .helpers import interrupt_of, run, run_input, tool_results, web_for

pytestmark = pytest.mark.anyio
POLICY = """
[tools.get_account_balance]
default = "allow"
messages = { executed = "{default} (read for {principal})" }

[tools.transfer_funds]
default = "require_approval"

[tools.transfer_funds.messages]
rejected = "Transfer {reference} of {amount} to {to_account} was not made. No changes have been made to your account."
cancelled = "Action cancelled. No changes have been made to your account."

[[tools.transfer_funds.rules]]
name = "above-ceiling"
when = "amount_minor > minor(1000)"
outcome = "deny"
reason = "Above the web limit."
messages = { denied = "Transfers over 1,000 need a branch visit; {amount} was not sent." }

[tools.close_account]
default = "require_approval"
confirm = "account_id"
"""


async def test_policy_wording_in_tool_results(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    policy = tmp_path / "worded.toml"
    policy.write_text(POLICY, encoding="utf-8")
    target = replace(ledger_target(settings_for(emulator, agent_name), tmp_path), server_args=("--policy", str(policy)))
    async with (
        web_for(emulator, tmp_path, agent_name, target=target) as web,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        asked = interrupt_of(await run(client, web.url, run_input("t", "Transfer $20 from ACC-001 to ACC-002.")))
        resume = [{"interruptId": asked.id, "status": "resolved", "payload": {"approve": False}}]
        (rejected,) = tool_results(await run(client, web.url, run_input("t", resume=resume)))
        reference = asked.metadata["reference"]
        assert rejected["status"] == "rejected"
        assert rejected["message"] == (
            f"Transfer {reference} of 20 to ACC-002 was not made. No changes have been made to your account."
        )

        asked = interrupt_of(await run(client, web.url, run_input("t", "Transfer $30 from ACC-001 to ACC-002.")))
        resume = [{"interruptId": asked.id, "status": "cancelled"}]
        (cancelled,) = tool_results(await run(client, web.url, run_input("t", resume=resume)))
        assert cancelled["message"] == "Action cancelled. No changes have been made to your account."

        # A plain MCP call (no AG-UI in between) gets the same wording.
        denied = await web.host.link.call(
            "transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5000"}
        )
        assert denied.output["status"] == "denied"
        assert denied.output["message"] == "Transfers over 1,000 need a branch visit; 5000 was not sent."
        balance = await web.host.link.call("get_account_balance", {"account_id": "ACC-001"})
        assert balance.output["message"] == "Account ACC-001 balance: $5,000.00 (read for local)"
        refused = await web.host.link.call("close_account", {"account_id": "ACC-404"})
        assert refused.output["status"] == "failed", "refusals keep their own sentence"
