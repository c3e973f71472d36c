"""The load's required-work bound does the checks and records it claims, on both backends: a bound that
skipped one would make bankgate's load goals look unreachable, or reachable, for the wrong reason."""

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import mcp_types as types
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import RequestParamsMeta
from psycopg import pq

from bench.bare_parts import Approval
from bench.floor_server import OPENING_MINOR, SHARED, closable, seed
from bench.load import database
from bench.required_server import NOT_PENDING, Claim, Facts, Settled, open_store, required_server
from bench.required_work import APPROVAL_TTL, MAX_PENDING, Question, sign
from policy.canonical import digest
from policy.idempotency_key import IDEMPOTENCY_KEY_META
from tests.ledger.test_queued_writes import round_trips

BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get("BANKGATE_TEST_POSTGRES_URL") else [])]
KEY = Ed25519PrivateKey.generate()
SOURCE, TARGET = SHARED[0], SHARED[1]
Content = dict[str, str | int | float | bool | list[str] | None]
"""An answer's form content, as the SDK types it."""
TRANSFER = {"from_account": SOURCE, "to_account": TARGET, "amount": "12.34", "memo": "m"}


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    """`statement` run on the bound's database at `url` on a connection of the test's own."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) as conn:
            return conn.execute(statement).fetchall()
    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement)
        return cursor.fetchall() if cursor.description else []


class Bound:
    """A store, and a connection of the test's own to its database (reads and edits behind the server's back)."""

    def __init__(self, url: str) -> None:
        self.url, self.store = url, open_store(url)
        self.now = time.time()

    def clock(self) -> float:
        return self.now

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        return sql(self.url, statement)

    def balances(self, *ids: str) -> list[int]:
        rows = self.sql(f"SELECT id, balance_minor FROM required_accounts WHERE id IN {(*ids, '')}")
        found = {str(account): int(str(minor)) for account, minor in rows}
        return [found[i] for i in ids]

    def audit(self) -> list[dict[str, Any]]:
        """The audit records, each checked to carry the server's signature (`verify` raises otherwise)."""
        found = []
        for record, signature in self.sql("SELECT record, signature FROM required_audit ORDER BY id"):
            KEY.public_key().verify(bytes.fromhex(signature), record.encode())
            found.append(json.loads(record))
        return found

    def journal(self) -> dict[str, int]:
        """Each account's movement by the journal's entries, checked to equal its balance's change (in a ledger
        whose every account opened at `OPENING_MINOR` or at `closable`'s 500 or 0) and to sum to zero."""
        entries = {
            str(a): int(m) for a, m in self.sql("SELECT account_id, sum(minor) FROM required_entries GROUP BY 1")
        }
        assert sum(entries.values()) == 0
        if not entries:
            return {}
        opening = {account: minor for account, minor in seed() if account in entries}
        assert dict(zip(entries, self.balances(*entries), strict=True)) == {
            account: opening[account] + moved for account, moved in entries.items()
        }
        return entries

    def statuses(self) -> list[str]:
        return [str(status) for (status,) in self.sql("SELECT status FROM required_approvals ORDER BY status")]


@pytest.fixture(params=BACKENDS)
def bound(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bound]:
    postgres = os.environ["BANKGATE_TEST_POSTGRES_URL"] if request.param == "postgresql" else None
    with database(postgres, tmp_path) as url:
        yield Bound(url)


