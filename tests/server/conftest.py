"""The server test matrix: every scenario over each transport, on both protocol revisions."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledger.conftest import postgres_schema
from tests.server.harness import Harness, HttpServer

TRANSPORTS = ["memory", "stdio", "http", pytest.param("memory-postgresql", marks=pytest.mark.postgres)]
MODES = ["auto", "legacy"]  # auto lands on 2026-07-28; legacy speaks 2025-11-25


@pytest.fixture(scope="module")
def http_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HttpServer]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('http') / 'ledger.db'}"
    Harness("setup", url)  # migrate before the server starts
    server = HttpServer(url)
    yield url, server
    server.stop()


@pytest.fixture(params=TRANSPORTS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The server over one transport; `memory-postgresql` runs it in-process on a PostgreSQL ledger."""
    transport: str = request.param
    if transport == "http":
        url, server = request.getfixturevalue("http_db")
        yield Harness("http", url, server)
    elif transport == "memory-postgresql":
        yield from postgres_harness()
    else:
        yield Harness(transport, f"sqlite:///{tmp_path / 'ledger.db'}")


def postgres_harness() -> Iterator[Harness]:
    with postgres_schema("bankgate_server") as url:
        harness = Harness("memory", url)
        try:
            yield harness
        finally:
            harness.db.close()


@pytest.fixture(params=TRANSPORTS)
def fresh_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """Like `harness`, but never shares a ledger with other tests (for per-principal daily totals)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    if request.param == "memory-postgresql":
        yield from postgres_harness()
        return
    if request.param != "http":
        yield Harness(request.param, url)
        return
    Harness("setup", url)
    server = HttpServer(url)
    yield Harness("http", url, server)
    server.stop()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value
