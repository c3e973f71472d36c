"""The Foundry side against the emulator: agent versions, pins, throttling, refused tokens, outages."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from azure.ai.projects.aio import AIProjectClient
from pydantic import SecretStr

from agent_host.conversation import ResponsesTransport
from agent_host.emulator import Emulator, FaultConfig
from agent_host.errors import (
    AuthenticationFailed,
    ConfigurationError,
    NotFound,
    RateLimited,
    ServiceFailed,
    ServiceSlow,
    ServiceUnreachable,
)
from agent_host.foundry.access import ProjectAccess, project_access
from agent_host.foundry.agents import INSTRUCTIONS, AgentChoice, choose_agent, create_version
from agent_host.foundry.dev_token import AsyncDevTokenCredential
from agent_host.foundry.response_reader import assemble_stream, reply_from_response
from agent_host.foundry.retries import TIMEOUT
from agent_host.foundry.transport_rest import RestTransport
from agent_host.foundry.transport_sdk import SdkTransport
from agent_host.settings import Transport

from .helpers import MODEL, balance, free_port, host_for, message_item, scripted, settings_for

TOOL = {
    "type": "function",
    "name": "get_account_balance",
    "description": "Balance of an account.",
    "parameters": {
        "type": "object",
        "properties": {"account_id": {"type": "string"}},
        "required": ["account_id"],
        "additionalProperties": False,
    },
    "strict": True,
}
BOTH = pytest.mark.parametrize("kind", ["sdk", "rest"])


@asynccontextmanager
async def project_for(endpoint: str, token: str) -> AsyncIterator[tuple[ProjectAccess, AIProjectClient]]:
    access = ProjectAccess(endpoint, AsyncDevTokenCredential(token), True)
    async with AIProjectClient(
        endpoint=endpoint,
        credential=access.credential,
        authentication_policy=access.policy(),
        **access.client_options(),
    ) as project:
        yield access, project
    await access.aclose()


@asynccontextmanager
async def transport_for(
    kind: Transport,
    access: ProjectAccess,
    project: AIProjectClient,
    max_retries: int = 3,
    timeout: httpx2.Timeout = TIMEOUT,
) -> AsyncIterator[ResponsesTransport]:
    transport: ResponsesTransport = (
        SdkTransport(project, access, max_retries, timeout=timeout)
        if kind == "sdk"
        else RestTransport(access, max_retries, timeout=timeout)
    )
    try:
        yield transport
    finally:
        await transport.aclose()


async def _agent(project: AIProjectClient, access: ProjectAccess, name: str, **options: Any) -> AgentChoice:
    return await choose_agent(project, access, name, model=MODEL, tools=[TOOL], **options)


def _ask(agent: AgentChoice, text: str = "What is the balance of ACC-001?") -> dict[str, Any]:
    return {"input": text, "agent_reference": agent.reference()}


@pytest.mark.anyio
async def test_agent_versions_are_reused_pinned_and_followed(emulator: Emulator, agent_name: str) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        created = await _agent(project, access, agent_name)
        reused = await _agent(project, access, agent_name)
        changed = await choose_agent(project, access, agent_name, model="other-model", tools=[TOOL])
        pinned = await _agent(project, access, agent_name, version="1")
        latest = await _agent(project, access, agent_name, existing=True)

    assert (created.version, created.created) == ("1", True)
    assert (reused.version, reused.created) == ("1", False), "an identical definition creates no version"
    assert (changed.version, changed.created) == ("2", True)
    assert pinned.reference() == {"type": "agent_reference", "name": agent_name, "version": "1"}
    assert latest.reference() == {"type": "agent_reference", "name": agent_name} and latest.version == "2"


@pytest.mark.anyio
async def test_unknown_agents_and_versions(emulator: Emulator, agent_name: str) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        await _agent(project, access, agent_name)
        with pytest.raises(NotFound, match=f"Agent '{agent_name}' has no version 9") as version:
            await _agent(project, access, agent_name, version="9")
        with pytest.raises(NotFound, match="Agent 'no-such-agent' does not exist") as agent:
            await _agent(project, access, "no-such-agent", existing=True)
        with pytest.raises(ConfigurationError, match="CHAT_MODEL is not set"):
            await choose_agent(project, access, agent_name, model=None, tools=[TOOL])

    assert "Its versions are 1." in str(version.value)
    assert "--existing-agent" in str(agent.value)


@pytest.mark.anyio
async def test_the_pinned_version_answers(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with host_for(emulator, tmp_path, scripted("approve"), agent_name) as host:
        balance_only = [tool for tool in host.toolbox.definitions() if tool["name"] == "get_account_balance"]
        version = await create_version(
            host.project,
            host.access,
            agent_name,
            model=MODEL,
            instructions=INSTRUCTIONS + "\nReply prefix: [v2]",
            tools=balance_only,
        )
        latest = await host.conversation(AgentChoice(agent_name, version, pinned=False)).send(
            "Transfer $40 from ACC-001 to ACC-002."
        )
        pinned = await host.conversation(AgentChoice(agent_name, "1", pinned=True)).send(
            "Transfer $40 from ACC-001 to ACC-002."
        )

        assert version == "2"
        assert latest.text.startswith("[v2] This agent version has no transfer_funds tool") and not latest.results
        assert [call.name for call, _ in pinned.results] == ["transfer_funds"] and not pinned.text.startswith("[v2]")
        assert await balance(host, "ACC-002") == Decimal("290.00")


@pytest.mark.anyio
@BOTH
async def test_throttling_is_retried(emulator: Emulator, agent_name: str, kind: Transport) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        emulator.faults.arm(FaultConfig(rate_limited=2, retry_after=0.05, target="responses"))
        emulator.faults.reset_stats()
        async with transport_for(kind, access, project) as transport:
            reply = reply_from_response(await transport.create(_ask(agent)))

    assert [call.name for call in reply.calls] == ["get_account_balance"]
    stats = emulator.faults.stats
    assert (stats.rate_limited, stats.served) == (2, 1), "two 429s, then the response"


@pytest.mark.anyio
@BOTH
async def test_throttling_that_persists_is_reported(emulator: Emulator, agent_name: str, kind: Transport) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        emulator.faults.arm(FaultConfig(rate_limited=5, retry_after=0.05, target="responses"))
        async with transport_for(kind, access, project, max_retries=1) as transport:
            with pytest.raises(RateLimited, match=r"HTTP 429 rate_limit_exceeded.*still throttled after 1 retries"):
                await transport.create(_ask(agent))

    assert emulator.faults.stats.rate_limited == 2


@pytest.mark.anyio
@BOTH
async def test_a_refused_token_names_audience_and_identity(
    emulator: Emulator, agent_name: str, kind: Transport
) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
    async with project_for(emulator.endpoint, "not-the-token") as (access, project):
        with pytest.raises(AuthenticationFailed) as agents_refused:
            await _agent(project, access, agent_name)
        async with transport_for(kind, access, project) as transport:
            with pytest.raises(AuthenticationFailed) as responses_refused:
                await transport.create(_ask(agent))
            if isinstance(transport, RestTransport):
                assert access.token_fetches == 2, "a fresh token is tried once after a 401"

    for refused in (agents_refused, responses_refused):
        message = str(refused.value)
        assert "HTTP 401 PermissionDenied: The bearer token is not valid for this project." in message
        assert "scope https://ai.azure.com/.default as the emulator dev token (EMULATOR_TOKEN" in message


@pytest.mark.anyio
@BOTH
async def test_an_unreachable_endpoint_is_reported(kind: Transport) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/api/projects/gone"
    agent = AgentChoice("teller", "1", pinned=True)
    async with project_for(endpoint, "token") as (access, project):
        with pytest.raises(ServiceUnreachable, match=r"Cannot reach the Foundry project at http://127\.0\.0\.1:"):
            await _agent(project, access, "teller")
        async with transport_for(kind, access, project, max_retries=0) as transport:
            with pytest.raises(ServiceUnreachable, match="bankgate-agent emulator") as refused:
                await transport.create(_ask(agent))
    assert endpoint in str(refused.value)


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_slow_service_is_retried_then_reported_as_slow(
    emulator: Emulator, agent_name: str, kind: Transport, stream: bool
) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        emulator.faults.arm(FaultConfig(delay=1.0, target="responses"))
        emulator.faults.reset_stats()
        quick = httpx2.Timeout(0.25, connect=5.0)
        async with transport_for(kind, access, project, max_retries=1, timeout=quick) as transport:
            with pytest.raises(ServiceSlow, match=r"did not answer within 0\.25 s.*reachable but slow") as raised:
                if stream:
                    await assemble_stream(transport.stream(_ask(agent)), lambda _: None)
                else:
                    await transport.create(_ask(agent))

    assert not isinstance(raised.value, ServiceUnreachable)
    assert emulator.faults.stats.requests == 2, "a timeout is retried, as openai retries it"


@pytest.mark.anyio
@BOTH
async def test_a_stream_that_stalls_is_reported_as_slow(emulator: Emulator, agent_name: str, kind: Transport) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        emulator.faults.arm(FaultConfig(event_delay=1.0, target="responses"))
        quick = httpx2.Timeout(0.25, connect=5.0)
        async with transport_for(kind, access, project, max_retries=0, timeout=quick) as transport:
            with pytest.raises(ServiceSlow, match=r"sent nothing more of its streamed answer within 0\.25 s"):
                await assemble_stream(transport.stream(_ask(agent)), lambda _: None)


@pytest.mark.anyio
@BOTH
async def test_the_servers_retry_hint_is_waited_for(emulator: Emulator, agent_name: str, kind: Transport) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        emulator.faults.arm(FaultConfig(rate_limited=1, retry_after=0.6, target="responses"))
        async with transport_for(kind, access, project, max_retries=1) as transport:
            started = time.monotonic()
            await transport.create(_ask(agent))
            waited = time.monotonic() - started

    assert waited >= 0.55, "retry-after-ms (600) is honoured, not the 0.5 s backoff"


def test_endpoint_configuration_is_checked(emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError, match="PROJECT_ENDPOINT is not set"):
        project_access(settings_for(emulator, "a", project_endpoint=None))
    with pytest.raises(ConfigurationError, match="plain http to a non-loopback host"):
        project_access(settings_for(emulator, "a", project_endpoint="http://example.com/api/projects/p"))
    remote = project_access(
        settings_for(emulator, "a", project_endpoint="https://x.services.ai.azure.com/api/projects/p")
    )
    local = project_access(settings_for(emulator, "a", emulator_token=SecretStr("secret")))
    assert not remote.dev_token and local.dev_token


@contextmanager
def loopback_project(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A loopback HTTP server answering every POST with `answer`; yields its project endpoint.

    For what the emulator, faithful to the service, never sends (a redirect, a stream held open)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/projects/loopback"
        finally:
            server.shutdown()


@asynccontextmanager
async def loopback_transport(
    kind: Transport, answer: Callable[[BaseHTTPRequestHandler], None], token: str = "token", **options: Any
) -> AsyncIterator[ResponsesTransport]:
    """A transport of `kind`, without retries, to a `loopback_project` answering with `answer`."""
    with loopback_project(answer) as endpoint:
        async with (
            project_for(endpoint, token) as (access, project),
            transport_for(kind, access, project, max_retries=0, **options) as transport,
        ):
            yield transport


def whole(status: int, content_type: str, body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """An answer of `status` carrying all of `body` at once."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def redirect_to(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(307)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_redirect_is_reported_not_followed(
    emulator: Emulator, agent_name: str, kind: Transport, stream: bool
) -> None:
    """The SDK path crashed on a 307 (httpx's RequestNotRead: no `HostError`, so the chat ended), and the REST
    path took it for an answer ("no JSON object", "ended before response.completed"). Both now say where the
    project redirects, and neither sends the request (with its token) on."""
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
    target = f"{emulator.endpoint}/openai/v1/responses"
    emulator.faults.reset_stats()
    async with loopback_transport(kind, redirect_to(target), token=emulator.token) as transport:
        with pytest.raises(ServiceFailed, match=rf"answered HTTP 307, a redirect to {re.escape(target)}"):
            if stream:
                await assemble_stream(transport.stream(_ask(agent)), lambda _: None)
            else:
                await transport.create(_ask(agent))

    assert emulator.faults.stats.requests == 0, "the redirect was not followed"


