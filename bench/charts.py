"""The pictures above docs/RESULTS.md's table, drawn from the table's own rows.

Three charts: each benchmark's ratio to its same-run baseline with its goal (and the floor, the
best ratio any implementation of such a tool reaches, and where measured the required work's
ratio against the judged row's baseline, the most a gate keeping bankgate's promises reaches on
that goal); where a host turn's time goes (Responses, MCP, the host itself); and calls/s against
client count for SQLite and PostgreSQL beside the required work, the durable floor and the bare
SDK server. They are drawn from :class:`bench.results.PerfRow`\\ s, the strings the table shows,
so a chart can never disagree with the table below it, and the charts of an existing page can be
redrawn from the page alone (``python -m bench.results --charts-only``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from bench.results import PerfRow

RATIOS, HOST_TIME, LOAD = "ratios.png", "host_time.png", "load.png"
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_GOAL = re.compile(r"goal ≥ (\d+(?:\.\d+)?)")
_SPLIT = re.compile(r"(responses|mcp|host)_ms (\d+(?:\.\d+)?)")
_CLIENTS = re.compile(r"(\d+) clients?")
_FLOOR = "floor:"
_REQUIRED = "required work:"
_GREEN, _RED, _GREY = "#2e7d32", "#c62828", "#757575"
_PARTS = (("responses", "Responses API round trips", "#1565c0"), ("mcp", "MCP calls", "#ef6c00"))
_HOST_PART = ("host", "the host itself", "#6a1b9a")


def number(text: str) -> float | None:
    """The first number in a table cell (``"1,285 ops/s"`` → 1285.0), or ``None`` for "—"."""
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


def render_charts(rows: Sequence[PerfRow], directory: Path) -> list[Path]:
    """Write the charts the rows have figures for into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in ((RATIOS, _ratios), (HOST_TIME, _host_time), (LOAD, _load)):
        figure = draw(rows)
        if figure is not None:
            # matplotlib ships no stubs for backend_agg, so print_png is untyped
            FigureCanvasAgg(figure).print_png(directory / name)  # type: ignore[no-untyped-call]
            written.append(directory / name)
    return written


def _met(row: PerfRow, ratio: float, goal: float) -> bool:
    """The table's own judgement (its ✓ or ✗, made on the unrounded figure), else the figure against the goal: 0.8956
    of a 0.9 goal is printed 0.90 ✗, which read back would pass."""
    if "✓" in row.ratio or "✗" in row.ratio:
        return "✓" in row.ratio
    return ratio >= goal


