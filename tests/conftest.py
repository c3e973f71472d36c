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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the cores this process may use. Many tests spend part of their time
    waiting (a launched server importing, a browser, a deadline), and the extra worker fills those gaps."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS has none
    return cores + 1


SLOWEST_FILES = (
    "drills/test_explore.py",
    "server/test_approvals.py",
    "host/test_cli.py",
    "host/test_expiry.py",
    "host/test_approvals.py",
    "drills/test_restart_between_rounds.py",
    "host/test_tool_calls.py",
    "server/test_cli_defaults.py",
    "desk/test_desk_serving.py",
    "web/test_browser.py",
    "server/test_memo.py",
    "drills/test_crash_recovery.py",
    "host/test_desk_host.py",
    "host/test_strict_service.py",
    "web/test_interrupts.py",
    "server/test_http_security.py",
    "channels/test_transports.py",
    "host/test_wire_shapes.py",
    "web/test_security.py",
    "server/test_entitlements.py",
    "server/test_audit_cli.py",
    "server/test_cli_serving.py",
    "server/test_rounds.py",
    "host/test_waiting.py",
    "drills/test_http_abuse.py",
    "desk/test_desk_browser.py",
)
"""The files that take longest (`--durations=0`, summed per file), slowest first. pytest-xdist hands out
whole files (`--dist loadfile`, `--no-loadscope-reorder`) in collection order: these go first, so the
run does not end with one worker on a long file while the other idles. A file missing here only runs
later; refresh the list when the durations change."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (each file's tests keep their order: test_fuzz.py's tally runs last)."""
    tests = Path(__file__).parent
    rank = {tests / name: position for position, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path, len(SLOWEST_FILES)))