def answering(content: Content, asked: list[str], meanwhile: Callable[[], object] = lambda: None) -> ElicitationFnT:
    async def callback(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        meanwhile()
        return types.ElicitResult(action="accept", content=content)

    return callback


def call(
    bound: Bound,
    tool: str,
    arguments: dict[str, str],
    callback: ElicitationFnT,
    mode: str = "auto",
    key: str | None = None,
) -> str:
    """The call's outcome (`error: …` if refused), sent under the idempotency `key` if one is given."""

    async def scenario() -> str:
        server = required_server(bound.store, KEY, bound.clock)
        async with Client(server, elicitation_callback=callback, mode=mode) as client:
            meta = cast(RequestParamsMeta, {IDEMPOTENCY_KEY_META: key}) if key else None  # an open TypedDict
            result = await client.call_tool(tool, arguments, meta=meta)
        content = result.content[0]
        assert isinstance(content, types.TextContent)
        return ("error: " if result.is_error else "") + content.text

    return anyio.run(scenario)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approved_transfer_uses_its_approval_once_posts_two_entries_and_signs_its_records(
    bound: Bound, mode: str
) -> None:
    asked: list[str] = []
    assert call(bound, "required_transfer", TRANSFER, answering({"approve": True}, asked), mode) == "executed"

    assert len(asked) == 1 and "\nAnswer by: " in asked[0] and "\nReference: APR-" in asked[0]
    [(approval, status, question)] = bound.sql("SELECT id, status, question FROM required_approvals")
    assert status == "executed" and question == asked[0]
    assert bound.sql("SELECT approval, account_id, minor FROM required_entries ORDER BY leg") == [
        (approval, SOURCE, -1234),
        (approval, TARGET, 1234),
    ]
    assert bound.journal() == {SOURCE: -1234, TARGET: 1234}
    requested, executed = bound.audit()
    assert requested["event"] == "requested" and executed["event"] == "executed"
    assert requested["approval"] == executed["approval"] == approval
    assert requested["question_sha256"] == hashlib.sha256(asked[0].encode()).hexdigest()
    assert executed["arguments"] == TRANSFER and executed["principal"] == "local"


def test_a_rejected_approval_is_recorded_as_such_and_moves_nothing(bound: Bound) -> None:
    assert call(bound, "required_transfer", TRANSFER, answering({"approve": False}, [])) == "rejected"

    assert bound.statuses() == ["rejected"] and bound.journal() == {}
    assert [record["event"] for record in bound.audit()] == ["requested", "rejected"]


@pytest.mark.parametrize("approve", [True, False])
def test_an_answer_past_the_deadline_settles_the_question_expired_and_moves_nothing(
    bound: Bound, approve: bool
) -> None:
    def later() -> None:
        bound.now += APPROVAL_TTL

    assert call(bound, "required_transfer", TRANSFER, answering({"approve": approve}, [], later)) == "expired"
    assert bound.statuses() == ["expired"] and bound.journal() == {}
    assert [record["event"] for record in bound.audit()] == ["requested", "expired"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_approval_whose_stored_question_was_altered_runs_nothing(bound: Bound, mode: str) -> None:
    def alter() -> None:
        bound.sql(f"UPDATE required_approvals SET question = 'Transfer 0.01 from {SOURCE} to {TARGET}?'")

    assert call(bound, "required_transfer", TRANSFER, answering({"approve": True}, [], alter), mode).startswith(
        "error: "
    )
    assert bound.statuses() == ["pending"] and bound.journal() == {}


def question(bound: Bound, arguments: dict[str, str]) -> tuple[Question, str]:
    """A question stored behind the server's back, as its first round stores it; and its arguments' digest."""
    new = Question.render("Transfer?", Approval, bound.now)
    bound_to = digest({"tool": "transfer", **arguments})

    async def ask() -> bool:
        return await bound.store.ask(new, bound_to, bound.now, new.requested(KEY, arguments), MAX_PENDING)

    assert anyio.run(ask)
    return new, bound_to


def settle(bound: Bound, claim: Claim, decide: Callable[[dict[str, Facts]], Settled]) -> Settled:
    async def settling() -> Settled:
        return await bound.store.settle(claim, (SOURCE, TARGET), decide)

    return anyio.run(settling)


def moving(minor: int) -> Callable[[dict[str, Facts]], Settled]:
    return lambda facts: Settled(sign(KEY, "executed", 0, TRANSFER), minor)


def test_nothing_is_settled_without_a_pending_approval_of_exactly_these_arguments_question_and_caller(
    bound: Bound,
) -> None:
    shown, binding = question(bound, TRANSFER)
    other = Question(shown.approval, shown.text + " ", shown.deadline, shown.asked)

    for claim in (Claim("executed", shown, digest("other arguments")), Claim("executed", other, binding)):
        with pytest.raises(ToolError, match="not pending"):
            settle(bound, claim, moving(100))
    assert bound.statuses() == ["pending"] and bound.journal() == {}


def test_an_approval_reset_to_pending_behind_the_servers_back_cannot_move_money_again(bound: Bound) -> None:
    shown, binding = question(bound, TRANSFER)
    settle(bound, Claim("executed", shown, binding), moving(100))
    bound.sql("UPDATE required_approvals SET status = 'pending'")

    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        settle(bound, Claim("executed", shown, binding), moving(100))
    assert bound.journal() == {SOURCE: -100, TARGET: 100}


def test_a_caller_with_max_pending_questions_open_is_refused_before_asking_and_nothing_is_written(
    bound: Bound,
) -> None:
    for n in range(MAX_PENDING):
        question(bound, {**TRANSFER, "amount": f"{n + 1}.00"})
    asked: list[str] = []

    assert "too many pending" in call(bound, "required_transfer", TRANSFER, answering({"approve": True}, asked))
    assert asked == [] and bound.statuses() == ["pending"] * MAX_PENDING
    assert len(bound.audit()) == MAX_PENDING  # one `requested` each, none for the refused call
    bound.now += APPROVAL_TTL  # past their deadline, they are no longer open
    assert call(bound, "required_transfer", TRANSFER, answering({"approve": True}, asked)) == "executed"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({**TRANSFER, "to_account": SOURCE}, "two different open accounts"),
        ({**TRANSFER, "to_account": "ACC-999"}, "two different open accounts"),
        ({**TRANSFER, "from_account": "ACC-999"}, "unknown account ACC-999"),
        ({**TRANSFER, "amount": "50000.01"}, "above ceiling"),
        ({**TRANSFER, "amount": f"{OPENING_MINOR // 100 + 1}.00"}, "insufficient funds"),
    ],
)
def test_the_policy_refuses_before_asking_records_the_refusal_and_moves_nothing(
    bound: Bound, arguments: dict[str, str], reason: str
) -> None:
    asked: list[str] = []

    assert reason in call(bound, "required_transfer", arguments, answering({"approve": True}, asked))
    assert asked == [] and bound.statuses() == [] and bound.journal() == {}
    [denied] = bound.audit()
    assert denied["event"] == "denied" and reason in denied["reason"] and denied["arguments"] == arguments


