"""Entitlements under the shipped policy: principals act only on accounts they are entitled to.

The demo seed gives alice ACC-001, bob ACC-002, carol ACC-003 (owners) and makes `local` an
operator. Every scenario runs through a real MCP client on both protocol revisions, in process
on SQLite and PostgreSQL (the principal set per client); the attack itself also runs over HTTP,
where the principal is the one the bearer token names.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client import ClientRequestContext
from mcp_types import CallToolResult

from mcp_server.ledger.entitlements import EntitlementAdmin, grants
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness, HttpServer
from tests.support import SHIPPED_POLICY, ledger_close, postgres_schema

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL = "ACC-001", "ACC-002", "ACC-003"
MISSING = "ACC-404"


def seeded(harness: Harness) -> Harness:
    harness.ledger.seed_demo()
    return harness


TRANSPORTS = ["memory", "http", pytest.param("memory-postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=["memory", pytest.param("memory-postgresql", marks=pytest.mark.postgres)])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The demo ledger under the shipped policy, served over one transport."""
    if request.param == "memory-postgresql":
        with postgres_schema("bankgate_entitle") as url:
            harness = seeded(Harness("memory", url, policy=SHIPPED_POLICY))
            try:
                yield harness
            finally:
                harness.db.close()
        return
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    harness = seeded(Harness(request.param, url, policy=SHIPPED_POLICY))
    if request.param == "http":
        harness.http = HttpServer(url, "--policy", str(SHIPPED_POLICY))
    try:
        yield harness
    finally:
        if harness.http is not None:
            harness.http.stop()


async def call(
    bank: Harness, principal: str, tool: str, args: dict[str, Any], mode: str, responder: ScriptedResponder
) -> CallToolResult:
    async with bank.client(responder, mode=mode, principal=principal) as client:
        return await client.call_tool(tool, args)


def seen(result: CallToolResult, account_id: str) -> tuple[Any, ...]:
    """Everything the caller gets back, with `account_id` written as ACC-X so two calls compare."""
    structured = json.dumps(result.structured_content, sort_keys=True).replace(account_id, "ACC-X")
    texts = [getattr(block, "text", None) for block in result.content]
    return result.is_error, structured, json.dumps(texts).replace(account_id, "ACC-X")


def books(bank: Harness) -> tuple[int, ...]:
    return tuple(bank.balance(account) for account in (ALICE, BOB, CAROL))


@pytest.mark.parametrize("bank", TRANSPORTS, indirect=True)
async def test_a_principal_cannot_move_money_out_of_an_account_it_is_not_entitled_to(bank: Harness, mode: str) -> None:
    """The issue's attack: bob's token moves Alice's money to himself and closes her account, approving both."""
    before = books(bank)
    responder = ScriptedResponder(approve(), approve())
    attempts = [
        ("transfer_funds", {"from_account": ALICE, "to_account": BOB, "amount": "4000.00"}),
        ("close_account", {"account_id": ALICE, "sweep_to": BOB}),
    ]
    for tool, args in attempts:
        result = await call(bank, "bob", tool, args, mode, responder)
        assert result.structured_content is not None
        assert result.structured_content["status"] == "failed"
        assert result.structured_content["error"]["code"] == "unknown_account"
    assert responder.questions == []  # nobody was even asked
    assert books(bank) == before
    assert [r["event"] for r in bank.audit(principal="bob")] == ["failed", "failed"]  # the bank sees the attempts

    # Alice may: the same transfer from her own account is asked and, approved, runs.
    mine = ScriptedResponder(approve())
    result = await call(bank, "alice", *attempts[0], mode, mine)
    assert result.structured_content is not None and result.structured_content["status"] == "executed"
    assert f"Transfer $4,000.00 (USD) from {ALICE} (Alice Example) to {BOB} (Bob Example)." in mine.questions[0].message
    assert bank.balance(ALICE) == before[0] - 4_000_00
    assert "to_balance_after_minor" not in result.structured_content["receipt"]  # Bob's balance is not hers to read


