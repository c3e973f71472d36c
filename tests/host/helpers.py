"""Shared test helpers: hosts opened against the emulator, a captured display, ledger reads over MCP."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console

from agent_host.approvers import Approver, ScriptedApprover, parse_script
from agent_host.display import Display
from agent_host.emulator import Emulator
from agent_host.host import Host, mcp_target, open_host
from agent_host.mcp_link import DEMO_LEDGER, McpTarget
from agent_host.settings import DEFAULT_EMULATOR_MODEL, HostSettings

MODEL = DEFAULT_EMULATOR_MODEL
REPO = Path(__file__).resolve().parents[2]


class Utf8Output(io.TextIOWrapper):
    """Output encoded as a UTF-8 terminal's is: text it cannot encode (a lone surrogate) fails the write."""

    def __init__(self) -> None:
        self._bytes = io.BytesIO()
        super().__init__(self._bytes, encoding="utf-8", write_through=True)

    def getvalue(self) -> str:
        return self._bytes.getvalue().decode()


class CapturedDisplay(Display):
    """A plain-text display whose output the test can read, written as to a UTF-8 terminal."""

    def __init__(self) -> None:
        self.buffer = Utf8Output()
        self.error_buffer = Utf8Output()
        super().__init__(
            Console(file=self.buffer, highlight=False, width=200),
            errors=Console(file=self.error_buffer, highlight=False, width=200),
        )

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


class HostileModel:
    """A Responses API whose model answers with `outputs`, one list of output items per request."""

    name = "hostile"

    def __init__(self, *outputs: list[dict[str, Any]]) -> None:
        self._outputs = list(outputs)
        self.requests: list[Mapping[str, Any]] = []

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        output = self._outputs.pop(0) if self._outputs else [message_item("Done.")]
        return {"id": f"resp_{len(self.requests)}", "status": "completed", "output": output}

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await self.create(request)
        for item in response["output"]:
            if item["type"] == "message":
                for part in item["content"]:
                    yield {"type": "response.output_text.delta", "delta": part["text"]}
        yield {"type": "response.completed", "response": response}

    async def aclose(self) -> None:
        pass


def message_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def call_item(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def settings_for(emulator: Emulator, agent: str, **overrides: Any) -> HostSettings:
    """Settings for ``emulator`` that the developer's environment cannot leak into."""
    return HostSettings.for_emulator(
        emulator.endpoint,
        emulator.token,
        **({"agent_name": agent, "tool_timeout": 60.0, "approval_timeout": 50.0} | overrides),
    )


def scripted(*lines: str) -> ScriptedApprover:
    return ScriptedApprover(parse_script("\n".join(lines), "test script"))


NO_DESK = {"BANKGATE_DESK": "false"}
"""The host lab's servers run without the approval desk (the host is what these tests exercise)."""


def ledger_target(settings: HostSettings, tmp_path: Path) -> McpTarget:
    """The settings' MCP server, launched on a fresh demo ledger in ``tmp_path`` and isolated from the
    developer's ``BANKGATE_*`` environment; without the approval desk, so a host that cannot ask
    anyone is denied rather than handed a desk link."""
    return replace(
        mcp_target(settings),
        db_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        server_args=DEMO_LEDGER,
        server_env=NO_DESK,
        server_cwd=str(tmp_path),
    )


@asynccontextmanager
async def host_for(
    emulator: Emulator,
    tmp_path: Path,
    approver: Approver,
    agent: str,
    target: McpTarget | None = None,
    **settings: Any,
) -> AsyncIterator[Host]:
    host_settings = settings_for(emulator, agent, **settings)
    target = target or ledger_target(host_settings, tmp_path)
    async with open_host(host_settings, CapturedDisplay(), approver, target) as host:
        yield host


async def balance(host: Host, account: str) -> Decimal:
    """The balance the MCP server reports, read directly (not through the model)."""
    result = await host.link.call("get_account_balance", {"account_id": account})
    assert result.output["status"] == "executed", result.output
    return Decimal(result.output["balance"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


HTTP_SERVER_LOG = "http-server.log"
"""The file in its `tmp_path` where `http_mcp_server` logs (appended to across restarts)."""


@contextmanager
def http_mcp_server(
    tmp_path: Path, token: str, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bankgate-mcp serve --transport http`` on a loopback port (a free one unless given: the same port
    and ``tmp_path`` is the same server restarted), with one bearer token: alice's, who owns ACC-001 on the
    demo ledger (as in the README's HTTP example). It logs at DEBUG to ``tmp_path / HTTP_SERVER_LOG``."""
    port = port or free_port()
    env = {**os.environ, "BANKGATE_TOKENS": f"alice={token}"}
    command = [sys.executable, "-m", "mcp_server", "serve", "--transport", "http", "--port", str(port)]
    command += ["--db", f"sqlite:///{tmp_path / 'http-ledger.db'}", *DEMO_LEDGER, "--log-level", "DEBUG"]
    with _serving(command, port, env, tmp_path, tmp_path / HTTP_SERVER_LOG) as process:
        yield f"http://127.0.0.1:{port}/mcp", process


@contextmanager
def listing_server(
    port: int, edition: str, ledger: Path | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The stand-in MCP server `tests/host/listing_server.py` on a loopback port, listing `edition`'s tools
    (the same port with another edition: the server restarted as a release with other tools), adding each
    transfer it runs to `ledger` and its stderr (each refusal of `draining`) to `log` when given."""
    command = [sys.executable, "-m", "tests.host.listing_server", str(port), edition]
    command += [] if ledger is None else [str(ledger)]
    with _serving(command, port, dict(os.environ), REPO, log) as process:
        yield f"http://127.0.0.1:{port}/mcp", process


@contextmanager
def _serving(
    command: list[str], port: int, env: dict[str, str], cwd: Path, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running until the block ends, once it answers HTTP on `port`; its stderr appended to `log`."""
    with open(log, "ab") if log is not None else open(os.devnull, "wb") as stderr:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx2.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, f"{command[2]} did not start"
                time.sleep(0.1)
        yield process
    finally:
        process.kill()
        process.wait()
