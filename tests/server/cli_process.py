"""`bankgate-mcp` as a user runs it: a subprocess in an empty directory, with none of the developer's
BANKGATE_* settings and its own user data directory (where the embedded default ledger lives);
or, where a process of its own proves nothing more, the same in this process (`in_process_cli`)."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_server.cli.main import main
from tests.support import run_main


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKGATE_")}
    return {**env, "XDG_DATA_HOME": str(home / "data"), **extra}


def run_cli(home: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_server", *args],
        cwd=home,
        env=clean_env(home, **env),
        stdin=subprocess.DEVNULL,  # stdio serve sees end of input and stops
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def embedded_ledger(home: Path) -> Path:
    """Where the zero-configuration ledger of a process run by `run_cli(home, ...)` lives (platformdirs, Linux)."""
    return home / "data" / "bankgate" / "ledger.db"


McpCli = Callable[..., subprocess.CompletedProcess[str]]


def in_process_cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> McpCli:
    """`run_cli(home, ...)` without its process: `main(argv)` here, in `home`, with `clean_env(home)`'s settings.
    For what ends before anything is served (refusals, admin and audit commands); a subprocess stays for
    serving, for exit codes reaching a shell, and for what must not be imported."""
    monkeypatch.chdir(home)

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        settings = {"XDG_DATA_HOME": str(home / "data"), **env}
        return run_main(main, args, monkeypatch, capsys, clear=("BANKGATE_",), env=settings)

    return run