async def test_unentitled_read_does_not_reveal_whether_the_account_exists(bank: Harness, mode: str) -> None:
    ledger_close(bank.ledger, CAROL, sweep_to=ALICE)  # a closed account must not show as closed either
    responder = ScriptedResponder()
    missing = await call(bank, "bob", "get_account_balance", {"account_id": MISSING}, mode, responder)
    assert missing.structured_content is not None
    assert missing.structured_content["error"]["code"] == "unknown_account"
    for hidden in (ALICE, CAROL):
        result = await call(bank, "bob", "get_account_balance", {"account_id": hidden}, mode, responder)
        assert seen(result, hidden) == seen(missing, MISSING)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("transfer_funds", {"from_account": "{}", "to_account": BOB, "amount": "1.00"}),
        ("transfer_funds", {"from_account": "{}", "to_account": BOB, "amount": "999999.00"}),  # > Alice's balance
        ("transfer_funds", {"from_account": "{}", "to_account": MISSING + "0", "amount": "1.00"}),
        ("close_account", {"account_id": "{}", "sweep_to": BOB}),
        ("close_account", {"account_id": "{}"}),  # funded, so it would need a sweep
    ],
    ids=["transfer", "overdraw", "missing-target", "close", "close-no-sweep"],
)
async def test_a_debit_from_an_unentitled_account_is_answered_as_if_it_did_not_exist(
    bank: Harness, mode: str, tool: str, args: dict[str, str]
) -> None:
    """No other check (funds, status, sweep, target) speaks about an account the caller may not see."""
    responder = ScriptedResponder()

    def naming(account_id: str) -> dict[str, str]:
        return {k: v.format(account_id) for k, v in args.items()}

    missing = await call(bank, "bob", tool, naming(MISSING), mode, responder)
    hidden = await call(bank, "bob", tool, naming(ALICE), mode, responder)
    assert seen(hidden, ALICE) == seen(missing, MISSING)
    assert responder.questions == []


async def test_paying_into_someone_elses_account_needs_no_entitlement_but_a_bad_target_is_an_error(
    bank: Harness, mode: str
) -> None:
    responder = ScriptedResponder(approve())
    pay_alice = {"from_account": BOB, "to_account": ALICE, "amount": "5"}
    paid = await call(bank, "bob", "transfer_funds", pay_alice, mode, responder)
    assert paid.structured_content is not None and paid.structured_content["status"] == "executed"
    ledger_close(bank.ledger, CAROL, sweep_to=ALICE)
    for target, code in ((CAROL, "account_closed"), (MISSING, "unknown_account")):
        result = await call(bank, "bob", "transfer_funds", {**pay_alice, "to_account": target}, mode, responder)
        assert result.structured_content is not None
        assert result.structured_content["error"] == {
            "code": code,
            "message": result.structured_content["error"]["message"],
            "field": "to_account",
        }
        assert target in result.structured_content["error"]["message"]


async def test_an_operator_acts_on_any_account(bank: Harness, mode: str) -> None:
    EntitlementAdmin(bank.db, "tester").grant_role("carol", "operator")
    read = await call(bank, "carol", "get_account_balance", {"account_id": ALICE}, mode, ScriptedResponder())
    assert read.structured_content is not None and read.structured_content["balance"] == "5000.00"
    responder = ScriptedResponder(approve())
    bobs_money = {"from_account": BOB, "to_account": ALICE, "amount": "10"}
    moved = await call(bank, "carol", "transfer_funds", bobs_money, mode, responder)
    assert moved.structured_content is not None and moved.structured_content["status"] == "executed"
    assert "Requested by: carol" in responder.questions[0].message  # an operator is still asked


async def test_a_viewer_reads_but_cannot_move_money(bank: Harness, mode: str) -> None:
    EntitlementAdmin(bank.db, "tester").grant("bob", "viewer", ALICE)
    responder = ScriptedResponder(approve(), approve())
    read = await call(bank, "bob", "get_account_balance", {"account_id": ALICE}, mode, responder)
    assert read.structured_content is not None and read.structured_content["formatted"] == "$5,000.00"
    for tool, args in (
        ("transfer_funds", {"from_account": ALICE, "to_account": BOB, "amount": "1"}),
        ("close_account", {"account_id": ALICE, "sweep_to": BOB}),
    ):
        result = await call(bank, "bob", tool, args, mode, responder)
        assert result.structured_content is not None
        assert result.structured_content["status"] == "denied"
        assert "Only the account's owners, and operators," in result.structured_content["message"]
    assert responder.questions == []
    assert bank.balance(ALICE) == 5_000_00


