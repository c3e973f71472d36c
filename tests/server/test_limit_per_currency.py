"""A daily limit counts the call's own currency (both backends).

`minor(1000)` is 1,000 major units of the call's currency, so `moved_today_minor` must be the money moved
today in that currency: 900.00 EUR is 90,000 minor units, and summed into a yen total it would refuse a
500-yen transfer against a 1,000-yen limit (or, the other way round, let a total in one currency hide behind
small amounts in another).
"""

from pathlib import Path

import pytest

from tests.server.harness import Harness

pytestmark = pytest.mark.anyio

POLICY = """
[tools.transfer_funds]
default = "allow"

[[tools.transfer_funds.rules]]
name = "daily"
when = "moved_today_minor + amount_minor > minor(1000)"
outcome = "deny"
reason = "At most 1,000 a day per caller, in each currency."
"""


def funded(harness: Harness, currency: str, amount: str) -> tuple[str, str]:
    books = harness.ledger
    source, target = books.create_account("Payer", currency).id, books.create_account("Payee", currency).id
    books.deposit(source, amount)
    return source, target


async def test_a_daily_limit_counts_only_the_calls_currency(ledger_harness: Harness, tmp_path: Path) -> None:
    ledger_harness.policy = tmp_path / "policy.toml"
    ledger_harness.policy.write_text(POLICY)
    euro, yen = funded(ledger_harness, "EUR", "5000"), funded(ledger_harness, "JPY", "5000")
    statuses = []
    async with ledger_harness.client(principal="alice") as alice:
        for (source, target), amount in [(euro, "900"), (yen, "500"), (euro, "200"), (yen, "600"), (yen, "500")]:
            result = await alice.call_tool(
                "transfer_funds", {"from_account": source, "to_account": target, "amount": amount}
            )
            assert result.structured_content is not None
            statuses.append((amount, result.structured_content["status"]))

    assert statuses == [
        ("900", "executed"),
        ("500", "executed"),
        ("200", "denied"),
        ("600", "denied"),
        ("500", "executed"),
    ]
    assert ledger_harness.balance(euro[1]) == 900_00 and ledger_harness.balance(yen[1]) == 1000
    stated = {(r["amount_minor"], r["currency"]) for r in ledger_harness.audit(principal="alice", event="executed")}
    assert stated == {(900_00, "EUR"), (500, "JPY")}


async def test_minor_in_visibility_is_in_the_accounts_currency(ledger_harness: Harness, tmp_path: Path) -> None:
    """`[accounts] visible` has no call currency but the account's: minor(1000) there is 1,000 yen for a yen
    account, not 100,000 minor units as for a two-decimal currency."""
    ledger_harness.policy = tmp_path / "policy.toml"
    ledger_harness.policy.write_text(
        '[accounts]\nvisible = "account.balance_minor >= minor(1000)"\n[tools.get_account_balance]\ndefault = "allow"\n'
    )
    yen, _ = funded(ledger_harness, "JPY", "5000")
    async with ledger_harness.client(principal="alice") as alice:
        result = await alice.call_tool("get_account_balance", {"account_id": yen})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "executed", result.structured_content