@pytest.mark.parametrize("amount", ["-5.00", "twelve", "NaN", "1.005"])
def test_an_amount_that_is_not_a_positive_amount_in_cents_is_refused_before_asking(bound: Bound, amount: str) -> None:
    asked: list[str] = []

    assert "not a positive amount" in call(bound, "required_transfer", {**TRANSFER, "amount": amount},
                                           answering({"approve": True}, asked))  # fmt: skip
    assert asked == [] and bound.statuses() == []


def test_an_operator_role_taken_away_makes_the_account_unknown(bound: Bound) -> None:
    bound.sql("DELETE FROM required_roles")

    assert "unknown account" in call(bound, "required_transfer", TRANSFER, answering({"approve": True}, []))
    assert "unknown account" in call(bound, "required_balance", {"account_id": SOURCE}, answering({}, []))


def test_an_owner_may_act_but_a_viewer_may_only_read(bound: Bound) -> None:
    bound.sql("DELETE FROM required_roles")
    bound.sql(f"INSERT INTO required_access VALUES ('local', '{SOURCE}', 'viewer'), ('local', '{TARGET}', 'owner')")
    approve = answering({"approve": True}, [])

    assert "not entitled" in call(bound, "required_transfer", TRANSFER, approve)
    assert "balance: $20,000.00" in call(bound, "required_balance", {"account_id": SOURCE}, approve)
    back = {**TRANSFER, "from_account": TARGET, "to_account": SOURCE}
    assert call(bound, "required_transfer", back, approve) == "executed"


