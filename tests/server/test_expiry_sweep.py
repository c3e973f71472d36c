"""Every approval question ends: one whose caller never comes back is settled `expired` by the server.

A call without a key, a key never retried, a 2026-07-28 client that never sends its second round, a desk link
never continued: before the sweep such an approval stayed `pending` past its deadline for good, its `requested`
record without an end. The server now ends each (`mcp_server.expiry`), with its signed record in the same
transaction, never a row that is no longer pending, and never one another transaction is settling.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from mcp import Client
from sqlalchemy import text

from mcp_server.app import AppState, build_server, open_state
from mcp_server.storage.locks import LEDGER, Space
from policy.action import Call
from policy.gate import Opening
from policy.testing import ScriptedResponder
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import APPROVAL_TIMEOUT, first_round, keyed, outcome, postgres_base_url, run_together

pytestmark = pytest.mark.anyio

TOOL = "transfer_funds"
LATER = 3600.0
"""How far past now a server's clock is moved: past any deadline the tests ask with, and its grace."""


def transfer(ledger: Harness) -> dict[str, Any]:
    return {"from_account": ledger.open_account("100"), "to_account": ledger.open_account("0"), "amount": "25"}


def later_state(ledger: Harness) -> AppState:
    """A server's state whose clock reads an hour ahead: every question asked now is long past its deadline."""
    state = open_state(ledger.settings())
    state.gate.clock = lambda: time.time() + LATER
    return state


def client_of(state: AppState, ledger: Harness) -> Client:
    """A 2026-07-28 client with forms, of a server on `state`."""
    settings = ledger.settings()
    return Client(build_server(state, settings), elicitation_callback=ScriptedResponder(), mode="auto")  # type: ignore[arg-type]


def status(ledger: Harness, ref: str) -> str:
    query = text("SELECT status FROM approvals WHERE ref = :r")
    return str(ledger.db.read(lambda conn: conn.execute(query, {"r": ref}).scalar_one()))


def asked(ledger: Harness, key: str | None = None) -> tuple[Call, str]:
    """A transfer question asked through the gate and left unanswered (its call, its reference)."""
    gate = open_state(ledger.settings()).gate
    args = transfer(ledger)
    call = Call(TOOL, gate.actions[TOOL].canonical(args), "local", key)
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None, opening.final
    return call, opening.approval.ref


async def test_a_question_nobody_answers_ends_expired_with_one_record(ledger_harness: Harness) -> None:
    """A 2026-07-28 client asked, then never sent its second round: a server running later ends the question
    (here at its start), `expired`, with one signed record after `requested`; its outcome is the gate's."""
    settings = ledger_harness.settings()
    async with client_of(open_state(settings), ledger_harness) as client:
        await first_round(client, TOOL, transfer(ledger_harness))
    [requested] = ledger_harness.audit(event="requested")
    ref = requested["approval_ref"]
    assert status(ledger_harness, ref) == "pending"

    async with client_of(later_state(ledger_harness), ledger_harness):
        pass  # the server sweeps when it starts; leaving it joins its background thread

    assert status(ledger_harness, ref) == "expired"
    assert ledger_harness.events(ref) == ["requested", "expired"]
    [ended] = ledger_harness.audit(approval_ref=ref, event="expired")
    assert ended["result"]["status"] == "expired" and ended["result"]["approval_ref"] == ref


async def test_a_keyed_caller_back_after_the_sweep_gets_the_expired_outcome(ledger_harness: Harness) -> None:
    """The sweep stores the key's outcome as the gate would: the caller retrying its key later is told
    `expired`, the same outcome, and is not asked anew."""
    settings = ledger_harness.settings()
    args = transfer(ledger_harness)
    async with client_of(open_state(settings), ledger_harness) as client:
        await first_round(client, TOOL, args, meta=keyed("sweep-key-1"))
    [requested] = ledger_harness.audit(event="requested")
    ref = requested["approval_ref"]

    state = later_state(ledger_harness)
    assert state.expiry.sweep() == 1
    async with client_of(state, ledger_harness) as client:
        again = await client.session.call_tool(TOOL, args, meta=keyed("sweep-key-1"), allow_input_required=True)
    ended = outcome(again)
    assert ended["status"] == "expired" and ended["approval_ref"] == ref
    assert ledger_harness.events(ref) == ["requested", "expired"]
    assert len(ledger_harness.audit(event="requested")) == 1  # nothing asked anew


def test_the_sweep_leaves_settled_and_unexpired_approvals_alone(ledger_harness: Harness) -> None:
    """Only pending rows past their deadline and its grace move: one within the grace, one answered, stay."""
    state = open_state(ledger_harness.settings())
    _, open_ref = asked(ledger_harness)
    call, answered_ref = asked(ledger_harness)
    approval = state.gate.store.transaction(lambda tx: tx.lock_approval(answered_ref))
    assert approval is not None
    done = state.gate.conclude(Opening(call, approval=approval), Verdict(VerdictKind.REJECT, "No."))
    assert done.status.value == "rejected"
    state.gate.clock = lambda: time.time() + APPROVAL_TIMEOUT + 1  # past the deadline, within the grace
    assert state.expiry.sweep() == 0
    assert status(ledger_harness, open_ref) == "pending"
    state.gate.clock = lambda: time.time() + LATER
    assert state.expiry.sweep() == 1
    assert (status(ledger_harness, open_ref), status(ledger_harness, answered_ref)) == ("expired", "rejected")
    assert ledger_harness.events(answered_ref) == ["requested", "rejected"]


