"""Two stateless replicas, one PostgreSQL ledger, one request-state key ring.

An approval round may start on one replica and be answered on the other; it executes
exactly once, and so does every acknowledged transfer of many clients spread over both.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from tests.drills.support import KEY_RING, Books, ServerProcess, connect, record, running, scaled
from tests.server.interleave import audit_head_held
from tests.support import APPROVE, LIMIT_POLICY, TEST_POLICY, answer, first_round, keyed, outcome

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

CLIENTS = scaled(8, minimum=2)
PER_CLIENT = scaled(10, minimum=3)
REJECT = types.ElicitResult(action="accept", content={"approve": False})


def replicas(postgres_url: str, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    ring = f"{KEY_RING},retired-{'r' * 32}"
    return (
        ServerProcess(postgres_url, tmp_path, "--stateless", keys=ring, name="replica-a"),
        ServerProcess(postgres_url, tmp_path, "--stateless", keys=ring, name="replica-b"),
    )


async def test_a_round_started_on_one_replica_finishes_on_the_other_once(postgres_url: str, tmp_path: Path) -> None:
    books = Books(postgres_url)
    source, target = books.open_accounts(2, "100.00")
    args = {"from_account": source, "to_account": target, "amount": "25.00", "memo": "cross-replica"}
    a, b = replicas(postgres_url, tmp_path)
    with running(a, b):
        async with connect(a.url) as on_a, connect(b.url) as on_b:
            round1 = await first_round(on_a, "transfer_funds", args)
            executed = outcome(await answer(on_b, "transfer_funds", args, round1.request_state))
            replayed_on_a = outcome(await answer(on_a, "transfer_funds", args, round1.request_state))
            replayed_on_b = outcome(await answer(on_b, "transfer_funds", args, round1.request_state))

            # the same answer sent to both replicas at once, several times: it executes once
            raced_args = {**args, "memo": "raced"}
            raced = await first_round(on_b, "transfer_funds", raced_args)
            results: list[types.CallToolResult | types.InputRequiredResult] = []

            async def send(client: Client) -> None:
                results.append(await answer(client, "transfer_funds", raced_args, raced.request_state))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    for n in range(6):
                        group.start_soon(send, on_a if n % 2 else on_b)

    assert executed["status"] == "executed"
    assert replayed_on_a == executed and replayed_on_b == executed
    finished = [outcome(r) for r in results]  # every racer gets the winner's outcome, none a new question
    assert finished[0]["status"] == "executed" and all(r == finished[0] for r in finished)
    assert books.balance(source) == 5000 and books.balance(target) == 15000
    assert books.memo_counts("cross-replica") == {"cross-replica": 1}
    assert books.memo_counts("raced") == {"raced": 1}
    assert books.events(executed["approval_ref"]) == ["requested", "approved", "executed"]
    books.assert_sound()
    books.close()


async def test_concurrent_clients_over_both_replicas(postgres_url: str, tmp_path: Path) -> None:
    """Each transfer's first round goes to one replica and its answer to the other."""
    books = Books(postgres_url)
    accounts = books.open_accounts(6, "150.00")
    total = books.customer_total()
    acknowledged: dict[str, dict[str, Any]] = {}
    a, b = replicas(postgres_url, tmp_path)

    async def client_work(n: int, on_a: Client, on_b: Client) -> None:
        rng = random.Random(n)
        for i in range(PER_CLIENT):
            source, target = rng.sample(accounts, 2)
            memo = f"replica-{n}-{i}"
            args = {"from_account": source, "to_account": target, "amount": f"{rng.randint(101, 6000) / 100:.2f}",
                    "memo": memo}  # fmt: skip
            asker, answerer = (on_a, on_b) if (n + i) % 2 == 0 else (on_b, on_a)
            meta = keyed(memo)
            first = await asker.session.call_tool("transfer_funds", args, allow_input_required=True, meta=meta)
            if isinstance(first, types.CallToolResult):  # refused before anyone was asked (insufficient funds)
                acknowledged[memo] = outcome(first)
                continue
            assert isinstance(first, types.InputRequiredResult), first
            reply = REJECT if i % 5 == 4 else APPROVE
            result = await answer(answerer, "transfer_funds", args, first.request_state, reply, meta=meta)
            acknowledged[memo] = outcome(result)
            if i % 3 == 0:  # a retry by key on the replica that asked: the stored outcome, nothing new
                again = await asker.call_tool("transfer_funds", args, meta=meta)
                assert outcome(again) == acknowledged[memo]

    async def client(n: int) -> None:
        async with connect(a.url) as on_a, connect(b.url) as on_b:
            await client_work(n, on_a, on_b)

    with running(a, b):
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for n in range(CLIENTS):
                    group.start_soon(client, n)
        assert a.get("/readyz").status_code == 200 and b.get("/readyz").status_code == 200

    statuses = {memo: result["status"] for memo, result in acknowledged.items()}
    assert len(statuses) == CLIENTS * PER_CLIENT
    assert set(statuses.values()) <= {"executed", "rejected", "failed"}
    executed = {memo for memo, status in statuses.items() if status == "executed"}
    assert executed and "rejected" in statuses.values()
    counts = books.memo_counts("replica-")
    assert set(counts) == executed and set(counts.values()) == {1}
    assert books.customer_total() == total
    audit_records = books.assert_sound()
    books.close()
    record(
        "replicas",
        replicas=2,
        clients=CLIENTS,
        transfers=len(statuses),
        executed=len(executed),
        rejected=sum(s == "rejected" for s in statuses.values()),
        refused=sum(s == "failed" for s in statuses.values()),
        duplicates=sum(n - 1 for n in counts.values()),
        lost=len(executed - set(counts)),
        audit_records=audit_records,
    )


