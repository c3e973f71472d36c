"""Who may drive the web front end: Host and Origin checks, the token off loopback, the CLI's refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from agent_host.emulator import Emulator
from agent_host.web.app import MAX_BODY
from tests.host.conftest import Cli

from .helpers import run, run_input, tool_results, types, web_for

pytestmark = pytest.mark.anyio
ASK = run_input("t", "What is the balance of ACC-001?")


async def test_host_origin_and_token_checks(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with web_for(emulator, tmp_path, agent_name, token="s3cret") as web, httpx2.AsyncClient(timeout=60) as c:
        port = web.url.rsplit(":", 1)[1]
        rebound = await c.post(f"{web.url}/agent", json=ASK, headers={"Host": f"bank.evil.example:{port}"})
        assert rebound.status_code == 403 and "Host" in rebound.text
        foreign = await c.post(
            f"{web.url}/agent", json=ASK, headers={"Origin": "http://evil.example", "Authorization": "Bearer s3cret"}
        )
        assert foreign.status_code == 403 and "origin" in foreign.text
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            refused = await c.post(f"{web.url}/agent", json=ASK, headers=headers)
            assert refused.status_code == 401 and "s3cret" not in refused.text
        assert (await c.get(f"{web.url}/agent/capabilities")).status_code == 401
        assert (await c.get(f"{web.url}/")).status_code == 200, "the page itself holds nothing"
        assert (await c.get(f"{web.url}/static/chat.js")).status_code == 200

        same_origin = {"Origin": web.url, "Authorization": "Bearer s3cret"}
        assert types(await run(c, web.url, ASK, **same_origin))[-1] == "RUN_FINISHED"
        localhost = web.url.replace("127.0.0.1", "localhost")
        assert (await c.get(f"{localhost}/agent/capabilities", headers=same_origin | {"Origin": localhost})).is_success


def test_serve_refuses_an_outside_address_without_a_token(cli: Cli) -> None:
    result = cli("serve", "--demo", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "Refusing to serve the web front end on 0.0.0.0 without a token." in result.stderr + result.stdout
    result = cli("serve", "--demo", "--approver", "deny")
    assert result.returncode == 2 and "leave out --approver" in result.stderr + result.stdout
    assert "--approver" not in cli("serve", "--help").stdout, "serve's help offered an option it refuses"
    result = cli("serve", "--demo", "--approval-window", "400")
    assert result.returncode == 2 and "must be shorter than the tool timeout" in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["https://bank.example", "bank.example:443", "bank.example/agent", "two words"])
def test_serve_refuses_an_allowed_host_no_request_could_name(cli: Cli, name: str) -> None:
    """The Host check compares names only: a URL, a port or a path given here would match no request, and
    every request from that name would be refused 403 with nothing at start to say why."""
    result = cli("serve", "--demo", "--allowed-host", name)
    assert result.returncode == 2
    assert f"--allowed-host {name!r} is not a host name" in result.stderr + result.stdout


def test_serve_on_a_taken_port_says_so_and_exits_before_starting_anything(tmp_path: Path) -> None:
    """uvicorn's bind failure (its own ERROR line, then `sys.exit` inside the event loop) left the process hung at
    exit, waiting for a worker thread, after the demo lab had started for nothing."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("BANKGATE_", "AZURE_"))}
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "agent_host", "serve", "--demo", "--port", str(port)],
            cwd=tmp_path,
            env=clean | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 2, ran
    assert f"cannot listen on 127.0.0.1:{port}" in ran.stderr and "--port 0 picks a free one" in ran.stderr, ran.stderr
    assert "Demo:" not in ran.stdout + ran.stderr and "ERROR" not in ran.stderr, "refused before the lab started"


def test_serve_demo_needs_no_configuration(tmp_path: Path) -> None:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("BANKGATE_", "AZURE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_host", "serve", "--demo", "--port", "0"],
        cwd=tmp_path,
        env=clean | {"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"Web chat: (http://127\.0\.0\.1:\d+)/", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "serve --demo did not print its URL"
        page = httpx2.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and "/static/chat.js" in page.text
        events = anyio.run(_ask, url, "What is the balance of ACC-001?")  # the demo ledger exists and is seeded
        [result] = tool_results(events)
        assert result["status"] == "executed" and result["balance"] == "5000.00", result
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) in (0, 130), "Ctrl-C stops the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _ask(url: str, text: str) -> list[Any]:
    async with httpx2.AsyncClient(timeout=120) as client:
        return await run(client, url, run_input("t-demo", text))


async def _raw(url: str, head: str, body: bytes) -> bytes:
    """Send a request's head and the start of its body, then read what comes back within 10 s."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(head.encode() + body)
        with anyio.fail_after(10):
            return await stream.receive()


async def test_an_oversized_or_deep_body_is_refused_without_reading_it_all(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        start = "POST /agent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        declared = await _raw(web.url, f"{start}Content-Length: {MAX_BODY * 1000}\r\n\r\n", b"{")
        assert declared.startswith(b"HTTP/1.1 413"), declared[:80]
        chunk = b"x" * 65536
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 2))
        streamed = await _raw(web.url, f"{start}Transfer-Encoding: chunked\r\n\r\n", chunks)  # no end in sight
        assert streamed.startswith(b"HTTP/1.1 413"), streamed[:80]

        bare = {key: value for key, value in ASK.items() if key != "forwardedProps"}
        nested = json.dumps(bare)[:-1] + ', "forwardedProps": ' + "[" * 100_000 + "]" * 100_000 + "}"
        refused = await client.post(f"{web.url}/agent", content=nested, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and "recursion" not in refused.text, refused.text[:200]


async def test_every_response_keeps_out_of_frames_sniffing_and_referrers(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """Not only the page at `/`: the same page in the static folder, the script, the API, a 404 and the guard's
    own refusals (a page framing any of them, or reading a script as another type, has nothing to work with)."""
    async with web_for(emulator, tmp_path, agent_name, token="s3cret") as web, httpx2.AsyncClient(timeout=60) as c:
        bearer = {"Authorization": "Bearer s3cret"}
        replies = [
            await c.get(f"{web.url}/"),
            await c.get(f"{web.url}/static/index.html"),
            await c.get(f"{web.url}/static/chat.js"),
            await c.get(f"{web.url}/static/missing.js"),
            await c.get(f"{web.url}/agent/capabilities", headers=bearer),
            await c.get(f"{web.url}/agent/capabilities"),
            await c.post(f"{web.url}/agent", json=ASK, headers=bearer | {"Origin": "http://evil.example"}),
        ]
        assert [r.status_code for r in replies] == [200, 200, 200, 404, 200, 401, 403]
        for reply in replies:
            assert reply.headers.get("x-frame-options") == "DENY", reply.url
            assert "frame-ancestors 'none'" in reply.headers.get("content-security-policy", ""), reply.url
            assert reply.headers.get("x-content-type-options") == "nosniff", reply.url
            assert reply.headers.get("referrer-policy") == "same-origin", reply.url
