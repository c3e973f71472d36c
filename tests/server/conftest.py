"""The server test matrix: each scenario in memory (and on PostgreSQL when configured), on both
protocol revisions. The stdio and HTTP transports run the conformance set: the scenarios marked
`over_every_transport` (see `tests.server.harness`)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.cli_process import McpCli, in_process_cli
from tests.server.harness import IN_PROCESS, Harness, HttpServer, postgres_harness
from tests.support import BACKENDS

MODES = ["auto", "legacy"]  # auto lands on 2026-07-28; legacy speaks 2025-11-25


@pytest.fixture(scope="module")
def http_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HttpServer]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('http') / 'ledger.db'}"
    Harness("setup", url)  # migrate before the server starts
    server = HttpServer(url)
    yield url, server
    server.stop()


@pytest.fixture(params=IN_PROCESS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The server over one transport; `memory-postgresql` runs it in-process on a PostgreSQL ledger.
    Over `http` the module's tests share one server and ledger (each opens accounts of its own)."""
    transport: str = request.param
    if transport == "http":
        url, server = request.getfixturevalue("http_db")
        yield Harness("http", url, server)
    elif transport == "memory-postgresql":
        yield from postgres_harness()
    else:
        yield Harness(transport, f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> McpCli:
    """`bankgate-mcp` run in this process in `tmp_path` (see `in_process_cli`)."""
    return in_process_cli(tmp_path, monkeypatch, capsys)


@pytest.fixture(params=BACKENDS)
def ledger_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The server in this process on each backend, for tests that drive its `Gate` and ledger directly."""
    if request.param == "postgresql":
        yield from postgres_harness()
    else:
        yield Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
