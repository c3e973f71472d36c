"""Benchmarks take turns in order, then in reverse, so a drift over the run falls on every subject alike."""

from bench.rounds import alternating


def test_turns_alternate_their_order_round_by_round() -> None:
    assert list(alternating("ABC", 3)) == [
        (0, "A"), (0, "B"), (0, "C"), (1, "C"), (1, "B"), (1, "A"), (2, "A"), (2, "B"), (2, "C"),
    ]  # fmt: skip


def test_a_linear_drift_costs_every_subject_the_same_over_two_rounds() -> None:
    """Slot n runs n units slower than the first: each subject's two slots then lose the same in total."""
    slowdown: dict[str, int] = {}
    for slot, (_, subject) in enumerate(alternating(("with", "without"), 2)):
        slowdown[subject] = slowdown.get(subject, 0) + slot
    assert slowdown == {"with": 3, "without": 3}


def test_one_round_is_the_plain_order() -> None:
    assert [item for _, item in alternating([1, 2], 1)] == [1, 2]
