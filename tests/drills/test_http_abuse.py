"""HTTP abuse beyond tests/server/test_http_security.py (which covers missing and wrong tokens,
foreign Host and Origin, an oversized body and malformed JSON).

Here: another principal's token against a session or an idempotency key, bodies malformed in
less obvious ways, and many slow or stalled clients while a normal client must still be
served promptly.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

from policy.testing import ScriptedResponder, approve, reject, silence
from tests.drills.support import Books, ServerProcess, connect, record, running, scaled
from tests.support import TOKENS, http_status, keyed, outcome

pytestmark = pytest.mark.anyio

JSON = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LEGACY_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def bearer(principal: str) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {TOKENS[principal]}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Books]]:
    tmp = tmp_path_factory.mktemp("abuse")
    books = Books(f"sqlite:///{tmp / 'ledger.db'}")
    server = ServerProcess(books.db_url, tmp, "--max-body-bytes", "4096", approval_timeout=20)
    with running(server):
        yield server, books
        # The stalled clients' abandoned sessions hold a graceful stop for seconds; stopping is not what this
        # file tests (test_crash_recovery.py stops one gracefully), so the server is killed.
        server.kill()
    books.close()


def test_a_session_answers_only_the_token_that_opened_it(served: tuple[ServerProcess, Books]) -> None:
    server, _ = served
    opened = httpx2.post(server.url, json=LEGACY_INIT, headers=bearer("local"), timeout=10)
    assert opened.status_code == 200
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx2.post(server.url, json=initialized, headers=bearer("local") | session).status_code == 202
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    # an elicitation answer the intruder hopes matches a pending question, and a request, and a DELETE
    forged_answer = {"jsonrpc": "2.0", "id": 0, "result": {"action": "accept", "content": {"approve": True}}}

    intruder = bearer("other") | session
    assert httpx2.post(server.url, json=listing, headers=intruder).status_code == 404
    assert httpx2.post(server.url, json=forged_answer, headers=intruder).status_code == 404
    assert httpx2.delete(server.url, headers=intruder).status_code == 404
    assert httpx2.post(server.url, json=listing, headers=bearer("local") | session).status_code == 200


async def test_idempotency_keys_belong_to_their_principal(served: tuple[ServerProcess, Books]) -> None:
    server, books = served
    source, target = books.open_accounts(2, "100.00")
    args = {"from_account": source, "to_account": target, "amount": "30.00", "memo": "abuse-key"}
    alice_approver, bob_approver = ScriptedResponder(approve()), ScriptedResponder(reject())
    async with connect(server.url, alice_approver) as alice:
        original = outcome(await alice.call_tool("transfer_funds", args, meta=keyed("shared-key")))
    async with connect(server.url, bob_approver, principal="other") as bob:
        borrowed = outcome(await bob.call_tool("transfer_funds", args, meta=keyed("shared-key")))
    async with connect(server.url, ScriptedResponder()) as alice:
        replay = outcome(await alice.call_tool("transfer_funds", args, meta=keyed("shared-key")))

    assert original["status"] == "executed" and replay == original
    assert borrowed["status"] == "rejected" and borrowed["approval_ref"] != original["approval_ref"]
    assert "Requested by: other" in bob_approver.questions[0].message  # he was asked, as himself
    assert books.memo_counts("abuse-key") == {"abuse-key": 1} and books.balance(target) == 13000


def raw_exchange(port: int, payload: bytes, timeout: float = 10.0) -> int:
    """Send raw bytes, return the HTTP status of the answer (0 if the server just closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return http_status(sock)


def request_bytes(port: int, body: bytes, extra: str = "", content_type: str = "application/json") -> bytes:
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKENS['local']}\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Type: {content_type}\r\n{extra}"
    )
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


