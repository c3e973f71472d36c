"""A close sweeps exactly what was shown, to the account that was shown, under the same limits
as any other money moving: the policy's amount rules and daily totals, and the server's maximum.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.app import build_server, open_state
from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.settings import Settings
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import outcome, postgres_schema

pytestmark = pytest.mark.anyio

DAILY = "moved_today_minor + amount_minor > minor(100)"
POLICY = f"""
[tools.get_account_balance]
default = "allow"

[tools.transfer_funds]
default = "require_approval"
reason = "Moving money needs approval."

[[tools.transfer_funds.rules]]
name = "daily"
when = "{DAILY}"
outcome = "deny"
reason = "At most 100.00 a day."

[tools.close_account]
default = "require_approval"
reason = "Closing needs approval."
confirm = "account_id"

[[tools.close_account.rules]]
name = "daily"
when = "{DAILY}"
outcome = "deny"
reason = "At most 100.00 a day."
"""


@pytest.mark.parametrize(
    ("balance", "sweep", "shown"),
    [
        ("42.00", True, "First sweep its balance of $42.00 to {keeper} (Kim Keeper)."),
        ("0", True, "First sweep its balance of $0.00 to {keeper} (Kim Keeper)."),
        ("0", False, "First sweep its balance of $0.00 to nowhere (no sweep_to given)."),
    ],
    ids=["funded", "empty", "empty-without-sweep_to"],
)
async def test_a_close_question_names_the_sweep_amount_and_target(
    harness: Harness, mode: str, balance: str, sweep: bool, shown: str
) -> None:
    account, keeper = harness.open_account(balance, "Cleo Closing"), harness.open_account("1.00", "Kim Keeper")
    responder = ScriptedResponder(approve())
    args = {"account_id": account} | ({"sweep_to": keeper} if sweep else {})
    async with harness.client(responder, mode=mode) as client:
        closed = outcome(await client.call_tool("close_account", args))

    assert closed["status"] == "executed"
    [question] = responder.questions
    assert f"Close account {account} (Cleo Closing) permanently." in question.message
    assert shown.format(keeper=keeper) in question.message
    assert "If that balance changes before your answer, nothing is done." in question.message


@pytest.mark.parametrize("balance", ["0", "42.00"], ids=["empty", "funded"])
async def test_money_arriving_before_the_answer_is_not_swept(harness: Harness, mode: str, balance: str) -> None:
    """Once the approver saw "Close account X permanently." and money that arrived meanwhile
    went to a sweep_to never shown; or saw the old balance while the sweep moved the new one."""
    account, keeper = harness.open_account(balance, "Cleo Closing"), harness.open_account("1.00", "Kim Keeper")
    asked = ScriptedResponder(approve())

    async def deposit_then_approve(context: Any, params: Any) -> Any:
        harness.ledger.deposit(account, "10.00")  # a salary lands while the approver reads the question
        return await asked(context, params)

    async with harness.client(deposit_then_approve, mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("close_account", {"account_id": account, "sweep_to": keeper})

    body = outcome(result)
    assert result.is_error and body["status"] == "failed"
    assert body["error"]["code"] == "changed_since_approval"
    shown = "$42.00" if balance == "42.00" else "$0.00"
    now = "$52.00" if balance == "42.00" else "$10.00"
    assert f"balance to sweep: {shown} when asked, {now} now" in body["message"]
    assert harness.ledger.balance(account).status == "open"
    assert harness.balance(account) == int(now.strip("$").replace(".", ""))
    assert harness.balance(keeper) == 100
    assert harness.events(body["approval_ref"]) == ["requested", "approved", "failed"]
    [failed] = harness.audit(approval_ref=body["approval_ref"], event="failed")
    assert failed["result"]["error"]["code"] == "changed_since_approval" and failed["amount_minor"] == 0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        with postgres_schema("bankgate_sweep") as url:
            yield url


def served(db_url: str, tmp_path: Path, policy: str | None = POLICY, **options: Any) -> tuple[Any, Harness]:
    """The server in-process under `policy` (None: the shipped one), and the test's view of its ledger."""
    path = None
    if policy is not None:
        path = tmp_path / "policy.toml"
        path.write_text(policy)
    settings = Settings(db_url=db_url, policy=path, seed_demo=False, _env_file=None, **options)  # type: ignore[call-arg]
    server = build_server(open_state(settings, create=True), settings)
    return server, Harness("memory", db_url)


async def test_swept_amounts_count_toward_the_daily_total(db_url: str, tmp_path: Path, mode: str) -> None:
    server, books = served(db_url, tmp_path)
    closing, other, keeper = books.open_account("80.00"), books.open_account("30.00"), books.open_account("0")
    responder = ScriptedResponder(approve())
    async with Client(server, elicitation_callback=responder, mode=mode) as client:
        swept = outcome(await client.call_tool("close_account", {"account_id": closing, "sweep_to": keeper}))
        transfer = outcome(
            await client.call_tool("transfer_funds", {"from_account": other, "to_account": keeper, "amount": "30"})
        )
        second = outcome(await client.call_tool("close_account", {"account_id": other, "sweep_to": keeper}))

    assert swept["status"] == "executed" and swept["receipt"]["swept_amount_minor"] == 8000
    assert transfer["status"] == "denied" and second["status"] == "denied"
    assert len(responder.questions) == 1 and books.balance(other) == 3000 and books.balance(keeper) == 8000
    [executed] = books.audit(approval_ref=swept["approval_ref"], event="executed")
    assert executed["amount_minor"] == 8000
    books.db.close()


async def test_a_sweep_above_the_servers_maximum_is_refused(db_url: str, tmp_path: Path, mode: str) -> None:
    """Once a 2,000,000.00 sweep went through, twice the server's maximum amount."""
    server, books = served(db_url, tmp_path, max_amount_minor=100_00)
    rich, keeper = books.open_account("150.00"), books.open_account("0")
    responder = ScriptedResponder(approve())
    async with Client(server, elicitation_callback=responder, mode=mode) as client:
        result = await client.call_tool("close_account", {"account_id": rich, "sweep_to": keeper})

    body = outcome(result)
    assert result.is_error and body["error"]["code"] == "sweep_over_limit"
    assert "more than the limit of $100.00 per transaction" in body["message"]
    assert responder.questions == [] and books.balance(rich) == 15000 and books.balance(keeper) == 0
    assert books.ledger.balance(rich).status == "open"
    books.db.close()


async def test_the_shipped_policy_caps_a_sweep_like_a_transfer(db_url: str, tmp_path: Path, mode: str) -> None:
    server, books = served(db_url, tmp_path, policy=None)
    rich, keeper = books.open_account("50000.01"), books.open_account("0")
    EntitlementAdmin(books.db, "test").grant("local", "owner", rich)  # the shipped policy hides others' accounts
    responder = ScriptedResponder(approve())
    async with Client(server, elicitation_callback=responder, mode=mode) as client:
        result = outcome(await client.call_tool("close_account", {"account_id": rich, "sweep_to": keeper}))

    assert result["status"] == "denied"
    assert "Sweeps above 50,000 in the account's currency are not allowed" in result["message"]
    assert responder.questions == [] and books.balance(rich) == 5_000_001
    [denied] = [r for r in books.audit(event="denied") if r["arguments"]["account_id"] == rich]
    assert denied["matched_rules"] == ["above-ceiling"]
    books.db.close()
