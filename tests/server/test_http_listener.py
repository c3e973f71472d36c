"""What `serve --transport http` hands uvicorn: a socket whose connections run without Nagle, and an
app that enters the MCP lifespan (and starts the audit sequencer) once per process, not per request.

A socket labelled protocol 0 (as `socket.create_server` makes it) left Nagle on: every kept-alive
request then waited ~40 ms for the client's delayed ACK (issue #16). These tests assert the
socket option and the lifespan count, not a latency.
"""

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from mcp import Client

import mcp_server.serve
from mcp_server.audit.sequencer import Background
from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.server import StdioDesk
from mcp_server.serve import serve
from mcp_server.settings import Settings
from mcp_server.storage.database import Database
from tests.support import free_port

KEYS = "k" * 32
DEMO_BALANCE = "$5,000.00"
RUN = uvicorn.Server.run
"""uvicorn's own `run`, kept before `served` replaces it."""


@dataclass
class Served:
    """What `serve` passed to `uvicorn.Server.run`, captured instead of run."""

    server: uvicorn.Server
    listener: socket.socket
    url: str


def _settings(tmp_path: Path, *extra: str) -> Settings:
    options = {
        "db_url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "create": True,
        "seed_demo": True,
        "transport": "http",
        "port": free_port(),
        "no_auth": True,
        "desk": False,
        "log_level": "WARNING",
        "request_state_keys": KEYS,
    }
    return Settings(_env_file=None, **options, **dict.fromkeys(extra, True))  # type: ignore[arg-type,call-arg]


@contextmanager
def served(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Served]:
    """Run `serve(settings)` up to uvicorn, keep what it hands over, close the socket after."""
    handed: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: handed.append((server, sockets)))
    monkeypatch.setattr(mcp_server.serve, "configure_logging", lambda *_: None)  # pytest owns the root logger
    monkeypatch.setattr(mcp_server.serve, "_exit_served", lambda *_: None)  # the process it would end is pytest's
    serve(settings)
    [(server, [listener])] = handed
    try:
        yield Served(server, listener, f"http://127.0.0.1:{settings.port}/mcp")
    finally:
        listener.close()


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted the way uvicorn accepts (`loop.create_server(sock=...)`)."""

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(accept_one())


def test_http_connections_are_served_without_nagle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with served(monkeypatch, _settings(tmp_path)) as http:
        assert _accepted_nodelay(http.listener) == 1


def test_the_desk_beside_stdio_is_served_without_nagle(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"transport": "stdio", "desk": True, "desk_port": 0})
    desk = StdioDesk(Database.open(settings.db_url, create=True), AuditWriter(), settings, desk_listeners(settings))
    for listener in desk.sockets:  # 127.0.0.1, and ::1 where the host has it
        with listener:
            assert _accepted_nodelay(listener) == 1


@pytest.mark.parametrize("extra", [(), ("stateless",)], ids=["stateful", "stateless"])
def test_many_http_requests_enter_the_lifespan_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    """The sequencer (and with it the lifespan that holds it) starts once for the process and stops at
    shutdown, whatever the revision and mode of the requests in between."""
    entries: list[str] = []
    running = Background.running

    @contextmanager
    def counted(self: Background) -> Iterator[None]:
        entries.append("enter")
        with running(self):
            yield
        entries.append("exit")

    monkeypatch.setattr(Background, "running", counted)
    calls = 5
    with served(monkeypatch, _settings(tmp_path, *extra)) as http:
        thread = threading.Thread(target=RUN, args=(http.server, [http.listener]), daemon=True)
        thread.start()
        try:
            balances = asyncio.run(_balances(http.url, calls))
            during = list(entries)
        finally:
            http.server.should_exit = True
            thread.join(30)

    assert balances == [DEMO_BALANCE] * calls * 2
    assert during == ["enter"]
    assert entries == ["enter", "exit"]


async def _balances(url: str, calls: int) -> list[str]:
    """`calls` balance reads on 2026-07-28, then as many on 2025-11-25."""
    formatted = []
    for mode in ("auto", "legacy"):
        async with Client(url, mode=mode) as client:
            for _ in range(calls):
                result = await client.call_tool("get_account_balance", {"account_id": "ACC-001"})
                assert result.structured_content is not None, result
                formatted.append(result.structured_content["formatted"])
    return formatted


def test_the_server_logs_each_policy_warning_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What `policy check` warns of, `serve` logs before it serves: a policy deployed unchecked still says."""
    policy = tmp_path / "memo.toml"
    policy.write_text(
        "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nname = 'rent'\n"
        "when = \"args.memo == 'rent'\"\noutcome = 'require_approval'\nreason = 'r'\n",
        encoding="utf-8",
    )
    settings = _settings(tmp_path).model_copy(update={"policy": policy})
    with caplog.at_level("WARNING", logger="bankgate"), served(monkeypatch, settings):
        pass
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("policy: ")]
    assert logged.startswith(f"policy: {policy}:5: tools.transfer_funds.rules[0].when: reads args.memo")