MALFORMED: dict[str, Any] = {
    "deeply-nested": b"[" * 2000 + b"]" * 2000,  # under the body limit, over the parser's recursion limit
    "invalid-utf8": b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}',
    "batch": b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]',
    "params-not-object": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "transfer_funds"}',
    "arguments-a-list": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "transfer_funds",'
    b' "arguments": ["ACC-001", "ACC-002", "5"]}}',
    "not-json-content-type": ("text-plain", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'),
    "huge-header": ("huge-header", b"{}"),
    "null-bytes": b"\x00" * 2048,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_a_4xx_and_nothing_breaks(served: tuple[ServerProcess, Books], case: str) -> None:
    server, _ = served
    body, extra, content_type = MALFORMED[case], "", "application/json"
    if isinstance(body, tuple):
        kind, body = body
        if kind == "text-plain":
            content_type = "text/plain"
        else:
            extra = f"X-Padding: {'p' * 200_000}\r\n"
    status = raw_exchange(server.port, request_bytes(server.port, body, extra, content_type))
    assert 400 <= status < 500 or (case == "huge-header" and status == 0), status
    assert server.get("/healthz").json()["status"] == "ok"
    assert server.process is not None and server.process.poll() is None


def test_a_chunked_body_over_the_limit_is_cut_off(served: tuple[ServerProcess, Books]) -> None:
    server, _ = served

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 512 KiB, no Content-Length
            yield b" " * 8192

    response = httpx2.post(server.url, content=chunks(), headers=bearer("local"), timeout=10)
    assert response.status_code == 413


SLOWLORIS = scaled(40, minimum=8)
SLOW_BODIES = scaled(10, minimum=3)
STALLED = scaled(8, minimum=2)
NORMAL_CALLS = scaled(30, minimum=10)
LATENCY_BOUND = 2.0


async def test_slow_and_stalled_clients_do_not_starve_a_normal_one(served: tuple[ServerProcess, Books]) -> None:
    server, books = served
    source, target = books.open_accounts(2, "100.00")
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def trickle(payload: bytes) -> None:
        """Open a connection and send `payload` one byte at a time, slowly, until told to stop."""
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        except OSError:
            return
        sockets.append(sock)
        for byte in payload:
            if stop.wait(0.25):
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break

    headers_only = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Slow: {'s' * 200}".encode()
    slow_body = request_bytes(server.port, b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}' + b" " * 200)
    threads = [threading.Thread(target=trickle, args=(headers_only,), daemon=True) for _ in range(SLOWLORIS)]
    threads += [threading.Thread(target=trickle, args=(slow_body,), daemon=True) for _ in range(SLOW_BODIES)]
    latencies: list[float] = []
    stalled_results: list[str] = []
    stalled_approvers = [ScriptedResponder(silence(60)) for _ in range(STALLED)]

    async def stalled(n: int) -> None:
        """A legacy client whose approver never answers: it holds a session and a pending question."""
        try:
            async with connect(server.url, stalled_approvers[n], mode="legacy") as client:
                args = {"from_account": source, "to_account": target, "amount": "20.00", "memo": f"stalled-{n}"}
                await client.call_tool("transfer_funds", args)
                stalled_results.append("returned")
        except Exception:
            stalled_results.append("abandoned")

    try:
        for thread in threads:
            thread.start()
        async with anyio.create_task_group() as stalls:
            for n in range(STALLED):
                stalls.start_soon(stalled, n)
            with anyio.fail_after(30):  # every stalled client is sitting on its question
                while sum(len(a.questions) for a in stalled_approvers) < STALLED:
                    await anyio.sleep(0.05)
            assert len(sockets) == SLOWLORIS + SLOW_BODIES, "some slow clients could not even connect"
            with anyio.fail_after(120):
                async with connect(server.url, ScriptedResponder(approve(), approve())) as normal:
                    for n in range(NORMAL_CALLS):
                        started = time.monotonic()
                        if n % 15 == 7:
                            args = {
                                "from_account": source,
                                "to_account": target,
                                "amount": "1.50",
                                "memo": f"normal-{n}",
                            }
                            result = outcome(await normal.call_tool("transfer_funds", args))
                        else:
                            result = outcome(await normal.call_tool("get_account_balance", {"account_id": source}))
                        latencies.append(time.monotonic() - started)
                        assert result["status"] == "executed", result
                    health = server.get("/healthz")
            stalls.cancel_scope.cancel()  # the stalled clients walk away mid-question
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(5)

    assert health.status_code == 200
    assert max(latencies) < LATENCY_BOUND, sorted(latencies)[-5:]
    assert books.memo_counts("stalled-") == {}
    assert set(books.memo_counts("normal-").values()) == {1}
    books.assert_sound()
    record(
        "http-abuse",
        slowloris=SLOWLORIS,
        slow_bodies=SLOW_BODIES,
        stalled_legacy_clients=STALLED,
        normal_calls=len(latencies),
        normal_p50_ms=round(statistics.median(latencies) * 1000, 1),
        normal_max_ms=round(max(latencies) * 1000, 1),
    )
