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


def _phase(subject: str, rate: float, approved_p50: float) -> dict[str, object]:
    return {
        "subject": subject, "clients": 32, "calls": int(rate * 8), "calls_per_s": rate, "errors": {},
        "per_kind": {"transfer-approved": {"calls": 10, "p50_ms": approved_p50, "p99_ms": 2 * approved_p50}},
        "per_revision": {"2025-11-25 clients": {"calls": 3, "p50_ms": 3 * approved_p50, "p99_ms": 4 * approved_p50}},
        "rss_start_mib": 100.0, "rss_end_mib": 101.0, "server_cpu_s": 7.5, "server_cpu_ms_per_call": 5.1,
        "loop_cpu_ms_per_call": 3.2, "switches_per_call": 96.5,
    }  # fmt: skip


LOAD = {
    "benchmark": "load",
    "backend": "postgresql",
    "seconds_per_phase": 8.0,
    "rows": [
        {
            "clients": 32,
            "ours": _phase("bankgate", 160.0, 290.0),
            "baseline": _phase("bare SDK", 470.0, 84.0),
            "floor": _phase("floor", 385.0, 97.0),
            "ratio": 0.34,
            "ratio_to_floor": 0.416,
            "floor_ratio": 0.819,
            "required": _phase("required", 350.0, 110.0),
            "ratio_to_required": 0.457,
            "required_ratio": 0.745,
        }
    ],
    "books": {"acknowledged_transfers": 700, "lost": 0, "duplicated": 0, "audit_verify_says": "intact"},
}


def test_a_load_phase_is_judged_against_the_bare_server_and_read_against_the_floor_and_the_required_work() -> None:
    judged, against_floor, floor, required, against_required, books = rows_for(
        BenchRun("load", "python -m bench.load --json", data=LOAD)
    )

    assert (judged.subject, judged.baseline, judged.ratio) == ("bankgate, mixed calls", "bare SDK server, same mix",
                                                               "0.34 ✗")  # fmt: skip
    assert "goal ≥ 0.6" in judged.notes and "approved p50 290 ms, goal ≤ 150 ✗" in judged.notes
    assert "5.1 ms a call (event loop 3.2), 96.5 thread switches a call" in judged.notes
    assert judged.latency == "transfer-approved 290/580; 2025-11-25 clients 870/1160"
    assert (against_floor.baseline, against_floor.baseline_rate, against_floor.ratio) == (
        "floor: durable work of the mix only", "385 calls/s", "0.42")  # fmt: skip
    assert "goal" not in against_floor.notes.replace("no goal", "")
    assert (floor.subject, floor.rate, floor.baseline_rate, floor.ratio) == (
        "floor: durable work of the mix only", "385 calls/s", "470 calls/s", "0.82")  # fmt: skip
    assert floor.notes.startswith("ceiling:")
    assert (required.subject, required.baseline, required.ratio) == (
        "required work: policy, bound approvals, signed audit", "bare SDK server, same mix", "0.74")  # fmt: skip
    assert required.notes.startswith("bound:") and "5.1 ms a call" in required.notes
    assert (against_required.subject, against_required.baseline_rate, against_required.ratio) == (
        "bankgate, mixed calls", "350 calls/s", "0.46")  # fmt: skip
    assert against_required.notes.startswith("what bankgate's own code costs")
    assert books.subject == "the books" and "0 lost" in books.notes


def test_a_load_report_from_before_the_floor_still_renders() -> None:
    kept = {k: v for k, v in LOAD["rows"][0].items() if "floor" not in k and "required" not in k}  # type: ignore[index]
    earlier = {**LOAD, "rows": [kept]}

    rows = rows_for(BenchRun("load", "python -m bench.load --json", data=earlier))

    assert [r.subject for r in rows] == ["bankgate, mixed calls", "the books"]


def test_a_load_phase_driven_in_rounds_says_so() -> None:
    rows = rows_for(BenchRun("load", "python -m bench.load --json", data={**LOAD, "rounds": 2}))
    assert rows[0].configuration == "postgresql, HTTP, 32 clients, 8.0 s in 2 alternating rounds"
    assert rows_for(BenchRun("load", "", data=LOAD))[0].configuration == "postgresql, HTTP, 32 clients, 8.0 s"


def _cost(subject: str, calls: float, statements: float, pages: float) -> dict[str, object]:
    path = "in-memory 2026-07-28"
    return {"path": path, "subject": subject, "calls": 10, "python_calls": calls, "statements": statements,
            "durable_commits": 1.0 if pages else 0.0, "pages_written": pages}  # fmt: skip


def test_costs_show_bankgate_over_the_required_work_and_that_over_the_floor() -> None:
    data = {
        "benchmark": "costs",
        "costs": [
            _cost("gated transfer_funds", 4400, 23, 29.3),
            _cost("+ audit sequencer (chaining those calls' records)", 140, 3, 0.7),
            _cost("required work: policy, approval, audit", 2200, 13, 7.3),
            _cost("floor: question + outcome commits", 2000, 8, 2),
            _cost("get_account_balance", 1300, 4, 0),
            _cost("required work: entitlements and policy", 1000, 1, 0),
            _cost("floor: one read, balance schema", 900, 1, 0),
        ],
    }
    rows = rows_for(BenchRun("costs", "python -m bench.costs --json", data=data))
    transfer = next(r for r in rows if r.subject == "gated transfer_funds")
    assert transfer.baseline == "required work: policy, approval, audit"
    assert transfer.ratio == "2.00" and "statements ×1.8" in transfer.notes and "pages ×4.0" in transfer.notes
    balance = next(r for r in rows if r.subject == "get_account_balance")
    assert balance.ratio == "1.30" and "pages" not in balance.notes  # nothing written: no ratio of nothing
    assert [r.subject for r in rows].count("+ audit sequencer (chaining those calls' records)") == 1
