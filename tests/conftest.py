"""Shared pytest configuration: async tests run on asyncio through anyio's plugin, one audit key per
run, and the Hypothesis profile every property test and the fuzz drill run under.

Profiles (registered in `tests.support`), chosen by `BANKGATE_FUZZ_PROFILE`, else `ci` when `CI` is set, else `dev`:
- `ci`: derandomised, no example database, nothing timed (no deadline, no too-slow check):
  every run draws and judges the same examples, so a red CI run is reproducible and a green
  one is not luck;
- `dev`: Hypothesis' defaults (random; a failure is replayed from `.hypothesis/`);
- `drill`: random and `DRILL_FACTOR` times larger, to hunt for what the fixed examples miss:
  `BANKGATE_FUZZ_PROFILE=drill .venv/bin/python -m pytest tests/drills/test_fuzz.py`.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from mcp_server.audit.keys import KEY_FILE_ENV
from tests.support import PROFILE

settings.load_profile(PROFILE)


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
