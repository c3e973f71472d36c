"""Streamable HTTP access beyond test_http_security.py and drills/test_http_abuse.py: another principal's
session id on the event stream, on a second initialize or answering its approval question, and requests that
name no Host at all."""

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.server.harness import Harness, HttpServer
from tests.server.test_http_security import ACCEPT, INITIALIZE, bearer
from tests.support import http_status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('access') / 'ledger.db'}"
    Harness("setup", url)
    running = HttpServer(url)
    yield running
    running.stop()


def opened_session(server: HttpServer, principal: str = "local") -> dict[str, str]:
    """A session of `principal`, initialized: the headers that continue it."""
    auth = {**ACCEPT, "Authorization": bearer(principal)}
    opened = httpx2.post(server.url, json=INITIALIZE, headers=auth, timeout=10)
    assert opened.status_code == 200, opened.text
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = httpx2.post(server.url, json=initialized, headers={**auth, **session})
    assert done.status_code == 202
    return session


def test_another_principal_cannot_listen_on_a_session(server: HttpServer) -> None:
    """The GET stream carries the server's requests to the client (its approval questions among them)."""
    session = opened_session(server)
    intruder = {"Accept": "text/event-stream", "Authorization": bearer("other"), **session}
    with httpx2.stream("GET", server.url, headers=intruder, timeout=10) as listening:
        assert listening.status_code == 404


