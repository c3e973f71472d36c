"""What the gate holds under stress: concurrent callers against one limit, and effects that fail midway."""

import threading

import pytest

from policy.results import Refusal, Status
from policy.testing.memory_store import MemoryTx
from policy.verdict import Verdict, VerdictKind
from tests.policy.bank import POLICY, Broken, Transfer, bank, broken, transfer


def test_two_concurrent_callers_cannot_together_pass_a_daily_limit() -> None:
    """Each 80.00 is allowed alone; together they exceed 150.00, so exactly one may run."""
    gate, store, _ = bank(Transfer(pause=0.05))
    results: list[Status] = []
    start = threading.Barrier(2)

    def call() -> None:
        start.wait()
        opening = gate.open(transfer(8000), human_reachable=True)
        assert opening.final is not None
        results.append(opening.final.status)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(results) == [Status.DENIED, Status.EXECUTED]
    assert store.ledger.balances["B"] == 8000


def test_an_approved_call_is_judged_on_the_total_at_settlement() -> None:
    gate, store, _ = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    gate.open(transfer(5000), human_reachable=True)  # executed meanwhile: 170.00 would pass the day's 150.00

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.DENIED and "At most 150.00 a day." in result.message
    assert store.ledger.balances["B"] == 5000


@pytest.mark.parametrize(
    ("when", "reads_total"),
    [
        ("[amount_minor].exists(moved_today_minor, moved_today_minor > minor(100))", False),
        ("[amount_minor].exists(m, m + moved_today_minor > minor(150))", True),
        ("[1].exists(moved_today_minor, moved_today_minor > 0) && moved_today_minor + amount_minor > minor(150)", True),
    ],
    ids=["macro-variable", "read-in-a-macro", "read-beside-one"],
)
def test_only_a_rule_reading_the_days_total_takes_the_principals_turn(
    when: str, reads_total: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A macro's own variable named `moved_today_minor` is not the day's total: no turn, no sum."""
    calls: list[str] = []
    take_turn, moved_today_minor = MemoryTx.take_turn, MemoryTx.moved_today_minor

    def turn(tx: MemoryTx, principal: str) -> None:
        calls.append("turn")
        take_turn(tx, principal)

    def total(tx: MemoryTx, principal: str, since: float, currency: str) -> int:
        calls.append("total")
        return moved_today_minor(tx, principal, since, currency)

    monkeypatch.setattr(MemoryTx, "take_turn", turn)
    monkeypatch.setattr(MemoryTx, "moved_today_minor", total)
    daily = "moved_today_minor + amount_minor > minor(150)"
    gate, _, _ = bank(text=POLICY.replace(daily, when))

    opening = gate.open(transfer(5000), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.EXECUTED
    assert ("turn" in calls, "total" in calls) == (reads_total, reads_total)


def test_an_effect_refused_midway_leaves_no_trace_of_its_writes() -> None:
    gate, store, _ = bank(Broken(lambda: Refusal("frozen", "The account is frozen.")), balances={"A": 700})

    opening = gate.open(broken(), human_reachable=True)

    assert opening.final is not None and opening.final.status is Status.FAILED
    assert store.ledger.balances == {"A": 700}  # the write before the refusal was rolled back
    assert [e.event for e in store.audit] == ["failed"]


def test_an_effect_that_crashes_rolls_back_the_whole_call() -> None:
    gate, store, _ = bank(Broken(lambda: RuntimeError("bug")), balances={"A": 700})

    with pytest.raises(RuntimeError, match="bug"):
        gate.open(broken(key="k"), human_reachable=True)

    assert store.ledger.balances == {"A": 700}
    assert store.audit == [] and store.keys == {}
    assert store.writes == [(True, False)]
