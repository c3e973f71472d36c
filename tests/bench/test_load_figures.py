"""The load benchmark's own figures measure what they say."""

import os
import threading
import time

import anyio
import mcp_types as types
import pytest

from bench import load
from bench.load import BANKGATE, BARE, FLOOR, Lag, Phase, Subject, context_switches, merged


def test_context_switches_sum_every_thread_of_the_process() -> None:
    started, slept, finish = threading.Event(), threading.Event(), threading.Event()

    def sleeper() -> None:
        started.wait()
        for _ in range(50):
            time.sleep(0.001)  # each sleep gives the CPU up: one voluntary switch
        slept.set()
        finish.wait()

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        before = context_switches(os.getpid())
        started.set()
        assert slept.wait(10)  # the main thread blocks once meanwhile: the 50 are the sleeper's
        assert context_switches(os.getpid()) - before >= 50
    finally:
        finish.set()
        thread.join()


def _slice(subject: Subject, seconds: float, calls: int, cpu: float | None, lag: Lag | None = None) -> Phase:
    part = Phase(subject, clients=4, seconds=seconds, server_cpu_s=cpu, loop_cpu_s=cpu, switches=calls)
    part.calls["balance"] = calls
    part.latencies["balance"] = [seconds / calls] * calls
    part.executed_memos = {f"m{seconds}"}
    part.lag = lag
    return part


def test_a_subjects_rounds_merge_into_one_phase_of_their_totals() -> None:
    first = _slice(BANKGATE, 2.0, 100, 0.5, Lag(most_unchained=7, oldest_s=0.1, unchained_at_end=3, drained_s=0.2))
    second = _slice(BANKGATE, 2.0, 300, 0.7, Lag(most_unchained=4, oldest_s=0.3, unchained_at_end=1, drained_s=None))
    phase = merged([first, second])
    assert (phase.seconds, phase.total, phase.rate) == (4.0, 400, 100.0)  # not the mean of the two rates (125)
    assert phase.server_cpu_s == 1.2 and phase.switches == 400
    assert len(phase.latencies["balance"]) == 400 and phase.executed_memos == {"m2.0"}
    assert phase.lag is not None
    assert (phase.lag.most_unchained, phase.lag.oldest_s, phase.lag.drained_s) == (7, 0.3, None)  # one never drained
    assert merged([_slice(BARE, 1.0, 10, None), _slice(BARE, 1.0, 10, 0.1)]).server_cpu_s is None  # unmeasured stays so


def test_latencies_are_shown_by_the_clients_protocol_revision_as_well_as_by_kind() -> None:
    assert [load.revision(n) for n in range(8)] == ["2026-07-28"] * 3 + ["2025-11-25"] + ["2026-07-28"] * 3 + [
        "2025-11-25"
    ]  # a quarter speak 2025-11-25
    first, second = _slice(BANKGATE, 1.0, 4, None), _slice(BANKGATE, 1.0, 4, None)
    first.by_revision = {"2026-07-28": [0.010, 0.030], "2025-11-25": [0.200]}
    second.by_revision = {"2025-11-25": [0.400, 0.600]}
    figures = merged([first, second]).figures()
    assert figures["per_revision"] == {
        "2026-07-28 clients": {"calls": 2, "p50_ms": 20.0, "p99_ms": 30.0},
        "2025-11-25 clients": {"calls": 3, "p50_ms": 400.0, "p99_ms": 600.0},
    }
    assert set(figures["per_kind"]) == {"balance"}  # the kinds stay as they were


@pytest.mark.anyio
async def test_rounds_alternate_the_order_so_drift_falls_on_every_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    driven: list[tuple[str, int, int, float]] = []

    async def phase(subject: Subject, url: str, clients: int, seconds: float, *rest: object) -> Phase:
        first = rest[-1]
        assert isinstance(first, int)
        driven.append((subject.name, clients, first, seconds))
        return _slice(subject, seconds, 10, 0.1)

    monkeypatch.setattr(load, "run_phase", phase)
    monkeypatch.setattr(load, "progress", lambda _text: None)
    servers = {BANKGATE: ("u1", 1), BARE: ("u2", 2), FLOOR: ("u3", 3)}
    phases = await load.interleaved(servers, [2, 5], 8.0, 3, 100, books=None)  # type: ignore[arg-type]
    order = [name for name, clients, _, _ in driven if clients == 2]
    assert order == ["bankgate", "bare SDK", "floor", "floor", "bare SDK", "bankgate", "bankgate", "bare SDK", "floor"]
    firsts = [first for name, _, first, _ in driven if name == "bankgate"]
    assert firsts == [0, 2, 4, 6, 11, 16]  # every slice's clients take closable accounts (and memos) of their own
    assert {seconds for *_, seconds in driven} == {8.0 / 3}
    assert [p.seconds for p in phases[BANKGATE]] == pytest.approx([8.0, 8.0])


class _Timed:
    """A client of a server whose calls take `seconds` each (no transport: only the timing is under test)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> "_Timed":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call_tool(self, *args: object, **kwargs: object) -> types.CallToolResult:
        await anyio.sleep(self.seconds)
        return types.CallToolResult(content=[types.TextContent(type="text", text="accept")])


@pytest.mark.anyio
async def test_a_phases_rate_counts_the_calls_its_window_held_not_the_tail_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls still running when the window closes end later, one per client; counting them and waiting for the
    slowest made the rate depend on how each subject's last calls drained (a server that speeds up as its load
    falls gained, one with a slow straggler lost), not only on what it did within the window."""
    clients = iter([_Timed(0.02), _Timed(1.5)])  # one fast client, one whose only call outlasts the window
    monkeypatch.setattr(load, "http_client", lambda *args, **kwargs: next(clients))
    phase = await load.run_phase(BARE, "unused", 2, 0.5, 10_000, None, None)
    assert phase.seconds == pytest.approx(0.5, abs=0.05)  # the window, not the slow call's 1.5 s
    assert 10 <= phase.total <= 26  # the fast client's calls in the window (~25 on an idle machine), not the slow one
    assert max(max(values) for values in phase.latencies.values()) >= 1.5  # the late call's latency is still shown
