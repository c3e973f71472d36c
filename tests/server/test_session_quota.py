"""`SessionQuota` as an ASGI middleware: when a session stops counting (idle, gone, deleted, still streaming)."""

import itertools
import time
from typing import Any

import httpx2
import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import Receive, Scope, Send

from mcp_server.http.session_quota import SessionQuota

pytestmark = pytest.mark.anyio
IDLE = 0.6


class FakeSessions:
    """Stands in for the SDK's endpoint: an opening POST gets a new session id; `gone` ids answer 404."""

    def __init__(self) -> None:
        self.ids = (f"s{n}" for n in itertools.count())
        self.gone: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        named = dict(scope["headers"]).get(b"mcp-session-id")
        status, headers = 200, [(b"content-type", b"application/json")]
        if named is None:
            headers.append((b"mcp-session-id", next(self.ids).encode()))
        elif named.decode() in self.gone:
            status = 404
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


class Authenticated:
    """What bearer auth leaves in the scope: the principal named by the `X-Principal` header here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = dict(scope["headers"])[b"x-principal"].decode()
        token = AccessToken(token="t", client_id=principal, scopes=[], subject=principal)
        await self.app({**scope, "user": AuthenticatedUser(token)}, receive, send)


@pytest.fixture
def sessions() -> FakeSessions:
    return FakeSessions()


@pytest.fixture
async def client(sessions: FakeSessions) -> Any:
    app = Authenticated(SessionQuota(sessions, limit=2, idle_timeout=IDLE))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def opened(client: httpx2.AsyncClient, principal: str = "alice") -> httpx2.Response:
    return await client.post("/mcp", json={}, headers={"X-Principal": principal})


async def test_a_session_stops_counting_when_deleted_gone_or_idle(client: httpx2.AsyncClient, sessions: Any) -> None:
    first, second = (await opened(client)).headers["mcp-session-id"], (await opened(client)).headers["mcp-session-id"]
    assert (await opened(client)).status_code == 429
    assert (await opened(client, "bob")).status_code == 200, "another principal has a cap of its own"
    modern = {"X-Principal": "alice", "MCP-Protocol-Version": "2026-07-28"}
    assert (await client.post("/mcp", json={}, headers=modern)).status_code == 200, "opens no session"

    deleted = await client.delete("/mcp", headers={"X-Principal": "alice", "mcp-session-id": first})
    assert deleted.status_code == 200
    third = (await opened(client)).headers["mcp-session-id"]
    assert (await opened(client)).status_code == 429

    sessions.gone.add(second)
    assert (await client.get("/mcp", headers={"X-Principal": "alice", "mcp-session-id": second})).status_code == 404
    assert (await opened(client)).status_code == 200, "a session the SDK no longer knows is not counted"
    assert (await opened(client)).status_code == 429

    kept_busy = {"X-Principal": "alice", "mcp-session-id": third}
    time.sleep(IDLE / 2)
    assert (await client.post("/mcp", json={}, headers=kept_busy)).status_code == 200
    time.sleep(IDLE * 2 / 3)
    fourth = await opened(client)
    assert fourth.status_code == 200, "the session idle for the SDK's timeout has ended; the busy one has not"
    assert (await opened(client)).status_code == 429