def _ratios(rows: Sequence[PerfRow]) -> Figure | None:
    floors = {(r.benchmark, r.configuration): number(r.ratio) for r in rows if r.subject.startswith(_FLOOR)}
    bounds = {
        (r.benchmark, r.configuration, r.baseline): number(r.ratio) for r in rows if r.subject.startswith(_REQUIRED)
    }
    judged = [
        (r, ratio, float(goal_match.group(1)))
        for r in rows
        if (goal_match := _GOAL.search(r.notes)) and (ratio := number(r.ratio)) is not None
    ]
    if not judged:
        return None
    figure = Figure(figsize=(10, 0.42 * len(judged) + 1.6), layout="constrained")
    axes = figure.add_subplot()
    for y, (row, ratio, goal) in enumerate(judged):
        axes.barh(y, ratio, height=0.6, color=_GREEN if _met(row, ratio, goal) else _RED)
        axes.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
        axes.annotate(
            f"{ratio:.2f}", (ratio, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
            fontsize=8, color="white",
        )  # fmt: skip
        floor = floors.get((row.benchmark, row.configuration))
        if floor is not None:
            axes.plot(floor, y, marker="D", color=_GREY, markersize=6)
        bound = bounds.get((row.benchmark, row.configuration, row.baseline))  # against the judged row's baseline
        if bound is not None:
            axes.plot(bound, y, marker="o", markerfacecolor="none", color="black", markersize=7)
    axes.set_yticks(range(len(judged)), [f"{r.benchmark} · {r.configuration} · {r.subject}" for r, _, _ in judged])
    axes.invert_yaxis()
    axes.set_xlim(0, max(1.1, *(ratio for _, ratio, _ in judged)) * 1.08)
    axes.set_xlabel("ratio (higher is better)")
    figure.suptitle("Ratio to the same-run baseline: green meets its goal")
    axes.plot([], [], color="black", linewidth=2, label="goal")
    axes.plot([], [], "D", color=_GREY, label="floor tool: the most any implementation can reach")
    if bounds:
        axes.plot(
            [],
            [],
            "o",
            markerfacecolor="none",
            color="black",
            label="required work: the most a gate keeping bankgate's promises reaches",
        )
    _legend_below(axes, columns=1 if bounds else 2)  # the axes are narrow beside long labels
    axes.grid(axis="x", alpha=0.3)
    return figure


def _host_time(rows: Sequence[PerfRow]) -> Figure | None:
    splits = [(r, dict(_SPLIT.findall(r.notes))) for r in rows if r.benchmark == "host_bench"]
    splits = [(r, {k: float(v) for k, v in found.items()}) for r, found in splits if len(found) == 3]
    if not splits:
        return None
    figure = Figure(figsize=(10, 0.42 * len(splits) + 1.6), layout="constrained")
    axes = figure.add_subplot()
    labels = [f"{r.configuration} · {r.subject}" for r, _ in splits]
    left = [0.0] * len(splits)
    for key, label, colour in (*_PARTS, _HOST_PART):
        widths = [parts[key] for _, parts in splits]
        axes.barh(range(len(splits)), widths, left=left, height=0.6, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_yticks(range(len(splits)), labels)
    axes.invert_yaxis()
    axes.set_xlabel("median time of one turn, ms")
    figure.suptitle("Where a host turn's time goes")
    _legend_below(axes, columns=3)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _load(rows: Sequence[PerfRow]) -> Figure | None:
    """Per backend: bankgate, the required work, the floor and the bare server (each load phase's bankgate
    row against the bare server gives bankgate and the bare rate; its floor and required rows, theirs)."""
    series: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        clients_match = _CLIENTS.search(r.configuration)
        rate, base = number(r.rate), number(r.baseline_rate)
        if (
            r.benchmark != "load"
            or not clients_match
            or rate is None
            or base is None
            or not r.baseline.startswith("bare")
        ):
            continue
        client_count = int(clients_match.group(1))
        lines = series[r.configuration.split(",")[0]]
        if r.subject.startswith(_FLOOR):
            lines["floor"][client_count] = rate
        elif r.subject.startswith(_REQUIRED):
            lines["required"][client_count] = rate
        else:
            lines["bankgate"][client_count] = rate
            lines["bare"][client_count] = base
    if not series:
        return None
    figure = Figure(figsize=(8, 4.8), layout="constrained")
    axes = figure.add_subplot()
    counts: set[int] = set()
    styles = {"bankgate": ("o-", 1.0, "bankgate"), "floor": ("D:", 0.8, "floor: durable work only"),
              "required": ("^-.", 0.8, "required work"), "bare": ("s--", 0.6, "bare SDK server")}  # fmt: skip
    for (backend, lines), colour in zip(sorted(series.items()), ("#1565c0", "#ef6c00", "#2e7d32"), strict=False):
        for name, points in lines.items():
            style, alpha, label = styles[name]
            clients = sorted(points)
            counts.update(clients)
            axes.plot(
                clients, [points[c] for c in clients], style, color=colour, alpha=alpha, label=f"{label} ({backend})"
            )
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(counts), [str(c) for c in sorted(counts)])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("concurrent HTTP clients")
    axes.set_ylabel("calls/s (realistic mix, approvals included)")
    figure.suptitle("Throughput under load: bankgate, the required work, the durable floor, the bare SDK server")
    _legend_below(axes, columns=3)
    axes.grid(alpha=0.3)
    return figure


def _legend_below(axes: Axes, columns: int) -> None:
    """Under the plot, where it hides no bar: the figure's, so that long tick labels beside narrow axes push
    neither it nor the title past the image's edge (constrained layout makes room for it)."""
    axes.figure.legend(loc="outside lower center", ncol=columns, fontsize=8, frameon=False)
