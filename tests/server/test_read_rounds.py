"""Which tools carry the approval round: those the policy can route to a human, and only those.

A tool the policy never gates is registered through `decided_at_once` (no resolvers); the
same tool under a policy that may ask goes through the round like any transfer.
"""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from policy.document import Policy
from policy.loader import load_policy
from policy.testing import ScriptedResponder, approve, reject

pytestmark = pytest.mark.anyio

GATED_READS = """
[policy]
name = "reads of the big account need a human"

[tools.get_account_balance]
default = "allow"
reason = "Reading a balance changes nothing."

[[tools.get_account_balance.rules]]
name = "big-account"
when = "account.balance_minor > minor(1000)"
outcome = "require_approval"
reason = "Balances above 1,000.00 are shown only with an operator's approval."

[tools.transfer_funds]
default = "deny"
reason = "Not in this test."

[tools.close_account]
default = "deny"
reason = "Not in this test."
"""


def settings(tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.toml"
    policy.write_text(GATED_READS)
    return Settings(db_url=f"sqlite:///{tmp_path / 'ledger.db'}", policy=policy, _env_file=None)  # type: ignore[call-arg]


async def balance(client: Client, account_id: str) -> dict[str, Any]:
    result = await client.call_tool("get_account_balance", {"account_id": account_id})
    assert result.structured_content is not None
    structured: dict[str, Any] = result.structured_content
    return structured


def test_may_ask_follows_defaults_and_rules(tmp_path: Path) -> None:
    gated = load_policy(settings(tmp_path).policy)
    default = load_policy(None)
    assert gated.may_ask("get_account_balance") and not gated.may_ask("transfer_funds")
    assert not default.may_ask("get_account_balance") and default.may_ask("close_account")
    assert not default.may_ask("no_such_tool")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_read_the_policy_may_gate_asks_when_a_rule_says_so(tmp_path: Path, mode: str) -> None:
    config = settings(tmp_path)
    # demo accounts: ACC-001 holds 5,000.00, ACC-003 120.00
    server = build_server(open_state(config, create=True, seed=True), config)
    responder = ScriptedResponder(approve(), reject())
    async with Client(server, elicitation_callback=responder, mode=mode) as client:
        small = await balance(client, "ACC-003")
        approved = await balance(client, "ACC-001")
        rejected = await balance(client, "ACC-001")

    assert small["status"] == "executed" and small["balance"] == "120.00"
    assert approved["status"] == "executed" and approved["balance"] == "5000.00" and approved["approval_ref"]
    assert rejected["status"] == "rejected" and "balance" not in rejected
    assert len(responder.questions) == 2 and "above 1,000.00" in responder.questions[0].message


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_question_without_a_round_is_denied(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: were a tool registered without its round and a rule asked anyway, nothing is shown."""
    config = settings(tmp_path)
    monkeypatch.setattr(Policy, "may_ask", lambda self, tool: False)
    server = build_server(open_state(config, create=True, seed=True), config)
    responder = ScriptedResponder(approve())
    async with Client(server, elicitation_callback=responder, mode=mode) as client:
        small = await balance(client, "ACC-003")
        big = await balance(client, "ACC-001")

    assert small["status"] == "executed"
    assert big["status"] == "denied" and "balance" not in big
    assert responder.questions == []
    with closing(sqlite3.connect(tmp_path / "ledger.db")) as ledger:  # nor is a question left pending behind it
        assert ledger.execute("SELECT COUNT(*) FROM approvals").fetchone() == (0,)
        assert ledger.execute("SELECT COUNT(*) FROM audit_log WHERE event = 'requested'").fetchone() == (0,)
