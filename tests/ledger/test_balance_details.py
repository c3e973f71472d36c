"""The balance tool's details: exactly the published balance fields (built as a dict, no model on the way)."""

from mcp_server.ledger.books import Ledger
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools.balance import BALANCE_FIELDS, BalanceAction, BalanceResult
from policy.action import Call
from policy.loader import load_policy
from tests.ledger.helpers import standard_book


def test_details_are_the_balance_fields_and_validate(ledger: Ledger) -> None:
    standard_book(ledger)
    action = BalanceAction(ledger, load_policy())
    call = Call("get_account_balance", {"account_id": "ACC-004"}, "staff", roles=("operator",))
    done = SqlGateStore(ledger.db).transaction(lambda tx: action.execute(tx, call, action.inspect(tx, call), None))
    assert tuple(done.details) == BALANCE_FIELDS
    assert done.details == {
        "account_id": "ACC-004",
        "owner": "Eve Euro",
        "currency": "EUR",
        "balance": "50.00",
        "balance_minor": 5000,
        "formatted": "€50.00",
        "account_status": "open",
    }
    BalanceResult(status="executed", message=done.summary, **done.details)
    assert done.summary == "Account ACC-004 balance: €50.00"