@pytest.mark.anyio
@BOTH
async def test_a_stream_is_read_up_to_its_last_event_not_until_the_connection_closes(kind: Transport) -> None:
    """`response.completed` is the stream's last event. Read on until the connection closed, a stream the service
    (or a proxy) then held open ended in `ServiceSlow` after the read timeout, and the completed reply was lost."""
    released = threading.Event()
    completed = {
        "type": "response.completed",
        "sequence_number": 0,
        "response": {
            "id": "resp_held",
            "object": "response",
            "created_at": 0,
            "model": MODEL,
            "status": "completed",
            "output": [message_item("Held open.")],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        },
    }

    def complete_then_hold(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(f"event: response.completed\ndata: {json.dumps(completed)}\n\n".encode())
        handler.wfile.flush()
        released.wait(10)

    agent = AgentChoice("teller", "1", pinned=True)
    try:
        async with loopback_transport(kind, complete_then_hold, timeout=httpx2.Timeout(3.0)) as transport:
            started = time.monotonic()
            reply = await assemble_stream(transport.stream(_ask(agent)), lambda _: None)
            took = time.monotonic() - started
    finally:
        released.set()

    assert (reply.response_id, reply.text) == ("resp_held", "Held open.")
    assert took < 2.0, f"waited {took:.1f} s for a stream that had ended"


@pytest.mark.anyio
@BOTH
async def test_a_stream_kept_alive_with_comments_alone_is_reported_as_slow(kind: Transport) -> None:
    """SSE comment lines keep a connection open but carry nothing: a service sending only them after its first
    event reset the read timeout forever, and the host waited on with no end."""
    released = threading.Event()
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_alive", "status": "in_progress"},
    }

    def comments_forever(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(f"event: response.created\ndata: {json.dumps(created)}\n\n".encode())
        with suppress(OSError):  # until the host hangs up
            while not released.wait(0.1):
                handler.wfile.write(b": keep-alive\n\n")
                handler.wfile.flush()

    agent = AgentChoice("teller", "1", pinned=True)
    try:
        async with loopback_transport(kind, comments_forever, timeout=httpx2.Timeout(1.0)) as transport:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(ServiceSlow, match="sent nothing more of its streamed"):
                await assemble_stream(transport.stream(_ask(agent)), lambda _: None)
            took = time.monotonic() - started
    finally:
        released.set()

    assert took < 3.0


@pytest.mark.anyio
@BOTH
async def test_a_streamed_request_answered_with_something_else_says_so(kind: Transport) -> None:
    """A gateway that ignores `stream` answers with the whole response as JSON: read as an event stream it was
    "ended before response.completed", which sends one looking for a cut connection."""
    body = json.dumps({"id": "resp_whole", "object": "response", "status": "completed", "output": []}).encode()

    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, whole(200, "application/json", body)) as transport:
        with pytest.raises(ServiceFailed, match="answered a streamed request with application/json, not an event"):
            await assemble_stream(transport.stream(_ask(agent)), lambda _: None)


