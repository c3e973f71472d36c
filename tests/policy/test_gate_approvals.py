"""The gate's second half, on an in-memory store: a human's verdict settles an approval exactly once."""

import pytest

from policy.gate import Gate
from policy.results import Status
from policy.verdict import EXPIRED, UNDELIVERED, Verdict, VerdictKind
from tests.policy.bank import POLICY, TTL, Balance, Sweep, Transfer, bank, policy, sweep, transfer


def test_a_clean_yes_re_decides_and_runs_the_call() -> None:
    gate, store, _ = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    assert opening.approval is not None

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE, "ok", note="fine by me"))

    assert result.status is Status.EXECUTED and result.approval_ref == opening.approval.ref
    assert store.ledger.balances["B"] == 12_000
    assert store.events(opening.approval.ref) == ["requested", "approved", "executed"]
    settled = store.approvals[opening.approval.ref]
    assert settled.status == "executed" and settled.note == "fine by me"
    assert settled.outcome == result.as_json()


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (Verdict(VerdictKind.REJECT), Status.REJECTED),
        (Verdict(VerdictKind.CANCEL), Status.CANCELLED),
        (EXPIRED, Status.EXPIRED),
        (UNDELIVERED, Status.DENIED),
    ],
    ids=["reject", "cancel", "expire", "undelivered"],
)
def test_anything_but_a_yes_runs_nothing(verdict: Verdict, status: Status) -> None:
    gate, store, _ = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    assert opening.approval is not None

    result = gate.conclude(opening, verdict)

    assert result.status is status
    assert store.ledger.balances["B"] == 0
    assert store.approvals[opening.approval.ref].status == status.value
    assert store.events(opening.approval.ref) == ["requested", status.value]


def test_a_yes_after_the_deadline_is_expired() -> None:
    gate, store, clock = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    clock.now += TTL

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.EXPIRED and store.ledger.balances["B"] == 0


def test_an_approval_is_used_once() -> None:
    gate, store, _ = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    first = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    again = gate.conclude(opening, Verdict(VerdictKind.APPROVE))
    late_no = gate.conclude(opening, Verdict(VerdictKind.REJECT))

    assert first.status is Status.EXECUTED and again == first and late_no == first
    assert store.ledger.balances["B"] == 12_000
    assert [e.event for e in store.audit].count("executed") == 1


def test_facts_changed_since_the_question_run_nothing() -> None:
    gate, store, _ = bank(Sweep(), balances={"A": 7_000, "C": 0})
    opening = gate.open(sweep("A", "C"), human_reachable=True)
    assert opening.approval is not None and "Sweep 7000" in opening.approval.question
    store.ledger.balances["A"] = 9_000  # money arrived after the approver saw the question

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.FAILED
    assert result.error is not None and result.error["code"] == "changed_since_approval"
    assert "7000 when asked, 9000 now" in result.message
    assert store.ledger.balances == {"A": 9_000, "C": 0}


def test_an_approval_under_an_older_policy_runs_nothing() -> None:
    gate, store, clock = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    newer = Gate(
        policy(POLICY.replace("needs approval.", "needs a yes.")), store, gate.actions, approval_ttl=TTL, clock=clock
    )

    result = newer.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.DENIED and "policy changed" in result.message
    assert store.ledger.balances["B"] == 0


def test_a_round_answering_a_question_finds_its_approval_by_digest() -> None:
    gate, store, _ = bank()
    call = transfer(12_000)
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None and opening.approval.asked_digest is not None

    seen = gate.glance(call, human_reachable=True, asked=opening.approval.asked_digest)
    other = gate.glance(transfer(12_001), human_reachable=True, asked=opening.approval.asked_digest)

    assert seen == opening and other is None
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))
    replay = gate.open(call, human_reachable=True, asked=opening.approval.asked_digest)
    assert replay.final == result and store.ledger.balances["B"] == 12_000


def test_a_round_answering_an_expired_question_settles_it_as_expired() -> None:
    gate, store, clock = bank()
    call = transfer(12_000)
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None
    clock.now += TTL

    late = gate.open(call, human_reachable=True, asked=opening.approval.asked_digest)

    assert late.final is not None and late.final.status is Status.EXPIRED
    assert store.approvals[opening.approval.ref].status == "expired"


def test_a_question_is_not_shared_between_calls_without_a_key() -> None:
    gate, store, _ = bank(Balance(), Transfer())

    first = gate.open(transfer(12_000), human_reachable=True)
    second = gate.open(transfer(12_000), human_reachable=True)

    assert first.approval is not None and second.approval is not None
    assert first.approval.ref != second.approval.ref and len(store.approvals) == 2
