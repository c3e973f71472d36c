"""Where the desk runs: beside stdio on a loopback port (address on stderr, stdout left to MCP), and at
/desk beside /mcp on the HTTP transport; `--no-desk` turns it off."""

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from mcp_server.app import build_server, open_state
from mcp_server.desk.guard import HEADERS
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.server import StdioDesk
from mcp_server.http.app import ConfigError, build_http_app
from mcp_server.settings import Settings
from tests.server.cli_process import clean_env, run_cli
from tests.support import static_tokens

_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def _stdio(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--db", f"sqlite:///{tmp_path / 'bank.db'}", "--create", *extra],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_reply(process: subprocess.Popen[str]) -> dict[str, object]:
    """Initialize over stdin; the first line on stdout must be the JSON-RPC answer (nothing else printed there)."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(_INITIALIZE) + "\n")
    process.stdin.flush()
    reply: dict[str, object] = json.loads(process.stdout.readline())
    return reply


def _desk_address(process: subprocess.Popen[str]) -> str:
    """The desk's address as stderr announces it (after the start-up lines: ledger, audit key, policy)."""
    assert process.stderr is not None
    said: list[str] = []
    while len(said) < 12 and not any("approval desk at" in line for line in said):
        said.append(process.stderr.readline())
    return said[-1].split(" at ", 1)[1].strip()


def test_stdio_serves_the_desk_on_loopback_and_keeps_stdout_clean(tmp_path: Path) -> None:
    process = _stdio(tmp_path, "--desk-port", "0")
    try:
        address = _desk_address(process)
        assert address.startswith("http://localhost:") and address.endswith("/desk/")
        page = httpx2.get(address + "signin", timeout=10)
        assert page.status_code == 200 and "Sign in with a passkey" in page.text
        assert _first_reply(process)["id"] == 1
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("ending", ["stdin closed", "SIGINT"])
def test_a_stdio_desk_that_ends_withdraws_its_port(tmp_path: Path, ending: str) -> None:
    """The server exits without returning (`os._exit`), so its desk never stopped: the port it had recorded
    (`presence`) stayed live for a minute after, and `approvers add` sent the enrollment token there, to
    whatever took the port next, with no warning."""
    process = _stdio(tmp_path, "--desk-port", "0")
    try:
        port = _desk_address(process).removeprefix("http://localhost:").split("/", 1)[0]
        assert _first_reply(process)["id"] == 1
        assert process.stdin is not None
        if ending == "SIGINT":
            process.send_signal(signal.SIGINT)
        else:
            process.stdin.close()
        assert process.wait(timeout=30) in (0, 130)
    finally:
        process.kill()
        process.wait()
    invited = run_cli(tmp_path, "approvers", "add", "dora", "--db", f"sqlite:///{tmp_path / 'bank.db'}")
    assert invited.returncode == 0, invited.stderr
    assert f"localhost:{port}/" not in invited.stdout and "No server has served" in invited.stdout, invited.stdout


def test_a_stdio_server_exits_at_once_while_another_process_holds_the_ledger(tmp_path: Path) -> None:
    """Withdrawing the desk's port is a write: with the ledger's write lock held elsewhere it waited out the
    retries' deadline (15 s) before the process could exit; the port goes stale within a minute anyway."""
    process = _stdio(tmp_path, "--desk-port", "0")
    try:
        _desk_address(process)
        assert _first_reply(process)["id"] == 1 and process.stdin is not None
        with closing(sqlite3.connect(tmp_path / "bank.db", isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            began = time.monotonic()
            process.stdin.close()
            assert process.wait(timeout=60) == 0
            took = time.monotonic() - began
    finally:
        process.kill()
        process.wait()
    assert took < 5, f"exit took {took:.1f} s"


class _Phisher(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not bankgate: type your passkey PIN here")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _squatter_on_ipv6_loopback() -> Iterator[int]:
    """Another program answering HTTP on [::1] alone (as a dev server told `localhost` does where that
    name is ::1 first); the port it took, free on 127.0.0.1."""
    server = type("V6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})(("::1", 0), _Phisher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_the_desk_link_never_names_a_port_another_program_holds_on_ipv6_loopback(tmp_path: Path) -> None:
    """The link says `localhost`, which a browser tries as ::1 first; the desk bound 127.0.0.1 alone, so
    a program on [::1] at the desk port got the approver (and their sign-in) behind bankgate's own link."""
    with _squatter_on_ipv6_loopback() as taken:
        process = _stdio(tmp_path, "--desk-port", str(taken))
        try:
            address = _desk_address(process)
            port = int(address.removeprefix("http://localhost:").split("/", 1)[0])
            for host in ("127.0.0.1", "[::1]"):  # whichever `localhost` turns out to be, the desk answers
                page = httpx2.get(f"http://{host}:{port}/desk/signin", headers={"Host": f"localhost:{port}"})
                assert page.status_code == 200 and "Sign in with a passkey" in page.text, (host, port, taken)
        finally:
            process.kill()
            process.wait()


def test_a_taken_desk_port_under_a_fixed_desk_url_is_refused_not_served_elsewhere(tmp_path: Path) -> None:
    """A desk URL set by hand does not follow the port: the desk fell back to a free port while every link
    still named the taken one, and sent approvers (and enrollment tokens) to whatever held it."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        process = _stdio(tmp_path, "--desk-port", str(port), "--desk-url", f"http://localhost:{port}/desk")
        out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == "", err
    assert f"approval desk port {port} is in use" in err and "--desk-url" in err, err
    assert "approval desk at" not in err and not (tmp_path / "bank.db").exists()  # refused before the ledger opened


@pytest.mark.parametrize(
    ("setting", "named"),
    [("desk_url", "BANKGATE_DESK_URL (--desk-url)"), ("public_url", "BANKGATE_PUBLIC_URL")],
)
def test_the_refusal_of_a_taken_port_names_the_setting_that_fixed_the_address(setting: str, named: str) -> None:
    """It named a `--public-url` flag, which does not exist, and called the MCP URL the desk's address."""
    fixed = {"desk_url": "https://bank.example/desk", "public_url": "https://bank.example/mcp"}[setting]
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        settings = Settings(desk_port=port, _env_file=None).model_copy(update={setting: fixed})  # type: ignore[call-arg]
        with pytest.raises(ConfigError) as refused:
            desk_listeners(settings)
    assert f"port {port} is in use" in str(refused.value) and named in str(refused.value)
    assert "--public-url" not in str(refused.value) and "/mcp" not in str(refused.value)


def test_no_desk_serves_none(tmp_path: Path) -> None:
    process = _stdio(tmp_path, "--no-desk")
    try:
        assert _first_reply(process)["id"] == 1
    finally:
        process.kill()
        _, err = process.communicate()
    assert "approval desk" not in err


@pytest.mark.anyio
async def test_http_mounts_the_desk_beside_mcp(tmp_path: Path) -> None:
    """The HTTP app `serve --transport http` runs, in this process (serving it is test_http_security.py's)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for desk, expected in ((True, 200), (False, 404)):
        settings = Settings(db_url=url, transport="http", desk=desk, _env_file=None)  # type: ignore[call-arg]
        state = open_state(settings, create=True)
        app = build_http_app(build_server(state, settings), state, settings, static_tokens())
        origin = f"http://127.0.0.1:{settings.port}"
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=origin) as client:
            page = await client.get("/desk/signin")
            assert page.status_code == expected
            if expected == 200:
                foreign = await client.get("/desk/signin", headers={"Host": "evil.example"})
                assert foreign.status_code == 421, "the same Host allowlist as /mcp"
        state.ledger.db.close()


@pytest.mark.anyio
async def test_the_desk_without_its_slash_is_redirected_with_the_desks_headers(tmp_path: Path) -> None:
    """`/desk` (an address typed by hand) is sent on to `/desk/` by the router around the desk: that answer, and
    any other the desk's server gives outside the desk, carries the same headers as the desk's own pages."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    settings = Settings(db_url=url, transport="http", desk_port=0, _env_file=None)  # type: ignore[call-arg]
    state = open_state(settings, create=True)
    try:
        app = build_http_app(build_server(state, settings), state, settings, static_tokens())
        origin = f"http://127.0.0.1:{settings.port}"
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=origin) as client:
            replies = [await client.get("/desk")]
        stdio = settings.model_copy(update={"transport": "stdio"})
        served = StdioDesk(state.ledger.db, state.sequencer.sequencer.writer, stdio, desk_listeners(stdio))
        address = served.start()
        try:
            async with httpx2.AsyncClient(base_url=address.removesuffix("/desk/")) as client:
                replies += [await client.get("/desk"), await client.get("/")]
        finally:
            served.stop()
    finally:
        state.ledger.db.close()
    assert [(r.status_code, r.headers.get("location")) for r in replies] == [
        (307, "/desk/"),
        (307, "/desk/"),
        (404, None),
    ]
    for reply in replies:
        assert {name: reply.headers.get(name) for name in HEADERS} == HEADERS, reply.url
