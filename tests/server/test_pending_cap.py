"""One principal cannot flood the approvers: at most `max_pending_approvals` of its questions wait at once.

Without a cap a caller (a prompt-injected model) could open thousands of approvals, each a transfer
question at the desk's inbox or a call holding a task until its deadline, burying other principals'
requests. Past the cap a new question is refused, naming the setting, and nothing is written; a key's
question asked again is shared, not counted twice; settled or expired questions free their place. On
PostgreSQL the calls are made to count before any of them commits (`interleave`): the cap holds under a
policy that reads no total, so no other rule puts the calls in the principal's turn.
"""

import functools
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from policy.testing import ScriptedResponder
from tests.server.harness import Harness
from tests.server.interleave import Gathering, audit_head_held
from tests.support import APPROVE, answer, keyed, outcome, snapshot

pytestmark = pytest.mark.anyio

TOOL = "transfer_funds"
CAP = 2
NO_TOTALS = """
[tools.get_account_balance]
default = "allow"

[tools.transfer_funds]
default = "require_approval"
reason = "Moving money needs a human's approval."
"""


def client(
    ledger: Harness,
    policy: Path,
    principal: str = "alice",
    timeout: float = 60.0,
    *,
    mode: str = "auto",
    responder: Any = None,
) -> Client:
    settings = Settings(
        db_url=ledger.db_url,
        policy=policy,
        seed_demo=False,
        principal=principal,
        approval_timeout=timeout,
        max_pending_approvals=CAP,
        _env_file=None,  # type: ignore[call-arg]
    )
    server = build_server(open_state(settings), settings)
    callback = responder or ScriptedResponder()
    return Client(server, elicitation_callback=callback, mode=mode)  # type: ignore[arg-type]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "no_totals.toml"
    path.write_text(NO_TOTALS)
    return path


def transfer(ledger: Harness) -> dict[str, Any]:
    return {"from_account": ledger.open_account("100"), "to_account": ledger.open_account("0"), "amount": "25"}


async def ask(alice: Client, args: dict[str, Any], **kwargs: Any) -> types.CallToolResult | types.InputRequiredResult:
    result = await alice.session.call_tool(TOOL, args, allow_input_required=True, **kwargs)
    assert isinstance(result, types.CallToolResult | types.InputRequiredResult), result
    return result


def pending(ledger: Harness, principal: str = "alice") -> int:
    return len(ledger.audit(principal=principal, event="requested"))


async def test_a_principal_past_the_cap_is_refused_and_others_are_still_asked(
    ledger_harness: Harness, policy: Path
) -> None:
    calls = [transfer(ledger_harness) for _ in range(CAP + 1)]
    async with client(ledger_harness, policy) as alice:
        asked = [await ask(alice, args) for args in calls[:CAP]]
        assert all(isinstance(round_, types.InputRequiredResult) for round_ in asked)
        before = snapshot(ledger_harness.db)
        refused = outcome(await ask(alice, calls[CAP]))
        assert snapshot(ledger_harness.db) == before  # nothing written, not even an audit record
        assert refused["status"] == "failed" and refused["error"]["code"] == "too_many_pending"
        assert f"{CAP} approvals" in refused["error"]["message"] and "max_pending_approvals" in refused["message"]

        again = await ask(alice, calls[0])  # an unkeyed call is a new request: refused too
        assert outcome(again)["error"]["code"] == "too_many_pending"

        first = asked[0]
        assert isinstance(first, types.InputRequiredResult)
        done = await answer(alice, TOOL, calls[0], first.request_state, APPROVE)
        assert outcome(done)["status"] == "executed"  # a settled question frees its place
        assert isinstance(await ask(alice, calls[CAP]), types.InputRequiredResult)

    async with client(ledger_harness, policy, principal="bob") as bob:  # another principal's own places
        assert isinstance(await ask(bob, transfer(ledger_harness)), types.InputRequiredResult)
    assert pending(ledger_harness) == CAP + 1 and pending(ledger_harness, "bob") == 1


