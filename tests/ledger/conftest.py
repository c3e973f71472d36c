"""Backend fixtures: every ledger test runs on SQLite, and on PostgreSQL when
``BANKGATE_TEST_POSTGRES_URL`` is set, each PostgreSQL database in a schema of its own.

Reusable outside ``tests/ledger``: ``backend`` (parametrized "sqlite" / "postgresql"),
``make_database_url`` (a factory of fresh, empty database URLs, cleaned up afterwards),
``database_url``, ``database`` (migrated) and ``ledger`` (empty, migrated).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database

POSTGRES_URL_ENV = "BANKGATE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_base_url() -> str | None:
    """The server to test against, as a plain libpq URL, or ``None`` when not configured."""
    url = os.environ.get(POSTGRES_URL_ENV)
    return url.replace("postgresql+psycopg://", "postgresql://", 1) if url else None


def url_with_search_path(base_url: str, schema: str) -> str:
    """``base_url`` with every connection's ``search_path`` set to ``schema``."""
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema, dropped afterwards; skips when none is configured."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url_with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


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
        schema = f"bankgate_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return url_with_search_path(base, schema)

    yield make
    if schemas:
        assert base is not None
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


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
