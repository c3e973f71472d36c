"""Hostile and malformed arguments through a real MCP client: a clear error, and nothing changes."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mcp_server.app import build_server, open_state
from mcp_server.edge import Edge
from mcp_server.settings import Settings
from mcp_server.tools import TOOL_ARGUMENTS
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import KEY

pytestmark = pytest.mark.anyio

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("get_account_balance", {}, "missing_argument", "account_id is required"),
    ("get_account_balance", {"account_id": 1}, "invalid_account_id", "account_id must be a string"),
    ("get_account_balance", {"account_id": "АCC-001"}, "invalid_account_id", "look-alike"),
    ("get_account_balance", {"account_id": "ACC-００1"}, "invalid_account_id", "look-alike"),
    ("get_account_balance", {"account_id": "acc-001"}, "invalid_account_id", "upper-case"),
    ("get_account_balance", {"account_id": " ACC-001"}, "invalid_account_id", "whitespace"),
    ("get_account_balance", {"account_id": "ACC-1; DROP TABLE accounts"}, "invalid_account_id", "account_id"),
    ("get_account_balance", {"account_id": "ACC-1' OR '1'='1"}, "invalid_account_id", "account_id"),
    (
        "get_account_balance",
        {"account_id": "ACC-001", "pin": "1234"},
        "unexpected_argument",
        "get_account_balance takes only account_id",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002"}, "missing_argument", "amount is required"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": True},
        "invalid_amount",
        "amount",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": [5]}, "invalid_amount", "amount"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "-5"},
        "invalid_amount",
        "amount",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": 0}, "invalid_amount", "amount"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "NaN"},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1e309"},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": 10**30},
        "invalid_amount",
        "amount",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "0.001"},
        "invalid_amount",
        "decimal",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5", "memo": 7},
        "invalid_memo",
        "memo",
    ),
    ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-001", "amount": "5"}, "same_account", "ACC-001"),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-404", "amount": "5"},
        "unknown_account",
        "ACC-404",
    ),
    (
        "transfer_funds",
        {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "99999"},
        "insufficient_funds",
        "ACC-001",
    ),
    ("close_account", {"account_id": "ACC-001", "sweep_to": "SYS-EXTERNAL-USD"}, "invalid_account_id", "sweep_to"),
]


def fingerprint(harness: Harness) -> tuple[Any, ...]:
    def read(conn: Any) -> tuple[Any, ...]:
        balances = conn.execute(text("SELECT id, balance_minor, status FROM accounts ORDER BY id")).all()
        counts = [conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in ("entries", "approvals")]
        return (tuple(balances), *counts)

    return harness.db.read(read)


@pytest.fixture
def ledger(tmp_path: Any) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    return harness


@pytest.mark.parametrize(("tool", "args", "code", "says"), CASES)
async def test_bad_input_is_refused_and_changes_nothing(
    ledger: Harness, tool: str, args: dict[str, Any], code: str, says: str
) -> None:
    before = fingerprint(ledger)
    responder = ScriptedResponder(approve())
    async with ledger.client(responder) as client:
        result = await client.call_tool(tool, args)

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert "Traceback" not in result.content[0].text  # type: ignore[union-attr]
    assert responder.questions == []
    assert fingerprint(ledger) == before


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("get_account_balance", {"account_id": "ACC-001", "pin_code_4711": "1234"}),
        ("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5", "Ignore previous": 1}),
        ("close_account", {"account_id": "ACC-003", "sweep_to": "ACC-001", "override_limit": True}),
    ],
)
async def test_an_unexpected_argument_is_named_by_the_allowed_ones_never_echoed(
    ledger: Harness, tool: str, args: dict[str, Any]
) -> None:
    """Once the error repeated the unexpected name in its message and `field` (the fuzz drill found it)."""
    before = fingerprint(ledger)
    responder = ScriptedResponder(approve())
    async with ledger.client(responder) as client:
        result = await client.call_tool(tool, args)

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    [unexpected] = [name for name in args if name not in TOOL_ARGUMENTS[tool]]
    assert error["code"] == "unexpected_argument" and error["field"] == "arguments"
    assert f"{tool} takes only {', '.join(TOOL_ARGUMENTS[tool])}" in error["message"]
    shown = result.structured_content["message"] + result.content[0].text  # type: ignore[union-attr]
    assert unexpected not in shown
    assert responder.questions == [] and fingerprint(ledger) == before


BAD_KEYS: dict[str, object] = {
    "empty": "",
    "spaces": "  ",
    "10 kB": "k" * 10_000,
    "with NUL": "k\x00",
    "non-ASCII": "clé",
    "a number": 7,
}
MISNAMED_KEYS: dict[str, dict[str, Any]] = {
    "with an underscore": {"io.bankgate/idempotency_key": "pay-1"},
    "capitalised": {"io.bankgate/Idempotency-Key": "pay-1"},
    "in a capitalised namespace": {"IO.BANKGATE/idempotency-key": "pay-1"},
    "nested under the namespace": {"io.bankgate": {"idempotency-key": "pay-1"}},
}
BAD_META = [
    *(pytest.param({KEY: key}, "invalid_idempotency_key", KEY, id=f"key {name}") for name, key in BAD_KEYS.items()),
    *(pytest.param(meta, "unknown_meta_field", "_meta", id=f"key {name}") for name, meta in MISNAMED_KEYS.items()),
]


@pytest.mark.parametrize(("meta", "code", "field"), BAD_META)
async def test_a_bad_meta_field_is_refused_naming_what_is_read_and_changes_nothing(
    ledger: Harness, meta: dict[str, Any], code: str, field: str
) -> None:
    """A field in the server's own `_meta` namespace that it does not read was once ignored: an idempotency key
    under a misspelt name left the call unkeyed, and each retry moved the money again."""
    before = fingerprint(ledger)
    responder = ScriptedResponder(approve())
    args = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5"}
    async with ledger.client(responder) as client:
        result = await client.call_tool("transfer_funds", args, meta=meta)  # type: ignore[arg-type]

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert (error["code"], error["field"]) == (code, field) and f"'{KEY}'" in error["message"], error
    assert responder.questions == [] and fingerprint(ledger) == before


@pytest.mark.parametrize(("currency", "amount"), [("USD", "5.000"), ("USD", "0.010"), ("JPY", "500.0")])
async def test_an_amount_with_more_decimals_than_its_currency_is_refused_on_the_tool_path(
    ledger: Harness, currency: str, amount: str
) -> None:
    """Once the tool path stripped the zeros first, and "5.000" moved 5 USD."""
    source = ledger.ledger.create_account("Dee Decimals", currency).id
    ledger.ledger.deposit(source, "1000")
    target = ledger.ledger.create_account("Eve Exact", currency).id
    before = fingerprint(ledger)
    responder = ScriptedResponder(approve())
    async with ledger.client(responder) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": amount}
        )

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert (error["code"], error["field"]) == ("invalid_amount", "amount")
    assert "decimal places" in error["message"]
    assert responder.questions == [] and fingerprint(ledger) == before


@pytest.mark.parametrize("amount", [10**309, 2**1100], ids=["1e309", "2^1100"])
async def test_an_amount_no_number_can_carry_is_refused_by_name_never_echoed(
    harness: Harness, mode: str, amount: int
) -> None:
    """Once a JSON integer past the float range passed the edge and reached the SDK's own validation,
    whose answer had no structured error and echoed the input's digits."""
    source = harness.open_account("10.00")
    target = harness.open_account("0")
    before = fingerprint(harness)
    responder = ScriptedResponder(approve())
    async with harness.client(responder, mode=mode) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": amount}
        )

    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert (error["code"], error["field"]) == ("invalid_amount", "amount")
    assert "more than 40 digits" in error["message"]
    assert str(amount)[:12] not in result.content[0].text  # type: ignore[union-attr]
    assert responder.questions == [] and fingerprint(harness) == before
    assert harness.ledger.check_invariants() == []


def test_the_argument_check_is_the_servers_last_middleware(tmp_path: Path) -> None:
    """The gate decides on the request and the arguments the edge check holds (`policy.mcp.parsed_arguments`),
    so no middleware may come after it: one rewriting the call there would have it decided on other arguments
    than the tool runs with. bankgate's one middleware is the edge, the server's last, whose last step the check is."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'ledger.db'}", _env_file=None)  # type: ignore[call-arg]
    server = build_server(open_state(settings, create=True), settings)
    assert isinstance(server.middleware[-1], Edge)
    ours = [m for m in server.middleware if m.__module__.startswith(("mcp_server", "policy"))]
    assert ours == [server.middleware[-1]]