def test_the_decision_is_taken_again_at_settlement_and_a_failure_is_settled_as_such(bound: Bound) -> None:
    revoke = answering({"approve": True}, [], lambda: bound.sql("DELETE FROM required_roles"))

    assert call(bound, "required_transfer", TRANSFER, revoke) == f"failed: unknown account {SOURCE}"
    assert bound.statuses() == ["failed"] and bound.journal() == {}
    assert [record["event"] for record in bound.audit()] == ["requested", "failed"]


def test_a_close_needs_its_id_typed_back_sweeps_once_and_a_closed_account_takes_nothing(bound: Bound) -> None:
    account, target = closable(0)[0], SHARED[2]
    close = {"account_id": account, "sweep_to": target, "memo": "c"}

    wrong = call(bound, "required_close", close, answering({"approve": True, "account_id": "CLOSE-x"}, []))
    assert "is not" in wrong and bound.statuses() == ["rejected"]
    typed = answering({"approve": True, "account_id": account}, [])
    assert call(bound, "required_close", {**close, "memo": "c2"}, typed) == "executed"
    assert bound.journal() == {account: -500, target: 500}
    assert "two different open accounts" in call(bound, "required_close", {**close, "memo": "c3"}, typed)
    into_closed = {**TRANSFER, "from_account": target, "to_account": account}
    assert "two different open accounts" in call(bound, "required_transfer", into_closed, typed)
    assert bound.journal() == {account: -500, target: 500}
    assert [record["event"] for record in bound.audit()] == ["requested", "rejected", "requested", "executed",
                                                             "denied", "denied"]  # fmt: skip


def test_the_journal_sums_to_zero_with_one_movement_per_executed_approval(bound: Bound) -> None:
    approve = answering({"approve": True}, [])
    for n in range(3):
        call(bound, "required_transfer", {**TRANSFER, "memo": f"m{n}"}, approve)
    call(bound, "required_transfer", {**TRANSFER, "memo": "no"}, answering({"approve": False}, []))

    assert bound.journal() == {SOURCE: -3 * 1234, TARGET: 3 * 1234}
    executed = bound.sql("SELECT id FROM required_approvals WHERE status = 'executed'")
    by_approval = bound.sql("SELECT approval, count(*), sum(minor) FROM required_entries GROUP BY approval")
    assert sorted(by_approval) == sorted((approval, 2, 0) for (approval,) in executed) and len(executed) == 3


def test_two_settlements_racing_for_one_approval_move_the_money_once(bound: Bound) -> None:
    shown, binding = question(bound, TRANSFER)
    outcomes: list[str] = []

    async def settling() -> None:
        try:
            await bound.store.settle(Claim("executed", shown, binding), (SOURCE, TARGET), moving(100))
            outcomes.append("executed")
        except ToolError as refused:
            outcomes.append(str(refused))

    async def race() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(settling)
            group.start_soon(settling)

    anyio.run(race)
    assert sorted(outcomes) == ["executed", NOT_PENDING]
    assert bound.journal() == {SOURCE: -100, TARGET: 100}


