"""bench.results draws its charts from the table's rows (synthetic ones here: no benchmark runs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors
import numpy as np

from bench import charts
from bench.charts import HOST_TIME, LOAD, RATIOS, number, render_charts
from bench.results import PerfRow, table_rows, with_charts

ROWS = [
    PerfRow("server_bench", "stdio", "get_account_balance", "198 calls/s", "floor: one read", "207 calls/s", "0.96 ✓",
            "4.04 / 14.65", "goal ≥ 0.8"),
    PerfRow("server_bench", "stdio", "floor: one read", "207 calls/s", "bare echo", "209 calls/s", "0.99",
            "3.82 / 14.96", "ceiling: a bare tool doing only the work any such tool must"),
    PerfRow("server_bench", "stdio", "required work: entitlements and policy", "203 calls/s", "floor: one read",
            "207 calls/s", "0.98", "3.90 / 14.80", "bound: the floor plus the checks and records bankgate must keep"),
    PerfRow("gate_bench", "HTTP", "gated transfer_funds", "55 calls/s", "bare approval no-op", "78 calls/s",
            "0.70 ✗", "16.85 / 35.01", "goal ≥ 0.9"),
    PerfRow("host_bench", "rest", "balance turn", "—", "baselines are rows of this list", "—", "—",
            "11.84 / 13.91 (p90)", "responses_ms 6.5, mcp_ms 4.3, host_ms 1.2"),
    PerfRow("load", "sqlite, HTTP, 8 clients, 8.0 s", "bankgate, mixed calls", "193 calls/s", "bare SDK server",
            "205 calls/s", "0.94", "balance 22/98", "1555 calls"),
    PerfRow("load", "sqlite, HTTP, 32 clients, 8.0 s", "bankgate, mixed calls", "1,168 calls/s", "bare SDK server",
            "1,202 calls/s", "0.97 ✓", "balance 94/418", "goal ≥ 0.9; 1373 calls"),
    PerfRow("load", "sqlite, HTTP, 32 clients, 8.0 s", "bankgate, mixed calls", "1,168 calls/s",
            "floor: durable work of the mix only", "1,190 calls/s", "0.98", "balance 94/418", "no goal"),
    PerfRow("load", "sqlite, HTTP, 32 clients, 8.0 s", "floor: durable work of the mix only", "1,190 calls/s",
            "bare SDK server", "1,202 calls/s", "0.99", "balance 90/400", "ceiling"),
    PerfRow("load", "sqlite, HTTP, 32 clients, 8.0 s", "required work: policy, bound approvals, signed audit",
            "1,150 calls/s", "bare SDK server", "1,202 calls/s", "0.96", "balance 92/410", "bound"),
    PerfRow("load", "sqlite, HTTP, 32 clients, 8.0 s", "bankgate, mixed calls", "1,168 calls/s",
            "required work: policy, bound approvals, signed audit", "1,150 calls/s", "1.02", "balance 94/418",
            "no goal"),
    PerfRow("load", "sqlite, after all phases", "the books", "—", "—", "—", "—", "—", "873 acknowledged transfers"),
]  # fmt: skip
PAGE = """# Results

## Performance

| benchmark | configuration | subject | rate | same-run baseline | baseline rate | ratio | p50 / p99 ms | notes |
|---|---|---|---|---|---|---|---|---|
{rows}

Reproduce:
"""


def _page(rows: list[PerfRow]) -> str:
    lines = ["| " + " | ".join(v.replace("|", "\\|") for v in vars(row).values()) + " |" for row in rows]
    return PAGE.format(rows="\n".join(lines))


def test_each_chart_is_a_png_from_the_rows(tmp_path: Path) -> None:
    written = render_charts(ROWS, tmp_path / "charts")

    assert [path.name for path in written] == [RATIOS, HOST_TIME, LOAD]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000


def test_a_chart_without_figures_is_left_out(tmp_path: Path) -> None:
    only_load = [row for row in ROWS if row.benchmark == "load" and "goal" not in row.notes]  # no ratio to judge

    assert [path.name for path in render_charts(only_load, tmp_path)] == [LOAD]
    assert render_charts([], tmp_path / "none") == []


def test_the_page_shows_the_charts_above_its_table_and_the_table_reads_back(tmp_path: Path) -> None:
    page = _page(ROWS)
    assert table_rows(page) == ROWS

    charts = render_charts(table_rows(page), tmp_path / "charts")
    shown = with_charts(page, charts, tmp_path)
    again = with_charts(shown, charts, tmp_path)

    assert again == shown, "redrawing replaces the images rather than adding more"
    images = [line for line in shown.splitlines() if line.startswith("![")]
    assert images[0] == "![Ratio to the same-run baseline per benchmark, with its goal](charts/ratios.png)"
    assert len(images) == 3 and shown.index("charts/load.png") < shown.index("| benchmark |")
    assert table_rows(shown) == ROWS


def test_numbers_are_read_from_table_cells() -> None:
    assert number("1,285 ops/s") == 1285.0 and number("0.48 ✗") == 0.48 and number("—") is None


def test_the_load_chart_draws_bankgate_the_required_work_the_floor_and_the_bare_server_per_backend() -> None:
    figure = charts._load(ROWS)
    assert figure is not None

    lines = {line.get_label(): list(np.asarray(line.get_ydata())) for line in figure.axes[0].get_lines()}

    assert lines == {
        "bankgate (sqlite)": [193.0, 1168.0],
        "bare SDK server (sqlite)": [205.0, 1202.0],
        "floor: durable work only (sqlite)": [1190.0],
        "required work (sqlite)": [1150.0],
    }


def test_the_ratio_chart_marks_the_required_work_bound_on_the_judged_row_of_its_configuration_and_baseline() -> None:
    figure = charts._ratios(ROWS)
    assert figure is not None

    bounds = [
        line for line in figure.axes[0].get_lines() if line.get_marker() == "o" and len(np.asarray(line.get_xdata()))
    ]
    judged = [label.get_text() for label in figure.axes[0].get_yticklabels()]

    assert [(list(np.asarray(b.get_xdata())), list(np.asarray(b.get_ydata()))) for b in bounds] == [
        ([0.98], [judged.index("server_bench · stdio · get_account_balance")]),
        ([0.96], [judged.index("load · sqlite, HTTP, 32 clients, 8.0 s · bankgate, mixed calls")]),
    ]


def test_a_bar_is_coloured_by_the_tables_own_judgement_not_its_rounded_figure() -> None:
    """0.8956 of a 0.9 goal is printed "0.90 ✗": read back as 0.90 it looked met, and its bar was drawn green."""
    missed = PerfRow("server_bench", "HTTP 1 client", "get_account_balance", "592 calls/s", "floor: one read",
                     "661 calls/s", "0.90 ✗", "1.6 / 3.2", "goal ≥ 0.9")  # fmt: skip
    met = PerfRow("server_bench", "HTTP 8 clients", "get_account_balance", "978 calls/s", "floor: one read",
                  "925 calls/s", "1.06 ✓", "1.0 / 2.0", "goal ≥ 0.9")  # fmt: skip
    figure = charts._ratios([missed, met])
    assert figure is not None
    colours = [patch.get_facecolor()[:3] for patch in figure.axes[0].patches]
    assert colours == [matplotlib.colors.to_rgb(charts._RED), matplotlib.colors.to_rgb(charts._GREEN)]
