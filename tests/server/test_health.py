"""Unauthenticated health probes cannot be used to load the database: one probe per interval."""

import threading
import time
from pathlib import Path

import anyio
import httpx2
import pytest

from mcp_server.app import build_server, open_state
from mcp_server.http.app import build_http_app
from mcp_server.http.health import HealthProbe
from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.settings import Settings
from tests.support import static_tokens

pytestmark = pytest.mark.anyio

REQUESTS = 200


async def test_any_number_of_health_requests_probe_the_database_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every /healthz and /readyz ran a query: anyone who could reach the port could load the database."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'ledger.db'}", health_interval=3600, _env_file=None)  # type: ignore[call-arg]
    state = open_state(settings, create=True)
    probes = []
    real_ping = state.ledger.db.ping

    def counted_ping() -> None:
        probes.append(time.monotonic())
        real_ping()

    monkeypatch.setattr(state.ledger.db, "ping", counted_ping)
    app = build_http_app(build_server(state, settings), state, settings, static_tokens())
    answers: list[tuple[int, str]] = []

    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as client:

        async def ask(path: str) -> None:
            response = await client.get(path)
            answers.append((response.status_code, response.json()["database"]))

        async with anyio.create_task_group() as group:
            for n in range(REQUESTS):
                group.start_soon(ask, "/healthz" if n % 2 else "/readyz")

    assert answers == [(200, "ok")] * REQUESTS
    assert len(probes) == 1


async def test_a_probe_is_shared_while_it_runs_and_repeated_only_after_the_interval() -> None:
    now = [0.0]
    probes = 0
    outage = threading.Event()
    release = threading.Event()

    def ping() -> None:
        nonlocal probes
        probes += 1
        release.wait(5)
        if outage.is_set():
            raise LedgerError(ErrorCode.DATABASE_UNAVAILABLE, "down")

    probe = HealthProbe(ping, interval=2.0, clock=lambda: now[0])
    seen: list[str] = []

    async def ask() -> None:
        seen.append(await probe.database())

    async with anyio.create_task_group() as group:  # all arrive while the first probe is still running
        for _ in range(20):
            group.start_soon(ask)
        await anyio.wait_all_tasks_blocked()  # one probing, nineteen waiting for it
        release.set()
    assert probes == 1 and seen == ["ok"] * 20

    outage.set()
    now[0] = 1.9
    assert await probe.database() == "ok" and probes == 1  # still within the interval: the cached answer
    now[0] = 2.0
    assert await probe.database() == "unavailable" and probes == 2
    now[0] = 3.9
    assert await probe.database() == "unavailable" and probes == 2  # an outage is cached too
