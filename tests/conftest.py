"""Shared pytest configuration: async tests run on asyncio through anyio's plugin; one audit key per run."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server.audit_keys import KEY_FILE_ENV


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def audit_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run's audit signing key, outside the user's data dir. Set in the environment, so servers the
    tests start (which inherit it) sign with the key the tests verify with, as replicas sharing one would."""
    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    previous = os.environ.get(KEY_FILE_ENV)
    os.environ[KEY_FILE_ENV] = str(path)
    yield path
    if previous is None:
        del os.environ[KEY_FILE_ENV]
    else:
        os.environ[KEY_FILE_ENV] = previous