@pytest.mark.anyio
@BOTH
async def test_a_stream_framed_every_legal_way_reads_the_same(kind: Transport) -> None:
    """Pins SSE framing over a real connection (the parser's own test feeds it lines): CRLF line ends, a comment,
    `data` over two lines, an event type the host does not know, and a character split across two writes."""
    response = {
        "id": "resp_framed",
        "object": "response",
        "created_at": 0,
        "model": MODEL,
        "status": "completed",
        "output": [message_item("Prix: 5 €.")],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    delta = {"type": "response.output_text.delta", "sequence_number": 1, "output_index": 0, "content_index": 0}
    delta |= {"item_id": "msg_1", "delta": "Prix: 5 €.", "logprobs": []}
    completed = json.dumps({"type": "response.completed", "sequence_number": 2, "response": response})
    half = completed.index(', "output"') + 1  # between two members: the line break joining them is whitespace
    first, rest = completed[:half], completed[half:]
    wire = (
        ": a comment\r\n"
        'event: response.bankgate_unknown\r\ndata: {"type": "response.bankgate_unknown", "sequence_number": 0}\r\n\r\n'
        f"event: response.output_text.delta\r\ndata: {json.dumps(delta, ensure_ascii=False)}\r\n\r\n"
        f"event: response.completed\r\ndata: {first}\r\ndata: {rest}\r\n\r\n"
    ).encode()
    split = wire.index("€".encode()) + 1

    def framed(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Content-Length", str(len(wire)))
        handler.end_headers()
        for part in (wire[:split], wire[split:]):
            handler.wfile.write(part)
            handler.wfile.flush()
            time.sleep(0.05)  # the two halves of the character arrive apart

    agent = AgentChoice("teller", "1", pinned=True)
    streamed: list[str] = []
    async with loopback_transport(kind, framed) as transport:
        reply = await assemble_stream(transport.stream(_ask(agent)), streamed.append)

    assert (reply.response_id, reply.text, streamed) == ("resp_framed", "Prix: 5 €.", ["Prix: 5 €."])
    assert reply.events["response.bankgate_unknown"] == 1


@pytest.mark.anyio
@BOTH
async def test_an_error_page_is_quoted_in_part(kind: Transport) -> None:
    """A gateway's 502 is an HTML page, not an OpenAI-style error: it was quoted whole in the message (the
    terminal, or the browser's error line, flooded with markup); now its first line, clipped."""
    page = (
        "<html><head><title>502 Bad Gateway</title></head>\n<body>" + "<p>upstream</p>" * 5_000 + "</body></html>"
    ).encode()

    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, whole(502, "text/html", page)) as transport:
        with pytest.raises(ServiceFailed, match=r"answered HTTP 502: <html><head><title>502 Bad Gateway") as failed:
            await transport.create(_ask(agent))

    assert len(failed.value.message) < 400 and "upstream" not in failed.value.message


def _sse(body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    return whole(200, "text/event-stream", b'event: response.created\ndata: {"type": "response.created"}\n\n' + body)


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize(
    ("answer", "stream", "named"),
    [
        (whole(200, "application/json", b"<html>Signed out</html>"), False, "answered with no JSON object"),
        (whole(200, "text/html", b"<html>Signed out</html>"), False, "answered with no JSON object"),
        (whole(200, "application/json", b"[1, 2]"), False, "answered with no JSON object"),
        (_sse(b"event: response.completed\ndata: <html>\n\n"), True, "an event that is not JSON: '<html>'"),
        (_sse(b"event: response.completed\ndata: [1, 2]\n\n"), True, r"a non-object event: '\[1, ?2\]'"),
    ],
    ids=["not-json", "a-page", "not-an-object", "event-not-json", "event-not-an-object"],
)
async def test_a_success_answer_that_is_not_a_response_is_a_service_failure(
    kind: Transport, answer: Callable[[BaseHTTPRequestHandler], None], stream: bool, named: str
) -> None:
    """A 200 whose body (or a streamed event) is not a JSON object: a proxy's sign-in page, a truncated gateway
    answer. The REST path said so; on the SDK path openai's `JSONDecodeError`, or the page returned as a string,
    escaped as a crash (`AttributeError: 'str' object has no attribute 'model_dump'`) and ended the chat."""
    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, answer) as transport:
        with pytest.raises(ServiceFailed, match=named):
            if stream:
                await assemble_stream(transport.stream(_ask(agent)), lambda _: None)
            else:
                await transport.create(_ask(agent))


def _call_streamed_by_deltas(deltas: list[str], order: list[int]) -> bytes:
    """A stream whose call's arguments only its `deltas` carry, numbered as the service numbers events and sent
    in `order` (event numbers: a number twice is a repeat, one left out a loss)."""
    call = {"id": "fc_1", "type": "function_call", "status": "in_progress", "call_id": "call_1"}
    call |= {"name": "get_account_balance", "arguments": ""}
    response = {"id": "resp_deltas", "object": "response", "created_at": 0, "model": MODEL, "status": "completed"}
    response |= {"output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    where = {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": call},
        *({**where, "delta": delta} for delta in deltas),
        {"type": "response.output_item.done", "output_index": 0, "item": {**call, "status": "completed"}},
        {"type": "response.completed", "response": response},
    ]
    numbered = [{**event, "sequence_number": number} for number, event in enumerate(events)]
    return b"".join(f"event: {numbered[n]['type']}\ndata: {json.dumps(numbered[n])}\n\n".encode() for n in order)


