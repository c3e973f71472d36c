"""``ask`` and ``chat`` show a spinner on a terminal while they connect and while Foundry thinks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from agent_host.display import Display
from agent_host.emulator import Emulator
from agent_host.host import open_host
from agent_host.waiting import THINKING, BusyTransport

from .helpers import CapturedDisplay, ledger_target, scripted, settings_for


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_a_terminal_sees_a_spinner_while_the_host_waits(
    emulator: Emulator, tmp_path: Path, agent_name: str, stream: bool
) -> None:
    errors = io.StringIO()
    display = Display(
        Console(file=io.StringIO(), width=200), errors=Console(file=errors, force_terminal=True, width=200)
    )
    settings = settings_for(emulator, agent_name, stream=stream)
    async with open_host(settings, display, scripted(), ledger_target(settings, tmp_path)) as host:
        assert "Starting the MCP server and connecting to the Foundry project" in errors.getvalue()
        assert isinstance(host.transport, BusyTransport)
        turn = await host.conversation().send("What is the balance of ACC-001?")

    assert "ACC-001 has a balance of $5,000.00." in turn.text
    assert THINKING in errors.getvalue()


@pytest.mark.anyio
async def test_without_a_terminal_there_is_no_spinner(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    display = CapturedDisplay()
    settings = settings_for(emulator, agent_name)
    async with open_host(settings, display, scripted(), ledger_target(settings, tmp_path)) as host:
        assert not isinstance(host.transport, BusyTransport)
        await host.conversation().send("What is the balance of ACC-001?")

    assert display.error_buffer.getvalue() == ""
