"""Benchmarks sign with a key of their own, never the operator's (`audit.key` in the user data dir)."""

from pathlib import Path

import httpx2
import pytest

from bench.servers import audit_key, http_server, ours_args
from bench.shapes import capture
from mcp_server.audit.keys import KEY_FILE_ENV


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and data dir, and no key file named in the environment: where the default key would go."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv(KEY_FILE_ENV)
    return home


def user_keys(home: Path) -> list[Path]:
    return list(home.rglob("audit.key"))


def test_an_in_process_bench_server_leaves_the_user_key_alone(home: Path) -> None:
    capture()
    assert user_keys(home) == []


def test_a_bench_subprocess_server_signs_with_the_key_in_its_workdir(home: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with http_server(ours_args(url, tmp_path, "--create", "--seed-demo")) as mcp_url:
        httpx2.post(mcp_url, timeout=5)
    assert user_keys(home) == []
    assert audit_key(tmp_path).exists()