def test_two_sweepers_end_each_approval_once(ledger_harness: Harness) -> None:
    """Two server processes sweeping the same ledger at once: each approval ends once, one record each."""
    refs = [asked(ledger_harness)[1] for _ in range(12)]
    sweepers = [later_state(ledger_harness) for _ in range(2)]
    for state in sweepers:
        state.expiry.batch = 3  # several batches each, so their transactions interleave
    ended = run_together(*(state.expiry.sweep for state in sweepers))
    assert sum(ended) == len(refs)
    for ref in refs:
        assert status(ledger_harness, ref) == "expired"
        assert ledger_harness.events(ref) == ["requested", "expired"]


def test_a_late_answer_and_the_sweep_settle_an_approval_once(ledger_harness: Harness) -> None:
    """A yes arriving long after the deadline races the sweep: whichever settles first, the approval ends
    `expired` once, and the other finds that outcome."""
    call, ref = asked(ledger_harness)
    state = later_state(ledger_harness)
    approval = state.gate.store.transaction(lambda tx: tx.lock_approval(ref))
    assert approval is not None
    results = run_together(
        lambda: state.gate.conclude(Opening(call, approval=approval), Verdict(VerdictKind.APPROVE, "Yes.")),
        state.expiry.sweep,
    )
    assert results[0].status.value == "expired" and results[1] in (0, 1)
    assert status(ledger_harness, ref) == "expired"
    assert ledger_harness.events(ref) == ["requested", "expired"]


def test_the_sweep_skips_an_approval_a_settlement_holds_on_postgresql(ledger_harness: Harness) -> None:
    """PostgreSQL: a settlement holding the approval's row, or its key's turn (which it takes first), is
    neither waited for nor overridden: the sweep leaves that approval and ends it at a later sweep."""
    url = postgres_base_url()
    if not ledger_harness.db_url.startswith("postgresql") or url is None:
        pytest.skip("SQLite has one writer at a time: a settlement in progress holds the whole file")
    _, row_held = asked(ledger_harness)
    _, key_held = asked(ledger_harness, key="held-key")
    state = later_state(ledger_harness)
    with psycopg.connect(ledger_harness.db_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
        holder.execute("SELECT ref FROM approvals WHERE ref = %s FOR UPDATE", (row_held,))
        holder.execute(
            f"SELECT pg_advisory_xact_lock(%s, hashtext({LEDGER} || '/' || %s))",
            (int(Space.IDEMPOTENCY_KEY), "held-key"),
        )
        assert run_together(state.expiry.sweep, within=10.0) == [0]
        assert (status(ledger_harness, row_held), status(ledger_harness, key_held)) == ("pending", "pending")
        holder.rollback()
    assert state.expiry.sweep() == 2
    assert ledger_harness.events(row_held) == ["requested", "expired"]
    assert ledger_harness.events(key_held) == ["requested", "expired"]


def test_a_keyed_retry_the_sweep_settles_under_is_given_the_keys_outcome_not_a_new_question(
    ledger_harness: Harness,
) -> None:
    """PostgreSQL: a call retried under its key while the sweep ends the key's question. The question's transaction
    read the key (no outcome yet) and, in the same round trip, the key's pending question: the sweep's COMMIT landing
    between the two, it found neither, and asked a new question of a key already settled, which no answer could run.
    Here the retry's read of the accounts, sent after the key's, waits on a table lock while the sweep runs."""
    url = postgres_base_url()
    if not ledger_harness.db_url.startswith("postgresql") or url is None:
        pytest.skip("SQLite has one writer at a time: the sweep cannot commit inside another transaction")
    call, ref = asked(ledger_harness, key="retried-key")
    retry, sweeper = later_state(ledger_harness), later_state(ledger_harness)
    pg_url = ledger_harness.db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(pg_url) as holder, psycopg.connect(pg_url, autocommit=True) as watcher:
        holder.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as pool:
            opened = pool.submit(retry.gate.open, call, human_reachable=True)
            deadline = time.monotonic() + 10.0
            blocked = "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
            while watcher.execute(blocked, (holder.info.backend_pid,)).fetchone() == (0,):
                assert time.monotonic() < deadline, "the retry never reached the accounts"
                time.sleep(0.01)
            sweeper.expiry.sweep()
            holder.rollback()
            opening = opened.result(timeout=10.0)
    assert opening.final is not None and opening.final.status.value == "expired", opening
    assert opening.final.approval_ref == ref and status(ledger_harness, ref) == "expired"
    asked_for_key = text("SELECT ref FROM approvals WHERE idempotency_key = 'retried-key'")
    assert ledger_harness.db.read(lambda conn: conn.execute(asked_for_key).scalars().all()) == [ref]


POISONS = {
    "an unknown tool": "tool = 'no_such_tool'",
    "arguments that are not JSON": "arguments_json = '{not json'",
    "bound facts that are not JSON": "bound_json = '{not json'",
    "an unknown channel": "channel = 'carrier_pigeon'",
}
"""Edits of an approval row in the database that leave the gate unable to read or settle it."""


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_a_row_edited_unreadable_does_not_stop_the_others_ending(
    ledger_harness: Harness, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An overdue approval row edited so the gate cannot read or settle it is left pending and named in the log,
    once; the approvals behind it still end (here one per batch, so the row heads every batch it is in)."""
    _, edited = asked(ledger_harness)
    _, behind = asked(ledger_harness)
    ledger_harness.db.run(
        lambda conn: conn.execute(text(f"UPDATE approvals SET {poison}, expires_at = 1 WHERE ref = :r"), {"r": edited})
    )
    state = later_state(ledger_harness)
    state.expiry.batch = 1
    assert state.expiry.sweep() == 1
    assert state.expiry.sweep() == 0
    assert (status(ledger_harness, edited), status(ledger_harness, behind)) == ("pending", "expired")
    assert ledger_harness.events(behind) == ["requested", "expired"]
    [said] = [record.getMessage() for record in caplog.records if edited in record.getMessage()]
    assert "left pending" in said
