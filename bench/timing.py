"""Shared measuring and reporting for the MCP benchmarks: rates, percentiles, ratios, JSON."""

import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import anyio


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
"""Subject and baseline alternate this many times, so drift on a shared machine hits both alike."""

Calls = Sequence[Callable[[], Awaitable[object]]]


async def measure_pair(
    path: str, subject: tuple[str, Calls], baseline: tuple[str, Calls], each: int
) -> tuple[Figure, Figure]:
    """Time `each` calls per client of the subject and of the baseline, alternating in `ROUNDS` rounds.

    Every client first makes a short warm-up; each figure pools its rounds' calls and time.
    """
    (subject_name, subject_calls), (baseline_name, baseline_calls) = subject, baseline
    for call in [*subject_calls, *baseline_calls]:
        for _ in range(min(20, each)):
            await call()
    share = max(1, each // ROUNDS)
    runs: dict[str, list[tuple[float, list[float]]]] = {subject_name: [], baseline_name: []}
    for _ in range(ROUNDS):
        for name, calls in ((baseline_name, baseline_calls), (subject_name, subject_calls)):
            runs[name].append(await _timed(calls, share))
    return _figure(path, subject_name, runs[subject_name]), _figure(path, baseline_name, runs[baseline_name])


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


def report(
    title: str, pairs: Sequence[tuple[Figure, Figure]], goal: float, as_json: bool, http_goal: float | None = None
) -> None:
    """Print each (subject, baseline) pair with its ratio against `goal` (`http_goal` on HTTP paths)."""

    def goal_of(path: str) -> float:
        return http_goal if http_goal is not None and path.startswith("HTTP") else goal

    rows = [
        {
            "path": ours.path,
            "ours": asdict(ours) | {"rate": round(ours.rate, 1)},
            "baseline": asdict(base) | {"rate": round(base.rate, 1)},
            "ratio": round(ours.rate / base.rate, 3),
            "goal": goal_of(ours.path),
        }
        for ours, base in pairs
    ]
    if as_json:
        print(json.dumps({"benchmark": title, "goal_ratio": goal, "rows": rows}))
        return
    goals = f"{goal}" if http_goal is None else f"{goal}, over HTTP {http_goal}"
    print(f"\n{title} (goal: ratio >= {goals})")
    print(f"{'path':<28}{'subject':<26}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for ours, base in pairs:
        ratio = ours.rate / base.rate
        for figure, shown in ((base, ""), (ours, f"{ratio:.2f}{'' if ratio >= goal_of(ours.path) else ' *'}")):
            print(
                f"{figure.path:<28}{figure.subject:<26}{figure.rate:>9.0f}{figure.p50_ms:>9.2f}{figure.p99_ms:>9.2f}"
                f"{shown:>8}"
            )
    print("(* below goal)")
