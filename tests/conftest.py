"""Shared pytest configuration: async tests run on asyncio through anyio's plugin, one audit key per
run, and the Hypothesis profile every property test and the fuzz drill run under.

Profiles, chosen by `BANKGATE_FUZZ_PROFILE`, else `ci` when `CI` is set, else `dev`:
- `ci`: derandomised, no example database, nothing timed (no deadline, no too-slow check):
  every run draws and judges the same examples, so a red CI run is reproducible and a green
  one is not luck;
- `dev`: Hypothesis' defaults (random; a failure is replayed from `.hypothesis/`);
- `drill`: random and `DRILL_FACTOR` times larger, to hunt for what the fixed examples miss:
  `BANKGATE_FUZZ_PROFILE=drill .venv/bin/python -m pytest tests/drills/test_fuzz.py`.
"""

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from mcp_server.audit.keys import KEY_FILE_ENV

PROFILE_ENV = "BANKGATE_FUZZ_PROFILE"
DRILL_FACTOR = 10

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev")
settings.register_profile("drill", derandomize=False, max_examples=settings.default.max_examples * DRILL_FACTOR)


def select_profile(environ: Mapping[str, str]) -> str:
    return environ.get(PROFILE_ENV) or ("ci" if environ.get("CI") else "dev")


PROFILE = select_profile(os.environ)
settings.load_profile(PROFILE)


def examples(usual: int) -> int:
    """The example count for a test that sets its own (explicit counts override profiles)."""
    return usual * DRILL_FACTOR if PROFILE == "drill" else usual


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
