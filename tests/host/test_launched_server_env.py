"""The server the host launches over stdio finds the same user data directory as `bankgate-mcp` run by hand."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from agent_host.host import mcp_target
from agent_host.mcp_link import connect
from agent_host.settings import HostSettings
from mcp_server.audit.keys import KEY_FILE_ENV

pytestmark = pytest.mark.anyio


async def test_a_launched_server_keeps_its_ledger_in_the_users_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With XDG_DATA_HOME set, `bankgate-mcp` keeps the embedded ledger and the audit key under it; the server
    the host launched was given only the BANKGATE_* variables and used ~/.local/share instead: another ledger,
    and another audit key, so on a ledger `admin init` had made it refused to start."""
    for name in [name for name in os.environ if name.startswith("BANKGATE_") and name != KEY_FILE_ENV]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("BANKGATE_DESK", "false")
    target = replace(mcp_target(HostSettings.for_emulator("http://127.0.0.1:1", "emu")), server_cwd=str(tmp_path))

    async with connect(target, None) as link:
        read = await link.call("get_account_balance", {"account_id": "ACC-001"})

    assert read.output["status"] == "executed", read
    assert (tmp_path / "data" / "bankgate" / "ledger.db").exists()
    assert not (tmp_path / "home" / ".local").exists()
