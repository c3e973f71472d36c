"""The server test matrix: every scenario over each transport, on both protocol revisions."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.ledger.conftest import POSTGRES_URL_ENV, postgres_base_url, url_with_search_path
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
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    schema = f"bankgate_server_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    harness = Harness("memory", url_with_search_path(base, schema))
    try:
        yield harness
    finally:
        harness.db.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


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