ACC_001 = ['{"account_id": "ACC-', "00", '1"}']


@pytest.mark.anyio
@BOTH
async def test_a_delta_the_wire_repeats_is_taken_once(kind: Transport) -> None:
    """Pins, over both wire paths (the SDK dumps each event from its own model), that a repeated event keeps its
    `sequence_number`, so the host can drop it: joined as it came, the call asked for the balance of ACC-00001."""
    wire = _call_streamed_by_deltas(ACC_001, [0, 1, 2, 2, 3, 4, 5])
    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, whole(200, "text/event-stream", wire)) as transport:
        reply = await assemble_stream(transport.stream(_ask(agent)), lambda _: None)

    assert [(call.call_id, call.arguments) for call in reply.calls] == [("call_1", '{"account_id": "ACC-001"}')]


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize(
    ("order", "named"),
    [([0, 1, 3, 4, 5], "event 2 never arrived"), ([0, 2, 1, 3, 4, 5], "event 1 arrived after event 2")],
    ids=["lost", "reordered"],
)
async def test_deltas_the_wire_lost_or_reordered_leave_no_call_to_run(
    kind: Transport, order: list[int], named: str
) -> None:
    """A call rebuilt from deltas with one lost (ACC-1) or two swapped (ACC-001 from "00" and "ACC-" the wrong way
    round) is no call the model made: the response is refused, and says why."""
    wire = _call_streamed_by_deltas(ACC_001, order)
    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, whole(200, "text/event-stream", wire)) as transport:
        with pytest.raises(ServiceFailed, match=r"arguments of function call call_1 \(get_account_balance\)") as failed:
            await assemble_stream(transport.stream(_ask(agent)), lambda _: None)

    assert named in failed.value.message and "nothing was run" in failed.value.message


