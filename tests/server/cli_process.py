"""`bankgate-mcp` as a user runs it: a subprocess in an empty directory, with none of the developer's
BANKGATE_* settings and its own user data directory (where the embedded default ledger lives)."""

import os
import subprocess
import sys
from pathlib import Path


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