def test_another_principal_cannot_initialize_over_a_session(server: HttpServer) -> None:
    session = opened_session(server)
    again = httpx2.post(server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": bearer("other"), **session})
    assert again.status_code == 404
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    owner = httpx2.post(server.url, json=listing, headers={**ACCEPT, "Authorization": bearer(), **session})
    assert owner.status_code == 200, "the session is still its owner's"


@pytest.mark.parametrize("path", ["/mcp", "/desk/", "/desk/signin/options"])
def test_a_request_naming_no_host_is_refused(server: HttpServer, path: str) -> None:
    """HTTP/1.0 lets a client leave Host out; the allowlist must not read that as allowed."""
    method = "POST" if path != "/desk/" else "GET"
    body = b"{}"
    request = (
        f"{method} {path} HTTP/1.0\r\nAuthorization: {bearer()}\r\nAccept: application/json, text/event-stream\r\n"
        f"Content-Type: application/json\r\nOrigin: http://localhost:{server.port}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 421), reply[:200]


def test_one_principal_cannot_take_every_session(tmp_path: Path) -> None:
    """The SDK caps open sessions for everyone at once: one principal opening sessions until the cap would lock
    every other principal out (for the sessions' 30 idle minutes). Each principal has a cap of its own."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    server = HttpServer(url, env={"BANKGATE_MAX_SESSIONS_PER_PRINCIPAL": "2"})
    try:
        first, _ = opened_session(server), opened_session(server)
        refused = _initialize(server, "local")
        assert refused.status_code == 429, refused.text
        assert "2 open sessions" in refused.json()["error"]["message"]
        assert "mcp-session-id" not in refused.headers

        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        modern = {**ACCEPT, "Authorization": bearer(), "Mcp-Protocol-Version": "2026-07-28"}
        stateless = httpx2.post(server.url, json=listing, headers=modern, timeout=10)
        assert stateless.status_code != 429, "a 2026-07-28 request opens no session: never refused for the cap"
        opened_session(server, "other")

        ended = httpx2.delete(server.url, headers={"Authorization": bearer(), **first}, timeout=10)
        assert ended.status_code in (200, 204), ended.text
        opened_session(server)

        with ThreadPoolExecutor(8) as pool:  # opening requests at once are counted as they are admitted
            statuses = list(pool.map(lambda _: _initialize(server, "alice").status_code, range(8)))
        assert sorted(statuses) == [200, 200] + [429] * 6, statuses
    finally:
        server.stop()


def _initialize(server: HttpServer, principal: str) -> httpx2.Response:
    return httpx2.post(server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": bearer(principal)}, timeout=30)


def test_no_request_lets_a_principal_past_its_session_cap(tmp_path: Path) -> None:
    """The SDK routes on the first `Mcp-Protocol-Version` and `Mcp-Session-Id` header and answers a 2026-07-28
    request for an unknown method 404 whatever session it names: none of that may un-count an open session or
    open one uncounted."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    server = HttpServer(url, env={"BANKGATE_MAX_SESSIONS_PER_PRINCIPAL": "2"})
    auth = {**ACCEPT, "Authorization": bearer()}
    try:
        first, second = opened_session(server), opened_session(server)
        envelope = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        unknown = {"jsonrpc": "2.0", "id": 3, "method": "no/such/method", "params": {"_meta": envelope}}
        modern = {
            **auth,
            "Mcp-Session-Id": first["Mcp-Session-Id"],
            "Mcp-Protocol-Version": "2026-07-28",
            "Mcp-Method": "no/such/method",
        }
        assert httpx2.post(server.url, json=unknown, headers=modern, timeout=10).status_code == 404
        assert _initialize(server, "local").status_code == 429, "the first session is still open"
        twice = [*auth.items(), ("Mcp-Session-Id", "not-a-session"), ("Mcp-Session-Id", second["Mcp-Session-Id"])]
        assert httpx2.post(server.url, json=unknown, headers=twice, timeout=10).status_code == 404
        assert _initialize(server, "local").status_code == 429, "both sessions are still open"

        both = [*auth.items(), ("Mcp-Protocol-Version", "2025-11-25"), ("Mcp-Protocol-Version", "2026-07-28")]
        mixed = httpx2.post(server.url, json=INITIALIZE, headers=both, timeout=10)
        assert mixed.status_code == 429 or "mcp-session-id" not in mixed.headers, "opened a third session"
    finally:
        server.stop()


def test_another_principal_cannot_answer_a_question_asked_on_a_session(tmp_path: Path) -> None:
    """A 2025-11-25 approval question goes out on the session's stream and its answer comes back as a POST naming
    the session: another principal naming that session and the question's id answers nothing, and the question
    stays its owner's to answer."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    bank = Harness("setup", url)
    args = {"from_account": bank.open_account("100"), "to_account": bank.open_account("0"), "amount": "25"}
    server = HttpServer(url)
    try:
        hello = {"protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"}}
        asks = {**INITIALIZE, "params": {**hello, "capabilities": {"elicitation": {"form": {}}}}}
        owner = {**ACCEPT, "Authorization": bearer()}
        opened = httpx2.post(server.url, json=asks, headers=owner, timeout=10)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert httpx2.post(server.url, json=initialized, headers={**owner, **session}).status_code == 202
        transfer = {"name": "transfer_funds", "arguments": args}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": transfer}
        with httpx2.stream("POST", server.url, json=call, headers={**owner, **session}, timeout=30) as stream:
            messages = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:"))
            question = next(m for m in messages if m.get("method") == "elicitation/create")
            yes = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"approve": True}}}
            intruder = {**ACCEPT, "Authorization": bearer("other"), **session}
            assert httpx2.post(server.url, json=yes, headers=intruder, timeout=10).status_code == 404
            no = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "decline"}}
            assert httpx2.post(server.url, json=no, headers={**owner, **session}, timeout=10).status_code == 202
            result = next(m for m in messages if m.get("id") == 2)
        assert result["result"]["structuredContent"]["status"] == "rejected"
        assert bank.balance(args["to_account"]) == 0
    finally:
        server.stop()


def test_a_connection_that_never_completes_a_request_head_is_closed(tmp_path: Path) -> None:
    """uvicorn waits for a request's head without end: anyone able to connect (no token needed) could hold
    connections open, idle or trickling a header, until the process ran out of file descriptors and no client was
    served. Each connection has BANKGATE_HEADER_TIMEOUT seconds to send a request head, again after each response;
    a request whose head has arrived (a listening stream, a long call) is not cut."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    server = HttpServer(url, env={"BANKGATE_HEADER_TIMEOUT": "1"})
    try:
        session = opened_session(server)
        listening = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: {bearer()}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in session.items()) + "Accept: text/event-stream\r\n\r\n"
        listening.sendall(head.encode())
        assert http_status(listening) == 200
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        trickling = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        trickling.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
        kept_alive = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept_alive.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert http_status(kept_alive) == 200
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request's head, never finished
        for connection in (idle, trickling, kept_alive):
            with connection:
                while connection.recv(4096):  # what is left of an answer, then the end: closed by the server
                    pass
        listening.settimeout(1.5)  # past the header timeout: the stream whose head arrived is still open
        with listening, pytest.raises(TimeoutError):
            listening.recv(4096)
    finally:
        server.stop()
