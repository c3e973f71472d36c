"""How a benchmark's pairs are judged: only a subject measured against a plain floor is held to the goal."""

import json

import pytest

from bench.timing import BARE_NOTE, FLOOR, FLOOR_NOTE, OVER_REQUIRED_NOTE, REQUIRED, REQUIRED_NOTE, Figure, report


def figure(subject: str, rate: float, path: str = "in-memory") -> Figure:
    return Figure(path, subject, calls=int(rate), seconds=1.0, p50_ms=1.0, p99_ms=2.0)


def test_the_required_work_is_a_bound_not_a_contender_and_ours_over_it_is_unjudged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours, bare = figure("gated transfer_funds", 300), figure("bare approval no-op", 1000)
    floor, required = figure(f"{FLOOR}commits", 600), figure(f"{REQUIRED}policy, approval, audit", 540)

    report("t", [(ours, floor), (ours, bare), (floor, bare), (required, floor), (ours, required)], 0.85, as_json=True)
    rows = json.loads(capsys.readouterr().out)["rows"]

    assert [(row["ratio"], row["goal"], row.get("note")) for row in rows] == [
        (0.5, 0.85, None),
        (0.3, None, BARE_NOTE),
        (0.6, None, FLOOR_NOTE),
        (0.9, None, REQUIRED_NOTE),
        (0.556, None, OVER_REQUIRED_NOTE),
    ]
