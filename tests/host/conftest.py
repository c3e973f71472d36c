"""One emulator per test module (agents are named per test, so tests do not see each other's), and the
CLI run in-process."""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_host.cli.main import main
from agent_host.emulator import Emulator, FaultConfig
from tests.support import run_main

HOST_VARIABLES = ("BANKGATE_", "PROJECT_ENDPOINT", "CHAT_MODEL", "AGENT_NAME", "EMULATOR_TOKEN")
"""The environment a developer's shell may hold for the host; every CLI test starts without it."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_faults(emulator: Emulator) -> Iterator[None]:
    """Faults a test arms are cleared for the next one."""
    yield
    emulator.faults.arm(FaultConfig())
    emulator.faults.reset_stats()


@pytest.fixture
def agent_name(request: pytest.FixtureRequest) -> str:
    """A valid agent name unique to the test (1-63 letters, digits and hyphens)."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
    return cleaned[-63:].strip("-")


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Cli]:
    """`main(argv)` in this process as `bankgate_agent` runs it in another: stdin a pipe (not a terminal),
    the working directory `tmp_path` (no stray `.env`), and only the given host settings."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_main(main, args, monkeypatch, capsys, clear=HOST_VARIABLES, env=env or {}, stdin=stdin)

    identity_log = logging.getLogger("azure.identity")
    level = identity_log.level
    yield run
    identity_log.setLevel(level)  # the CLI quiets azure-identity for its run only
