"""`SessionQuota` as an ASGI middleware: when a session stops counting (idle, gone, deleted, still streaming)."""

import contextlib
import itertools
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import Message, Receive, Scope, Send

from mcp_server.http.session_quota import SessionQuota
from tests.support import Clock

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
def clock() -> Clock:
    """The quota's clock, stepped by the tests: idleness is exact, whatever pauses the machine takes."""
    return Clock()


@pytest.fixture
async def client(sessions: FakeSessions, clock: Clock) -> Any:
    app = Authenticated(SessionQuota(sessions, limit=2, idle_timeout=IDLE, clock=clock))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def opened(client: httpx2.AsyncClient, principal: str = "alice") -> httpx2.Response:
    return await client.post("/mcp", json={}, headers={"X-Principal": principal})


async def test_a_session_stops_counting_when_deleted_gone_or_idle(
    client: httpx2.AsyncClient, sessions: Any, clock: Clock
) -> None:
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
    clock.now += IDLE / 2
    assert (await client.post("/mcp", json={}, headers=kept_busy)).status_code == 200
    clock.now += IDLE * 2 / 3
    fourth = await opened(client)
    assert fourth.status_code == 200, "the session idle for the SDK's timeout has ended; the busy one has not"
    assert (await opened(client)).status_code == 429


class Opener:
    """An endpoint whose opening POST names session `s0` and then does what the test says: fail, or wait for
    `release` (while requests for `s0` wait for `done`). Requests for `s0` by another subject answer 404, as
    the SDK answers anyone but the credential that opened a session."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.release, self.done = fail, anyio.Event(), anyio.Event()
        self.opened = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        named = headers.get(b"mcp-session-id")
        if named is None:
            session = f"s{self.opened}".encode()
            self.opened += 1
            await send({"type": "http.response.start", "status": 200, "headers": [(b"mcp-session-id", session)]})
            if self.fail:
                raise OSError("the client went away mid-response")
            await self.release.wait()
        elif headers[b"x-subject"] != b"alice":
            await send({"type": "http.response.start", "status": 404, "headers": []})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.done.wait()
        await send({"type": "http.response.body", "body": b"{}"})


async def status_of(app: Any, method: str, subject: str = "alice", session: str | None = None) -> int:
    """Call `app` as principal alice (`subject` may differ, as two OAuth users of one client would)."""
    headers = [(b"x-subject", subject.encode())] + ([(b"mcp-session-id", session.encode())] if session else [])
    token = AccessToken(token="t", client_id="alice", scopes=[], subject=subject)
    scope = {"type": "http", "method": method, "headers": headers, "user": AuthenticatedUser(token)}
    started: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])

    with contextlib.suppress(OSError):
        await app(scope, receive, send)
    return started[0]


async def test_an_opening_request_that_fails_midway_opens_nothing() -> None:
    """The SDK discards the session of an opening request that fails after its response started."""
    quota = SessionQuota(Opener(fail=True), limit=1, idle_timeout=60)
    assert await status_of(quota, "POST") == 200
    assert await status_of(quota, "POST") == 200, "the failed one is not counted"


async def test_another_subjects_404_does_not_end_a_session() -> None:
    endpoint = Opener()
    endpoint.release.set()
    quota = SessionQuota(endpoint, limit=1, idle_timeout=60)
    assert await status_of(quota, "POST") == 200
    assert await status_of(quota, "GET", subject="mallory", session="s0") == 404
    assert await status_of(quota, "POST") == 429, "s0 is still open for its opener"


async def test_a_request_made_while_the_session_opens_keeps_it_counted(clock: Clock) -> None:
    """The response names the session before the opening request ends; a stream opened on it meanwhile holds
    the session open in the SDK however long it idles otherwise."""
    endpoint = Opener()
    quota = SessionQuota(endpoint, limit=1, idle_timeout=IDLE, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(status_of, quota, "POST")
        await anyio.wait_all_tasks_blocked()  # s0 named, its opening request held
        tg.start_soon(status_of, quota, "GET", "alice", "s0")
        await anyio.wait_all_tasks_blocked()  # the stream on s0 open
        endpoint.release.set()
        await anyio.wait_all_tasks_blocked()  # the opening request over
        clock.now += IDLE * 1.5
        assert await status_of(quota, "POST") == 429, "s0 is streaming"
        endpoint.done.set()


async def test_sessions_of_principals_that_never_return_are_forgotten(sessions: FakeSessions, clock: Clock) -> None:
    """Each of 2,000 principals (say, JWT subjects) opens a session and never sends another request: the SDK ends
    them for idleness, and the quota's count of them must go too, not wait for each principal to come back."""
    quota = SessionQuota(sessions, limit=2, idle_timeout=IDLE, clock=clock)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=Authenticated(quota)), base_url="http://t") as c:
        for n in range(2000):
            assert (await opened(c, f"user-{n}")).status_code == 200
        clock.now += IDLE * 1.2
        assert (await opened(c, "latecomer")).status_code == 200
    assert list(quota._open) == ["latecomer"], "only the session not idle yet is still counted"


async def test_a_repeated_header_is_read_by_its_first_value_as_the_sdk_routes_it(client: httpx2.AsyncClient) -> None:
    """The SDK routes on a header's first value; so does the quota, whatever the later ones say."""
    for _ in range(2):
        assert (await opened(client)).status_code == 200
    modern_first = [("X-Principal", "alice"), ("MCP-Protocol-Version", "2026-07-28")]
    handshake = ("MCP-Protocol-Version", "2025-11-25")
    assert (await client.post("/mcp", json={}, headers=[*modern_first, handshake])).status_code == 200
    assert (await client.post("/mcp", json={}, headers=[handshake, *modern_first])).status_code == 429