async def test_a_revoked_entitlement_stops_the_next_call(bank: Harness, mode: str) -> None:
    admin = EntitlementAdmin(bank.db, "tester")
    admin.revoke("alice", "owner", ALICE)
    result = await call(bank, "alice", "get_account_balance", {"account_id": ALICE}, mode, ScriptedResponder())
    assert result.structured_content is not None and result.structured_content["error"]["code"] == "unknown_account"
    admin.grant("alice", "owner", ALICE)
    result = await call(bank, "alice", "get_account_balance", {"account_id": ALICE}, mode, ScriptedResponder())
    assert result.structured_content is not None and result.structured_content["status"] == "executed"


class ChangesFirst(ScriptedResponder):
    """Answers as scripted, after `change` ran: something happens while the human reads the question."""

    def __init__(self, change: Callable[[], object], *answers: Any) -> None:
        super().__init__(*answers)
        self.change = change

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        self.change()
        return await super().__call__(context, params)


async def test_an_entitlement_revoked_while_the_question_is_open_stops_the_debit(bank: Harness, mode: str) -> None:
    """Entitlements are re-read in the settling transaction, like balances: a yes after the revocation moves nothing."""
    responder = ChangesFirst(lambda: EntitlementAdmin(bank.db, "tester").revoke("alice", "owner", ALICE), approve())
    args = {"from_account": ALICE, "to_account": BOB, "amount": "100"}
    result = await call(bank, "alice", "transfer_funds", args, mode, responder)
    assert len(responder.questions) == 1
    assert result.structured_content is not None
    assert result.structured_content["status"] == "failed"
    assert result.structured_content["error"]["code"] == "unknown_account"
    assert bank.balance(ALICE) == 5_000_00


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_grants_survive_a_restart_and_every_change_is_audited(backend: str, tmp_path: Path) -> None:
    def check(url: str) -> None:
        first = seeded(Harness("memory", url))
        admin = EntitlementAdmin(first.db, "ops-desk")
        assert admin.grant("dave", "viewer", ALICE) and not admin.grant("dave", "viewer", ALICE)
        assert admin.grant_role("erin", "operator")
        assert admin.revoke("carol", "owner", CAROL)
        first.db.close()
        again = Harness("memory", url)  # a new process's view: reopened, migrations applied again
        standing = {(g.principal, g.account_id, g.name, g.granted_by) for g in grants(again.db)}
        assert standing == {
            ("alice", ALICE, "owner", "demo seed"),
            ("bob", BOB, "owner", "demo seed"),
            ("local", None, "operator", "demo seed"),
            ("dave", ALICE, "viewer", "admin:ops-desk"),
            ("erin", None, "operator", "admin:ops-desk"),
        }
        changes = [(r["event"], r["principal"], r["tool"], r["arguments"]) for r in again.audit(tool="entitlements")]
        by = "admin:ops-desk"
        assert changes == [
            ("granted", by, "entitlements", {"principal": "dave", "relation": "viewer", "account_id": ALICE}),
            ("granted", by, "entitlements", {"principal": "erin", "role": "operator"}),
            ("revoked", by, "entitlements", {"principal": "carol", "relation": "owner", "account_id": CAROL}),
        ]
        again.db.close()

    if backend == "postgresql":
        with postgres_schema("bankgate_entitle") as url:
            check(url)
    else:
        check(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_the_demo_seed_grants_exactly_what_the_demo_and_readme_need(tmp_path: Path) -> None:
    harness = seeded(Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}"))
    harness.ledger.seed_demo()  # a second seed changes nothing
    assert [(g.principal, g.account_id, g.name) for g in grants(harness.db)] == [
        ("alice", ALICE, "owner"),
        ("bob", BOB, "owner"),
        ("carol", CAROL, "owner"),
        ("local", None, "operator"),
    ]
