"""bench.results turns each benchmark's JSON into table rows (here from a recorded shape: no benchmark runs)."""

from __future__ import annotations

from bench.results import BenchRun, rows_for

AUDIT_BENCH = {
    "writers": 16,
    "figures": [
        {"design": "head row", "writers": 16, "transactions": 4985, "seconds": 10.05, "per_second": 495.7},
        {"design": "sequencer", "writers": 16, "transactions": 9361, "seconds": 10.02, "per_second": 933.8},
    ],
    "ratio": 1.88,
    "unchained_when_writers_stopped": 813,
    "records_chained": 43038,
    "pending_after": 0,
    "findings": [],
    "sign_us": 61.2,
    "verify_us": 140.3,
}


def test_the_audit_benchmark_is_a_row_of_its_own_not_raw_json() -> None:
    (row,) = rows_for(BenchRun("audit_bench", "python -m bench.audit_bench --json", data=AUDIT_BENCH))
    assert (row.rate, row.baseline_rate, row.ratio) == ("934 tx/s", "496 tx/s", "1.88")
    assert "813 records unchained" in row.notes and "0 findings" in row.notes and "sign 61.2 µs" in row.notes
    assert "JSON" not in row.notes


def test_an_unknown_shape_is_shown_raw_rather_than_dropped() -> None:
    (row,) = rows_for(BenchRun("new_bench", "python -m bench.new_bench --json", data={"something": 1}))
    assert row.notes.startswith("unrecognised JSON") and '"something": 1' in row.notes
