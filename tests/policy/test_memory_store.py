"""The in-memory `GateStore` keeps the promises the gate relies on, so gate tests on it mean something."""

import threading
import time
from dataclasses import replace

import anyio
import pytest

from policy.results import Refusal
from policy.store import Approval, AuditEntry
from policy.testing import MemoryGateStore, MemoryLedger, MemoryTx


def approval(ref: str = "APR-1", binding: str = "b") -> Approval:
    return Approval(ref, binding, "transfer", {}, "alice", "v1", "Q?", 0.0, 60.0, asked_digest=f"d-{ref}")


def test_a_transaction_that_raises_leaves_nothing_behind() -> None:
    store = MemoryGateStore(MemoryLedger({"A": 5}))

    def work(tx: MemoryTx) -> None:
        tx.ledger.set_balance("A", 0)
        tx.create_approval(approval(), shared=True)
        tx.recall("k", "d")
        tx.remember("k", "d", {"status": "executed"})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.transaction(work)

    assert store.ledger.balances == {"A": 5} and store.approvals == {} and store.keys == {} and store.shared == set()
    assert store.writes == [(True, False)]


def test_a_discarded_transaction_is_rolled_back_and_returns_its_value() -> None:
    store = MemoryGateStore(MemoryLedger({"A": 5}))

    def work(tx: MemoryTx) -> str:
        tx.ledger.set_balance("A", 0)
        tx.discard()
        return "redo"

    assert store.transaction(work, durable=False) == "redo"
    assert store.ledger.balances == {"A": 5} and store.writes == [(False, False)]


def test_an_approval_settles_once_and_only_into_a_final_state() -> None:
    store = MemoryGateStore()
    store.transaction(lambda tx: tx.create_approval(approval(), shared=False))
    settled = replace(approval(), status="executed", outcome={"status": "executed"})

    with pytest.raises(ValueError, match="cannot settle as 'approved'"):
        store.transaction(lambda tx: tx.settle_approval(replace(approval(), status="approved")))
    store.transaction(lambda tx: tx.settle_approval(settled))
    with pytest.raises(RuntimeError, match="already settled"):
        store.transaction(lambda tx: tx.settle_approval(settled))
    assert store.approvals["APR-1"].status == "executed"


def test_only_shared_approvals_coalesce_by_binding() -> None:
    store = MemoryGateStore()

    own = store.transaction(lambda tx: tx.create_approval(approval("APR-1"), shared=False))
    first = store.transaction(lambda tx: tx.create_approval(approval("APR-2"), shared=True))
    again = store.transaction(lambda tx: tx.create_approval(approval("APR-3"), shared=True))

    assert own.ref == "APR-1" and first.ref == "APR-2" and again.ref == "APR-2"


def test_a_key_bound_to_another_request_is_a_conflict() -> None:
    store = MemoryGateStore()

    def use(tx: MemoryTx) -> None:
        assert tx.recall("k", "d1") is None
        tx.remember("k", "d1", {"status": "executed"})

    store.transaction(use)

    assert store.transaction(lambda tx: tx.recall("k", "d1")) == {"status": "executed"}
    with pytest.raises(Refusal) as conflict:
        store.transaction(lambda tx: tx.recall("k", "d2"))
    assert conflict.value.code == "idempotency_conflict"


def test_a_turn_is_held_until_the_transaction_ends() -> None:
    store = MemoryGateStore()
    order: list[str] = []
    holding = threading.Event()

    def first(tx: MemoryTx) -> None:
        tx.take_turn("alice")
        holding.set()
        time.sleep(0.1)
        order.append("first ends")

    def second(tx: MemoryTx) -> None:
        tx.take_turn("alice")
        order.append("second has the turn")

    thread = threading.Thread(target=store.transaction, args=(first,))
    thread.start()
    holding.wait(5)
    store.transaction(second)
    thread.join(5)

    assert order == ["first ends", "second has the turn"]


def test_a_read_transaction_writes_nothing() -> None:
    store = MemoryGateStore()

    with pytest.raises(RuntimeError, match="read transaction"):
        store.transaction(lambda tx: tx.create_approval(approval(), shared=False), write=False)


def test_audit_entries_count_toward_totals_once_committed() -> None:
    store = MemoryGateStore()
    entry = AuditEntry(10.0, "executed", "alice", "transfer", {}, "v1", amount_minor=700, currency="EUR")

    def work(tx: MemoryTx) -> int:
        tx.append_audit(entry)
        return tx.moved_today_minor("alice", 0.0, "EUR")

    assert store.transaction(work) == 0
    assert store.transaction(lambda tx: tx.moved_today_minor("alice", 0.0, "EUR"), write=False) == 700
    assert store.transaction(lambda tx: tx.moved_today_minor("alice", 11.0, "EUR"), write=False) == 0


def test_totals_count_their_own_currency_and_records_without_one_in_every_currency() -> None:
    store = MemoryGateStore()

    def work(tx: MemoryTx) -> None:
        tx.append_audit(AuditEntry(10.0, "executed", "alice", "transfer", {}, "v1", amount_minor=700, currency="EUR"))
        tx.append_audit(
            AuditEntry(10.0, "executed", "alice", "transfer", {}, "v1", amount_minor=90_000, currency="JPY")
        )
        tx.append_audit(AuditEntry(10.0, "executed", "alice", "transfer", {}, "v1", amount_minor=5))  # before 0011

    store.transaction(work)

    def totals(tx: MemoryTx) -> dict[str, int]:
        return {currency: tx.moved_today_minor("alice", 0.0, currency) for currency in ("EUR", "JPY", "USD")}

    assert store.transaction(totals, write=False) == {"EUR": 705, "JPY": 90_005, "USD": 5}


def test_run_does_blocking_work_off_the_event_loop() -> None:
    store = MemoryGateStore()
    loop_thread = threading.get_ident()

    async def main() -> int:
        return await store.run(threading.get_ident)

    assert anyio.run(main) != loop_thread
