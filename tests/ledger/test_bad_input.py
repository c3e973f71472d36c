"""Every malformed or impossible request is refused with a precise code and reason,
and changes nothing: balances, statuses and row counts are identical afterwards."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from tests.ledger.helpers import standard_book
from tests.support import ledger_close, ledger_transfer, snapshot

Call = Callable[[Ledger], Any]


def transfer(amount: object = "10.00", **overrides: object) -> Call:
    request: dict[str, Any] = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": amount}
    request.update(overrides)
    return lambda ledger: ledger_transfer(ledger, **request)


def close(account_id: object, sweep_to: object = None) -> Call:
    return lambda ledger: ledger_close(ledger, account_id, sweep_to)


def create_as(account_id: str) -> Call:
    return lambda ledger: ledger.create_account("Ann", "USD", account_id)


def case(call: Call, code: str, field: str | None, fragment: str, id: str) -> Any:
    return pytest.param(call, code, field, fragment, id=id)


CASES = [
    # amounts
    case(transfer("-5"), "invalid_amount", "amount", "greater than zero", "negative-text"),
    case(transfer(-5), "invalid_amount", "amount", "greater than zero", "negative-int"),
    case(transfer(0), "invalid_amount", "amount", "greater than zero", "zero"),
    case(transfer("0.00"), "invalid_amount", "amount", "greater than zero", "zero-text"),
    case(transfer(float("nan")), "invalid_amount", "amount", "finite", "nan"),
    case(transfer(float("inf")), "invalid_amount", "amount", "finite", "inf"),
    case(transfer(Decimal("NaN")), "invalid_amount", "amount", "finite", "decimal-nan"),
    case(transfer("NaN"), "invalid_amount", "amount", "plain decimal", "nan-text"),
    case(transfer("1e309"), "invalid_amount", "amount", "exponents", "1e309"),
    case(transfer("1e3"), "invalid_amount", "amount", "exponents", "1e3"),
    case(transfer("0.001"), "invalid_amount", "amount", "at most 2 decimal places", "sub-cent"),
    case(transfer("10000000.01"), "invalid_amount", "amount", "exceeds the limit", "above-ceiling"),
    case(transfer(True), "invalid_amount", "amount", "must be a number", "bool"),
    case(transfer(None), "invalid_amount", "amount", "must be a number", "none"),
    case(transfer(""), "invalid_amount", "amount", "empty", "empty"),
    case(transfer("abc"), "invalid_amount", "amount", "plain decimal", "garbage"),
    case(transfer("5,00"), "invalid_amount", "amount", "decimal commas", "decimal-comma"),
    case(transfer("١٠"), "invalid_amount", "amount", "plain decimal", "arabic-indic-digits"),
    case(transfer("１０"), "invalid_amount", "amount", "plain decimal", "fullwidth-digits"),
    case(transfer("10; DROP TABLE entries"), "invalid_amount", "amount", "plain decimal", "sql-in-amount"),
    # account ids
    case(
        transfer(from_account="ACC-1; DROP TABLE accounts"),
        "invalid_account_id",
        "from_account",
        "whitespace",
        "sql-in-account",
    ),
    case(transfer(from_account="ACC-1'--"), "invalid_account_id", "from_account", "ACC-001", "quote"),
    case(transfer(to_account="АCC-002"), "invalid_account_id", "to_account", "non-ASCII", "cyrillic-a"),
    case(transfer(to_account="ACC-００２"), "invalid_account_id", "to_account", "non-ASCII", "fullwidth"),
    case(transfer(to_account="acc-002"), "invalid_account_id", "to_account", "upper-case", "lowercase"),
    case(transfer(to_account="ACC-002 "), "invalid_account_id", "to_account", "whitespace", "trailing-space"),
    case(transfer(to_account=None), "invalid_account_id", "to_account", "must be a string", "none-id"),
    case(transfer(to_account="SYS-EXTERNAL-USD"), "invalid_account_id", "to_account", "ACC-001", "system"),
    case(transfer(to_account="ACC-999"), "unknown_account", "to_account", "does not exist", "unknown-to"),
    case(transfer(from_account="ACC-999"), "unknown_account", "from_account", "does not exist", "unknown-from"),
    # account state and pairing
    case(transfer(to_account="ACC-005"), "account_closed", "to_account", "is closed", "to-closed"),
    case(transfer(from_account="ACC-005"), "account_closed", "from_account", "is closed", "from-closed"),
    case(transfer(to_account="ACC-004"), "currency_mismatch", "to_account", "same currency", "usd-to-eur"),
    case(transfer(to_account="ACC-001"), "same_account", "to_account", "two different accounts", "same"),
    case(
        transfer("250.01", from_account="ACC-002", to_account="ACC-001"),
        "insufficient_funds",
        "amount",
        "$250.00",
        "overdraft",
    ),
    case(transfer("5000.01"), "insufficient_funds", "amount", "less than the $5,000.01", "overdraft-all"),
    # memo and key
    case(transfer(memo="x" * 141), "invalid_memo", "memo", "at most 140", "long-memo"),
    case(transfer(memo="pay \u202eevil"), "invalid_memo", "memo", "control", "bidi-memo"),
    case(transfer(idempotency_key="a b"), "invalid_idempotency_key", "idempotency_key", "ASCII", "key"),
    # close
    case(close("ACC-003"), "balance_not_zero", "sweep_to", "still holds $120.00", "close-funded"),
    case(close("ACC-005"), "account_closed", "account_id", "is closed", "close-closed"),
    case(close("ACC-999"), "unknown_account", "account_id", "does not exist", "close-unknown"),
    case(close("ACC-003", "ACC-003"), "same_account", "sweep_to", "different account", "sweep-self"),
    case(close("ACC-003", "ACC-004"), "currency_mismatch", "sweep_to", "same currency", "sweep-eur"),
    case(close("ACC-003", "ACC-005"), "account_closed", "sweep_to", "is closed", "sweep-closed"),
    case(close("ACC-003", "ACC-998"), "unknown_account", "sweep_to", "does not exist", "sweep-unk"),
    case(close("ACC-003", "acc-2"), "invalid_account_id", "sweep_to", "upper-case", "sweep-bad"),
    # deposits, account creation, reads
    case(lambda lg: lg.deposit("ACC-005", "1"), "account_closed", "account_id", "is closed", "deposit-closed"),
    case(lambda lg: lg.deposit("ACC-004", "1.005"), "invalid_amount", "amount", "EUR amounts", "deposit-cents"),
    case(lambda lg: lg.create_account("Ann", "usd"), "invalid_currency", "currency", "upper-case", "currency-lc"),
    case(lambda lg: lg.create_account("Ann", "XYZ"), "invalid_currency", "currency", "ISO 4217", "currency-unk"),
    case(lambda lg: lg.create_account(" "), "invalid_owner", "owner", "empty", "owner-empty"),
    case(lambda lg: lg.create_account("Ann", "USD", "ACC-001"), "account_exists", "account_id", "exists", "dup"),
    # An id that differs from another only by leading zeros would read as that account in every question.
    *(
        case(create_as(id), "account_exists", "account_id", "ACC-001", id)
        for id in ("ACC-01", "ACC-0001", "ACC-1", "ACC-000000000001")
    ),
    case(lambda lg: lg.balance("ACC-999"), "unknown_account", "account_id", "does not exist", "balance-unknown"),
    case(lambda lg: lg.history("ACC-001", limit=0), "invalid_limit", "limit", "from 1 to 500", "limit-zero"),
    case(lambda lg: lg.history("ACC-001", limit=True), "invalid_limit", "limit", "from 1 to 500", "limit-bool"),
]


@pytest.mark.parametrize(("call", "code", "field", "fragment"), CASES)
def test_bad_request_is_refused_and_changes_nothing(
    ledger: Ledger, call: Call, code: str, field: str | None, fragment: str
) -> None:
    standard_book(ledger)
    before = snapshot(ledger.db)

    with pytest.raises(LedgerError) as caught:
        call(ledger)

    assert (caught.value.code, caught.value.field) == (code, field)
    assert fragment in caught.value.message
    assert "Traceback" not in caught.value.message
    assert snapshot(ledger.db) == before
    assert ledger.check_invariants() == []
