"""Shared measuring and reporting for the MCP benchmarks: rates, percentiles, ratios, JSON."""

import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import anyio

from bench.progress import progress
from bench.rounds import alternating


@dataclass(frozen=True)
class Figure:
    path: str
    subject: str
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


ROUNDS = 3
"""Subjects take turns this many times (`bench.rounds.alternating`), so drift on a shared machine hits all alike."""

Calls = Sequence[Callable[[], Awaitable[object]]]


async def measure_rounds(path: str, subjects: Sequence[tuple[str, Calls]], each: int) -> list[Figure]:
    """Time `each` calls per client of every subject, taking turns in `ROUNDS` rounds.

    Every client first makes a short warm-up, then the heap is collected once, so the collection of
    what setting up built (~100 ms) lands on no subject; each figure pools its rounds' calls and time.
    """
    progress(f"{path}: {', '.join(name for name, _ in subjects)} ({ROUNDS} rounds of {each} calls per client)")
    for _, calls in subjects:
        for call in calls:
            for _ in range(min(20, each)):
                await call()
    gc.collect()
    share = max(1, each // ROUNDS)
    runs: list[list[tuple[float, list[float]]]] = [[] for _ in subjects]
    for _, index in alternating(range(len(subjects)), ROUNDS):
        runs[index].append(await _timed(subjects[index][1], share))
    return [_figure(path, name, run) for (name, _), run in zip(subjects, runs, strict=True)]


async def _timed(calls: Calls, each: int) -> tuple[float, list[float]]:
    """Run `each` calls on every client concurrently; the elapsed seconds and each call's latency."""
    latencies: list[float] = []

    async def drive(call: Callable[[], Awaitable[object]]) -> None:
        for _ in range(each):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for call in calls:
            group.start_soon(drive, call)
    return time.perf_counter() - started, latencies


def _figure(path: str, subject: str, runs: list[tuple[float, list[float]]]) -> Figure:
    latencies = sorted(latency for _, run in runs for latency in run)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    seconds = sum(elapsed for elapsed, _ in runs)
    return Figure(path, subject, len(latencies), seconds, statistics.median(latencies) * 1000, p99 * 1000)


FLOOR = "floor: "
"""Subjects named so are ceilings, not contenders: bare tools doing only what any gated tool must."""

FLOOR_NOTE = "ceiling: a bare tool doing only the work any such tool must; no goal below it is reachable"

BARE_NOTE = "for scale: against a tool that does none of the required work; no goal"

REQUIRED = "required work: "
"""Subjects named so do the checks and records any gate keeping bankgate's promises must, the cheapest
way (`bench.required_work`): their ratio to the floor is the most such a gate reaches on a goal."""

REQUIRED_NOTE = "bound: the floor plus the checks and records bankgate must keep, done the cheapest way; no goal"

OVER_REQUIRED_NOTE = "what bankgate's own code costs over the work it must do; no goal"


def report(
    title: str, pairs: Sequence[tuple[Figure, Figure]], goal: float, as_json: bool, http_goal: float | None = None
) -> None:
    """Print each (subject, baseline) pair with its ratio; only a subject measured against a floor is judged.

    The goals (#16) compare a tool with the floor doing the work any such tool must, so a pair whose
    baseline is a floor row is held to `goal` (`http_goal` on HTTP paths); the bare tool's ratios are shown
    for scale, with no goal.
    """

    def goal_of(ours: Figure, base: Figure) -> float | None:
        if not base.subject.startswith(FLOOR) or ours.subject.startswith(REQUIRED):
            return None
        return http_goal if http_goal is not None and ours.path.startswith("HTTP") else goal

    def verdict(ours: Figure, base: Figure, ratio: float) -> str:
        target = goal_of(ours, base)
        return "" if target is None else ("" if ratio >= target else " *")

    def note(ours: Figure, base: Figure) -> str | None:
        if ours.subject.startswith(FLOOR):
            return FLOOR_NOTE
        if ours.subject.startswith(REQUIRED):
            return REQUIRED_NOTE
        if base.subject.startswith(REQUIRED):
            return OVER_REQUIRED_NOTE
        return BARE_NOTE if goal_of(ours, base) is None else None

    rows = [
        {
            "path": ours.path,
            "ours": asdict(ours) | {"rate": round(ours.rate, 1)},
            "baseline": asdict(base) | {"rate": round(base.rate, 1)},
            "ratio": round(ours.rate / base.rate, 3),
            "goal": goal_of(ours, base),
        }
        | ({"note": text} if (text := note(ours, base)) else {})
        for ours, base in pairs
    ]
    if as_json:
        print(json.dumps({"benchmark": title, "goal_ratio": goal, "rows": rows}))
        return
    goals = f"{goal}" if http_goal is None else f"{goal}, over HTTP {http_goal}"
    print(f"\n{title} (goal: ratio to the floor >= {goals})")
    print(f"{'path':<28}{'subject':<40}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}  baseline")
    for ours, base in pairs:
        ratio = ours.rate / base.rate
        print(
            f"{ours.path:<28}{ours.subject:<40}{ours.rate:>9.0f}{ours.p50_ms:>9.2f}{ours.p99_ms:>9.2f}"
            f"{ratio:>6.2f}{verdict(ours, base, ratio):<2}  {base.subject} ({base.rate:.0f}/s)"
        )
    print(f"(* below goal; {FLOOR.strip()} rows: {FLOOR_NOTE}; {REQUIRED.strip()} rows: {REQUIRED_NOTE})")