def test_each_call_waits_for_postgresql_as_often_as_the_bound_counts(
    bound: Bound, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round trips on the wire (libpq's protocol trace): a yes 2 (BEGIN, claim and locked read; writes and
    COMMIT), every other call 1, under an idempotency key too (its outcome read with the accounts, kept with the
    record). psycopg's own transaction block waited for its BEGIN and synced twice more: 5."""
    if not bound.url.startswith("postgresql"):
        pytest.skip("SQLite runs in the process: no round trips to count")
    opened: list[psycopg.AsyncConnection[Any]] = []
    connect = psycopg.AsyncConnection.connect

    async def recorded(*args: Any, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        opened.append(await connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", recorded)
    store, wire = bound.store, tmp_path / "wire"

    async def trips(work: Awaitable[object]) -> int:
        [conn] = opened  # one call at a time: one connection
        with wire.open("w") as trace:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                await work
            finally:
                conn.pgconn.untrace()
        return round_trips(wire.read_text())

    async def scenario() -> dict[str, int]:
        await store.accounts(SOURCE, TARGET)  # opens the connection
        shown = Question.render("Transfer?", Approval, bound.now)
        bound_to = digest({"tool": "transfer", **TRANSFER})
        other = Question.render("Other?", Approval, bound.now)
        assert shown.asked is not None  # a 2026-07-28 question's, found by it
        counted = {
            "accounts": await trips(store.accounts(SOURCE, TARGET)),
            "opening": await trips(store.opening("k-yes", SOURCE, TARGET)),
            "ask": await trips(store.ask(shown, bound_to, bound.now, shown.requested(KEY, TRANSFER), MAX_PENDING)),
            "answered": await trips(store.answered(shown.asked)),
            "yes": await trips(
                store.settle(Claim("executed", shown, bound_to, "k-yes"), (SOURCE, TARGET), moving(100))
            ),
            "denied": await trips(store.denied(sign(KEY, "denied", None, TRANSFER), None, bound_to)),
            "denied, keyed": await trips(store.denied(sign(KEY, "denied", None, TRANSFER), "k-denied", bound_to)),
        }
        await store.ask(other, bound_to, bound.now, other.requested(KEY, TRANSFER), MAX_PENDING)
        no = Claim("rejected", other, bound_to, "k-no")
        counted["no"] = await trips(store.end(no, sign(KEY, "rejected", 0, TRANSFER)))
        await opened[0].close()
        return counted

    assert anyio.run(scenario) == {
        "accounts": 1, "opening": 1, "ask": 1, "answered": 1, "yes": 2, "denied": 1, "denied, keyed": 1, "no": 1
    }  # fmt: skip
    assert bound.journal() == {SOURCE: -100, TARGET: 100} and sorted(bound.statuses()) == ["executed", "rejected"]
    kept = bound.sql("SELECT idempotency_key, outcome FROM required_keys ORDER BY 1")
    assert kept == [("k-denied", "denied"), ("k-no", "rejected"), ("k-yes", "executed")]


@pytest.mark.parametrize(("mode", "looked_up"), [("auto", True), ("legacy", False)])
def test_only_a_question_answered_in_a_later_round_is_stored_under_the_sdks_digest(
    bound: Bound, mode: str, looked_up: bool
) -> None:
    assert call(bound, "required_transfer", TRANSFER, answering({"approve": True}, []), mode) == "executed"

    [(asked,)] = bound.sql("SELECT asked FROM required_approvals")
    assert (asked is not None) is looked_up


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_retried_idempotency_key_moves_the_money_once_and_asks_no_one_again(bound: Bound, mode: str) -> None:
    """bankgate keeps its promise under a key (`bench.load` sends every gated call one): a retry returns the outcome
    kept under it, and another request under the same key is refused. The bound left keys out, so the load's bound
    skipped work bankgate does for every call of the mix that asks."""
    asked: list[str] = []
    yes = answering({"approve": True}, asked)

    assert call(bound, "required_transfer", TRANSFER, yes, mode, key="k-1") == "executed"
    retried = call(bound, "required_transfer", TRANSFER, yes, mode, key="k-1")
    other = call(bound, "required_transfer", {**TRANSFER, "amount": "1.00"}, yes, mode, key="k-1")

    assert "executed" in retried and "another request" in other and len(asked) == 1
    assert bound.journal() == {SOURCE: -1234, TARGET: 1234}
    assert bound.sql("SELECT idempotency_key, outcome FROM required_keys") == [("k-1", "executed")]


def test_a_refusal_before_asking_is_kept_under_its_key(bound: Bound) -> None:
    refused = call(bound, "required_transfer", {**TRANSFER, "to_account": "NOPE"}, answering({}, []), key="k-2")

    assert "two different open accounts" in refused
    assert bound.sql("SELECT idempotency_key, outcome FROM required_keys") == [("k-2", "denied")]
