"""The gate's first half, on an in-memory store: allow, deny, refuse, ask, and who cannot be asked."""

from policy.results import Status
from policy.settlement import NO_HUMAN
from tests.policy.bank import balance, bank, sweep, transfer


def test_an_allowed_call_runs_once_and_is_audited() -> None:
    gate, store, _ = bank()

    opening = gate.open(transfer(5000), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.EXECUTED
    assert opening.approval is None
    assert store.ledger.balances == {"A": 995_000, "B": 5000, "C": 0}
    assert [(e.event, e.amount_minor) for e in store.audit] == [("executed", 5000)]
    assert store.writes == [(True, True)]


def test_a_denied_call_changes_nothing_but_the_audit() -> None:
    gate, store, _ = bank()

    opening = gate.open(transfer(200_000), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.DENIED
    assert "Above 1,000.00 is refused." in opening.final.message
    assert store.ledger.balances["B"] == 0
    assert [(e.event, e.matched_rules) for e in store.audit] == [("denied", ("large", "ceiling", "daily"))]


def test_a_call_the_ledger_refuses_fails_with_its_code() -> None:
    gate, store, _ = bank(balances={"A": 10, "B": 0})

    opening = gate.open(transfer(5000), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.FAILED
    assert opening.final.error is not None and opening.final.error["code"] == "insufficient_funds"
    assert store.ledger.balances == {"A": 10, "B": 0}
    assert [e.event for e in store.audit] == ["failed"]


def test_a_call_needing_approval_opens_one_question_and_runs_nothing() -> None:
    gate, store, clock = bank()

    opening = gate.open(transfer(12_000), human_reachable=True)

    assert opening.final is None and opening.approval is not None
    approval = opening.approval
    assert approval.status == "pending" and approval.expires_at == clock.now + 60.0
    assert "Move 12000 from A to B" in approval.question and approval.ref in approval.question
    assert store.ledger.balances["B"] == 0
    assert store.events(approval.ref) == ["requested"]


def test_a_client_that_cannot_reach_a_human_is_denied() -> None:
    gate, store, _ = bank()

    opening = gate.open(transfer(12_000), human_reachable=False)

    assert opening.final is not None and opening.final.status is Status.DENIED
    assert NO_HUMAN in opening.final.message
    assert store.approvals == {} and store.ledger.balances["B"] == 0


def test_an_allowed_read_runs_in_a_read_transaction_and_is_not_audited() -> None:
    gate, store, _ = bank()

    opening = gate.open(balance("A"), human_reachable=True)

    assert opening.final is not None and opening.final.details == {"balance_minor": 1_000_000}
    assert store.audit == [] and store.writes == []


def test_a_question_asked_by_default_is_opened_without_durability() -> None:
    """Only the transaction that merely opens a question may skip the disk."""
    gate, store, _ = bank()

    opening = gate.open(sweep("A", "C"), human_reachable=True)

    assert opening.approval is not None
    assert store.writes == [(False, True)]


def test_an_outcome_reached_where_a_question_was_expected_is_redone_durably() -> None:
    gate, store, _ = bank()

    opening = gate.open(sweep("NOPE", "C"), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.FAILED
    assert store.writes == [(False, False), (True, True)]  # the relaxed attempt was discarded
    assert [e.event for e in store.audit] == ["failed"]  # and left no record
