"""The offline lab behind `demo` and `serve --demo`: the emulator and an MCP server on a temporary seeded ledger.

Only these commands start the emulator; the host library never imports it (a test walks the
imports), so a real deployment carries no emulator code on its path.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent_host.emulator import running_emulator
from agent_host.mcp_link import DEMO_LEDGER, McpTarget
from agent_host.settings import HostSettings


@asynccontextmanager
async def offline_lab(prefix: str, agent: str, **settings: Any) -> AsyncIterator[tuple[HostSettings, McpTarget]]:
    """Settings for a fresh emulator and the MCP server to launch on a demo ledger; both gone on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        async with running_emulator() as emulator:
            host_settings = HostSettings.for_emulator(emulator.endpoint, emulator.token, agent_name=agent, **settings)
            ledger = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            yield host_settings, McpTarget(db_url=ledger, server_args=DEMO_LEDGER, server_env={}, server_cwd=tmp)