def cut_off(handler: BaseHTTPRequestHandler) -> None:
    """A 200 that promises more body than it sends, then hangs up."""
    body = json.dumps({"id": "resp_cut", "object": "response", "status": "completed", "output": []}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body) + 1_000))
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])
    handler.wfile.flush()
    handler.close_connection = True


@pytest.mark.anyio
@BOTH
async def test_an_answer_cut_off_mid_way_is_not_reported_as_unreachable(kind: Transport) -> None:
    """The service answered 200 and the body broke off: it had the request, so "Cannot reach the Foundry project"
    (check the endpoint and the network) sent the person looking in the wrong place."""
    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, cut_off) as transport:
        with pytest.raises(ServiceFailed, match=r"answered, but the answer was cut off .*: nothing of it was run"):
            await transport.create(_ask(agent))


def throttled(headers: dict[str, str]) -> Callable[[BaseHTTPRequestHandler], None]:
    body = json.dumps({"error": {"code": "rate_limit_exceeded", "message": "Slow down.", "type": "rate_limit"}})

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(429)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body.encode())

    return answer


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({"Retry-After": "-5"}, "Try again later,"),
        ({"Retry-After": "soon"}, "Try again later,"),
        ({"Retry-After": "nan"}, "Try again later,"),
        ({"Retry-After": "1e30"}, "Try again later,"),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "Try again later,"),
        ({"Retry-After": "30"}, "Try again in 30 s,"),
        ({"retry-after-ms": "1500"}, "Try again in 2 s,"),
    ],
)
async def test_a_throttled_answers_wait_hint_is_told_only_when_it_makes_sense(
    kind: Transport, headers: dict[str, str], hint: str
) -> None:
    """The hint repeated `Retry-After` as given: "Try again in -5 s", "in soon s", or an HTTP date as seconds."""
    agent = AgentChoice("teller", "1", pinned=True)
    async with loopback_transport(kind, throttled(headers)) as transport:
        with pytest.raises(RateLimited) as refused:
            await transport.create(_ask(agent))

    assert refused.value.hint is not None and refused.value.hint.startswith(hint), refused.value.hint
