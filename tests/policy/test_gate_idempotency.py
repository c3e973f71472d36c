"""Idempotency keys at the gate: a replay returns the stored outcome; another request under the key is refused."""

from policy.results import Status
from policy.verdict import Verdict, VerdictKind
from tests.policy.bank import bank, transfer


def test_a_replayed_key_returns_the_stored_outcome_and_runs_nothing() -> None:
    gate, store, _ = bank()
    first = gate.open(transfer(5000, key="k1"), human_reachable=True)

    replay = gate.open(transfer(5000, key="k1"), human_reachable=True)

    assert first.final is not None and first.final.status is Status.EXECUTED
    assert replay.final == first.final
    assert store.ledger.balances["B"] == 5000
    assert [e.event for e in store.audit] == ["executed"]


def test_another_request_under_a_used_key_is_a_conflict_and_the_key_keeps_its_outcome() -> None:
    gate, store, _ = bank()
    first = gate.open(transfer(5000, key="k1"), human_reachable=True)

    other = gate.open(transfer(6000, key="k1"), human_reachable=True)
    replay = gate.open(transfer(5000, key="k1"), human_reachable=True)

    assert other.final is not None and other.final.status is Status.FAILED
    assert other.final.error is not None and other.final.error["code"] == "idempotency_conflict"
    assert replay.final == first.final
    assert store.ledger.balances["B"] == 5000


def test_calls_under_one_key_share_one_question_and_its_outcome() -> None:
    gate, store, _ = bank()
    first = gate.open(transfer(12_000, key="k2"), human_reachable=True)
    second = gate.open(transfer(12_000, key="k2"), human_reachable=True)
    assert first.approval is not None and second.approval == first.approval

    result = gate.conclude(first, Verdict(VerdictKind.APPROVE))
    after = gate.open(transfer(12_000, key="k2"), human_reachable=True)

    assert after.final == result and store.ledger.balances["B"] == 12_000
    assert len(store.approvals) == 1


def test_a_keyed_question_left_unanswered_past_its_deadline_is_the_keys_outcome() -> None:
    gate, store, clock = bank()
    first = gate.open(transfer(12_000, key="k3"), human_reachable=True)
    clock.now += 61

    again = gate.open(transfer(12_000, key="k3"), human_reachable=True)

    assert again.final is not None and again.final.status is Status.EXPIRED
    assert first.approval is not None and store.approvals[first.approval.ref].status == "expired"


def test_two_principals_never_share_a_key() -> None:
    gate, store, _ = bank()
    gate.open(transfer(5000, key="alice\x1fk"), human_reachable=True)

    bob = gate.open(transfer(5000, key="bob\x1fk", principal="bob"), human_reachable=True)

    assert bob.final is not None and bob.final.status is Status.EXECUTED
    assert store.ledger.balances["B"] == 10_000