async def test_a_keyed_question_asked_again_is_shared_not_counted(ledger_harness: Harness, policy: Path) -> None:
    calls = [transfer(ledger_harness) for _ in range(CAP)]
    async with client(ledger_harness, policy) as alice:
        for n, args in enumerate(calls):
            assert isinstance(await ask(alice, args, meta=keyed(f"cap-key-{n}")), types.InputRequiredResult)
        assert isinstance(await ask(alice, calls[0], meta=keyed("cap-key-0")), types.InputRequiredResult)
    assert pending(ledger_harness) == CAP


async def test_expired_questions_free_their_place(ledger_harness: Harness, policy: Path) -> None:
    async with client(ledger_harness, policy, timeout=0.2) as alice:
        for _ in range(CAP):
            assert isinstance(await ask(alice, transfer(ledger_harness)), types.InputRequiredResult)
        await anyio.sleep(0.3)
        assert isinstance(await ask(alice, transfer(ledger_harness)), types.InputRequiredResult)


async def test_the_cap_holds_for_questions_asked_at_once(ledger_harness: Harness, policy: Path) -> None:
    calls = [transfer(ledger_harness) for _ in range(CAP + 2)]
    results: list[types.CallToolResult | types.InputRequiredResult] = []

    async def call(args: dict[str, Any]) -> None:
        async with client(ledger_harness, policy) as alice:
            results.append(await ask(alice, args))

    url = ledger_harness.db_url if ledger_harness.db_url.startswith("postgresql") else None
    async with audit_head_held(url) as head, anyio.create_task_group() as group:
        for args in calls:
            group.start_soon(call, args)
        await head.until_waiting(len(calls))  # every question counted before any commits
        head.release()

    assert sum(isinstance(r, types.InputRequiredResult) for r in results) == CAP == pending(ledger_harness)
    refused = [outcome(r) for r in results if isinstance(r, types.CallToolResult)]
    assert [r["error"]["code"] for r in refused] == ["too_many_pending"] * 2


async def test_calls_waiting_on_one_keyed_question_are_capped_too(ledger_harness: Harness, policy: Path) -> None:
    """On 2025-11-25 each call waits inline for its human, holding a task until the deadline; calls under one
    key share their question, so the cap on questions alone would let one key hold any number of them."""
    args, gathering = transfer(ledger_harness), Gathering()
    results: list[dict[str, Any]] = []

    async def call() -> None:
        results.append(outcome(await alice.session.call_tool(TOOL, args, meta=keyed("one-key"))))

    async with (
        client(ledger_harness, policy, mode="legacy", responder=gathering) as alice,
        anyio.create_task_group() as group,
    ):
        for _ in range(CAP + 2):
            group.start_soon(call)
        with anyio.fail_after(10):
            while len(results) < 2:
                await anyio.sleep(0.02)
        assert [r["error"]["code"] for r in results] == ["too_many_pending"] * 2
        assert len(gathering.asked.questions) == CAP
        gathering.release()

    assert sorted(r["status"] for r in results) == ["executed", "executed", "failed", "failed"]
    assert ledger_harness.balance(args["to_account"]) == 2500  # the shared question ran once


async def test_calls_cancelled_while_they_wait_give_their_place_back(ledger_harness: Harness, policy: Path) -> None:
    """A 2025-11-25 client that cancels each call while its question waits, many more times than the cap: each
    place is given back (the count is in this process), so the next call is still asked, not `too_many_pending`."""
    settings = Settings(
        db_url=ledger_harness.db_url,
        policy=policy,
        seed_demo=False,
        principal="alice",
        max_pending_approvals=CAP,
        _env_file=None,  # type: ignore[call-arg]
    )
    state, gathering, args = open_state(settings), Gathering(), transfer(ledger_harness)
    server = build_server(state, settings)
    async with Client(server, elicitation_callback=gathering, mode="legacy") as alice:  # type: ignore[arg-type]
        for n in range(1, 10 * CAP + 1):
            async with anyio.create_task_group() as group:
                group.start_soon(functools.partial(alice.session.call_tool, TOOL, args, meta=keyed("one-key")))
                await gathering.until_asked(n)
                assert state.gate._waiting == {"alice": 1}
                group.cancel_scope.cancel()
            with anyio.fail_after(5):
                while state.gate._waiting:
                    await anyio.sleep(0.01)
        gathering.release()
        assert outcome(await alice.session.call_tool(TOOL, args, meta=keyed("one-key")))["status"] == "executed"
    assert state.gate._waiting == {}
