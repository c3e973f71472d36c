"""Backend fixtures: every ledger test runs on SQLite, and on PostgreSQL when
``BANKGATE_TEST_POSTGRES_URL`` is set, each PostgreSQL database in a schema of its own.

Fixtures for this folder (what other folders share is in ``tests.support``): ``backend``
(parametrized "sqlite" / "postgresql"), ``make_database_url`` (a factory of fresh, empty database
URLs, cleaned up afterwards), ``database_url``, ``database`` (migrated) and ``ledger`` (empty, migrated).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from tests.support import (
    BACKENDS,
    POSTGRES_URL_ENV,
    create_schema,
    drop_schemas,
    postgres_base_url,
    url_with_search_path,
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql" and postgres_base_url() is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    return name


@pytest.fixture
def make_database_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Call it for the URL of a new, empty database on the test's backend."""
    serial = itertools.count(1)
    schemas: list[str] = []
    base = postgres_base_url()

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'ledger-{next(serial)}.db'}"
        assert base is not None
        schema = create_schema(base, "bankgate_test")
        schemas.append(schema)
        return url_with_search_path(base, schema)

    yield make
    if schemas:
        assert base is not None
        drop_schemas(base, *schemas)


@pytest.fixture
def database_url(make_database_url: Callable[[], str]) -> str:
    return make_database_url()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.open(database_url)
    yield db
    db.close()


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database)
