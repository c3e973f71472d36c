"""Each replica holds its clock to the database's (`mcp_server.clock_check`).

Deadlines are stored as wall-clock time and read by each replica's own clock; README asked operators to keep
replicas within 60 s, and nothing checked it: a replica a few minutes off served, swept other replicas'
questions early (ahead) or ended those they had just asked (behind). Now a server more than `MAX_OFFSET` off the
database's clock refuses to start, and one that drifts there skips its sweeps and is not ready until it agrees.
The measurement is real (PostgreSQL's `clock_timestamp()`); the skew is this host's clock as the watch reads it.
"""

import time
from functools import partial

import httpx2
import pytest

from mcp_server import app, serve
from mcp_server.app import AppState, build_server, open_state
from mcp_server.clock_check import MAX_OFFSET, ClockSkew, ClockWatch
from mcp_server.http.app import build_http_app
from tests.server.harness import Harness
from tests.server.test_expiry_sweep import asked, later_state, status
from tests.support import static_tokens

pytestmark = pytest.mark.anyio

SKEW = 95.0


def shifted(seconds: float) -> float:
    """This host's clock, `seconds` ahead."""
    return time.time() + seconds


def test_a_clock_off_the_databases_is_refused_saying_by_how_much_and_which_way(ledger_harness: Harness) -> None:
    db = open_state(ledger_harness.settings()).ledger.db
    ClockWatch(db).check()  # this host's clock is the database's host's

    for skew, side in ((-SKEW, "behind"), (SKEW, "ahead of"), (-(MAX_OFFSET - 5), None)):
        watch = ClockWatch(db, clock=partial(shifted, skew))
        if side is None or db.dialect == "sqlite":  # within the bound; or one host, one clock
            watch.check()
            continue
        with pytest.raises(ClockSkew) as refused:
            watch.check()
        assert f"reads {SKEW:.0f} s {side} the database's" in str(refused.value)
        assert f"within {MAX_OFFSET:.0f} s" in str(refused.value) and "NTP" in str(refused.value)


async def readiness(state: AppState, ledger: Harness) -> tuple[int, dict[str, str]]:
    settings = ledger.settings()
    app = build_http_app(build_server(state, settings), state, settings, static_tokens())
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_a_server_off_the_databases_clock_sweeps_nothing_and_is_not_ready_until_it_agrees(
    ledger_harness: Harness,
) -> None:
    if ledger_harness.db.dialect == "sqlite":
        pytest.skip("a SQLite ledger shares this host's clock: there is no other to be off from")
    _, ref = asked(ledger_harness)
    state = later_state(ledger_harness)  # the question long overdue by the gate's clock
    assert state.clock is state.expiry.watch and state.clock is not None

    state.clock.clock = partial(shifted, SKEW)
    assert state.expiry.sweep() == 0
    assert status(ledger_harness, ref) == "pending"
    assert await readiness(state, ledger_harness) == (503, {"status": "unavailable", "database": "ok", "clock": "off"})

    state.clock.clock = time.time  # NTP brought it back
    assert state.expiry.sweep() == 1
    assert status(ledger_harness, ref) == "expired"
    assert await readiness(state, ledger_harness) == (200, {"status": "ready", "database": "ok", "clock": "ok"})


def test_serve_refuses_to_start_on_a_clock_off_the_databases(
    ledger_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring: `serve` checks before it serves (the check itself is measured for real above)."""
    if ledger_harness.db.dialect == "sqlite":
        pytest.skip("a SQLite ledger shares this host's clock")
    monkeypatch.setattr(app, "ClockWatch", partial(ClockWatch, clock=partial(shifted, SKEW)))
    started: list[object] = []
    monkeypatch.setattr(serve, "build_server", lambda *args: started.append(args))
    with pytest.raises(ClockSkew, match="ahead of the database's"):
        serve.serve(ledger_harness.settings())
    assert started == []