async def test_daily_limit_holds_across_replicas(postgres_url: str, tmp_path: Path) -> None:
    """A principal's transfers spread over both replicas at once never together pass the
    1,000.00 a day the policy allows: four allowed ones of 400.00 (one principal), and two
    approved ones of 600.00, each answered on the other replica (another principal). Each
    batch is made to decide and act before any of it commits (`audit_head_held`)."""
    books = Books(postgres_url)
    limited = ("--policy", str(LIMIT_POLICY))
    a = ServerProcess(postgres_url, tmp_path, "--stateless", *limited, name="limit-a")
    b = ServerProcess(postgres_url, tmp_path, "--stateless", *limited, name="limit-b")
    allowed = [(*books.open_accounts(1, "400.00"), *books.open_accounts(1, "0")) for _ in range(4)]
    asked = [(*books.open_accounts(1, "600.00"), *books.open_accounts(1, "0")) for _ in range(2)]
    statuses: dict[str, list[str]] = {"allowed": [], "approved": []}

    async def at_once(batch: list[Any], call: Any) -> None:
        with anyio.fail_after(60):
            async with audit_head_held(postgres_url) as head, anyio.create_task_group() as group:
                for n, item in enumerate(batch):
                    group.start_soon(call, n, *item)
                await head.until_waiting(len(batch))
                head.release()

    with running(a, b):
        async with connect(a.url) as on_a, connect(b.url) as on_b:

            async def send(n: int, source: str, target: str) -> None:
                args = {"from_account": source, "to_account": target, "amount": "400"}
                result = await (on_a, on_b)[n % 2].call_tool("transfer_funds", args)
                statuses["allowed"].append(outcome(result)["status"])

            await at_once(allowed, send)

        async with connect(a.url, principal="other") as on_a, connect(b.url, principal="other") as on_b:
            rounds = []
            for n, (source, target) in enumerate(asked):
                args = {"from_account": source, "to_account": target, "amount": "600"}
                rounds.append((args, await first_round((on_a, on_b)[n % 2], "transfer_funds", args)))

            async def approve(n: int, args: dict[str, Any], round1: types.InputRequiredResult) -> None:
                result = await answer((on_b, on_a)[n % 2], "transfer_funds", args, round1.request_state)
                statuses["approved"].append(outcome(result)["status"])

            await at_once(rounds, approve)

    assert sorted(statuses["allowed"]) == ["denied", "denied", "executed", "executed"]
    assert sorted(statuses["approved"]) == ["denied", "executed"]
    assert sum(books.balance(target) for _, target in allowed) == 800_00
    assert sum(books.balance(target) for _, target in asked) == 600_00
    books.assert_sound()
    books.close()


async def test_an_answer_reaching_a_replica_with_another_policy_is_asked_again(
    postgres_url: str, tmp_path: Path
) -> None:
    """A policy rolled out to one replica first: an answer to a question asked under the old rules finds no
    question of its own there (the approval is bound to the policy's version), so nothing runs and the call is
    asked again under the new rules; that answer runs, once."""
    changed = tmp_path / "changed_policy.toml"
    changed.write_text(TEST_POLICY.read_text().replace("Moving money needs a human's approval.", "Ask a human."))
    books = Books(postgres_url)
    source, target = books.open_accounts(2, "100.00")
    args = {"from_account": source, "to_account": target, "amount": "25.00", "memo": "policy rollout"}
    old, new = (
        ServerProcess(postgres_url, tmp_path, "--stateless", name="old-policy"),
        ServerProcess(postgres_url, tmp_path, "--stateless", "--policy", str(changed), name="new-policy"),
    )
    with running(old, new):
        async with connect(old.url) as on_old, connect(new.url) as on_new:
            asked = await first_round(on_old, "transfer_funds", args)
            again = await answer(on_new, "transfer_funds", args, asked.request_state)
            assert isinstance(again, types.InputRequiredResult), again
            assert books.balance(target) == 10000, "nothing ran"
            executed = outcome(await answer(on_new, "transfer_funds", args, again.request_state))

    assert executed["status"] == "executed" and books.balance(target) == 12500
    assert books.memo_counts("policy rollout") == {"policy rollout": 1}
    books.assert_sound()
    books.close()
