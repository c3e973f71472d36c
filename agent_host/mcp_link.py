"""The host's MCP client: one session to the bankgate server, its tools, and calls that always answer.

By default the server is launched as a subprocess over stdio (`python -m mcp_server serve`, with
the host's `BANKGATE_*` settings), so the ledger is whatever the server would use on its own; with
a URL the host speaks Streamable HTTP with a bearer token instead. The host never imports the
server: everything crosses the MCP wire.

`McpLink.call` never raises for a failed call: the model must get an answer for every function
call, so a crashed server or a timeout becomes a `tool_unavailable` result. A session whose connection
is gone (the server died, restarted or dropped it) is opened again for the next call, relaunching a
stdio server; a keyed call the connection dropped under is sent once more on the new session with the
same idempotency key, so the server runs it at most once and otherwise answers with what it did; an HTTP server
not accepting connections then is waited for as it restarts (`restarts`). After an attempt to reopen fails, calls are
answered at once, not sent, until the back-off window ends (`reconnect`).
A call is sent only to a server that lists its tool with the arguments the caller made it for: one reopened
on a server that no longer does is answered, not sent. A server that keeps no session (2026-07-28 over HTTP, or
a stateless one) can restart as another release unseen, so its tools are listed again at the start of each turn
(`McpLink.relist`).
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import anyio
import anyio.abc
import httpx2
import mcp_types
from anyio.streams.memory import MemoryObjectSendStream
from mcp import Client, StdioServerParameters
from mcp.client.session import ElicitationFnT, MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import RequestParamsMeta

from agent_host.errors import ConfigurationError, McpUnavailable, sole_error
from agent_host.loopback import is_loopback_url
from agent_host.reconnect import Backoff, in_seconds
from agent_host.restarts import (
    RECONNECT_SECONDS,
    Reconnecting,
    Restarts,
    RestartWait,
    Unrun,
    refused_connection,
)
from agent_host.server_log import ServerLog
from agent_host.settings import McpProtocol

IDEMPOTENCY_KEY_META = "io.bankgate/idempotency-key"
"""The request `_meta` key the server reads to run a retried call only once.

The host's own copy of the server's wire constant (`policy.idempotency_key`), not an import: the
host reaches the server over MCP only and imports no server-side package, so it could drive any
deployment of the server; tests/host/test_wire_contract.py keeps the two equal.
"""

DESK_POLL_SECONDS = 1.0
"""How often the host asks again about an approval waiting at the desk (2026-07-28 rounds)."""


@dataclass(frozen=True)
class McpTarget:
    """Which MCP server to talk to and how."""

    url: str | None = None
    token: str | None = field(default=None, repr=False)
    """The bearer token for `url`: a credential, so never in a repr (settings keep it a `SecretStr`)."""
    db_url: str | None = field(default=None, repr=False)
    """The launched server's ledger: a PostgreSQL URL may carry its password, so never in a repr."""
    protocol: McpProtocol = "auto"
    call_timeout: float = 330.0
    server_args: tuple[str, ...] = ()
    """Extra `bankgate-mcp serve` options for a launched server (e.g. `--no-seed`)."""
    server_env: Mapping[str, str] | None = field(default=None, repr=False)
    """`BANKGATE_*` settings for a launched server (tokens and URLs among them: never in a repr); `None` forwards the
    caller's."""
    server_cwd: str | None = None
    """Working directory of a launched server (where it reads `.env`); `None` is the caller's."""

    def describe(self) -> str:
        return self.url or "bankgate-mcp serve (stdio subprocess)"


DEMO_LEDGER = ("--create", "--seed-demo")
"""`server_args` for a throwaway ledger: a server given a URL creates (and seeds) nothing unless told to."""


@dataclass(frozen=True)
class ToolResult:
    """A tool's result as the model gets it: the structured content (or a stand-in for it)."""

    output: dict[str, Any]
    is_error: bool = False
    diagnostic: str | None = None
    """For the user only, never the model: why the call could not reach the tool."""


@dataclass
class HttpNotes:
    """What the host's HTTP client saw: the latest status only (to explain a refused connection; the link lives as
    long as the host), and how many requests were refused for a session the server no longer holds (HTTP 404 to a
    request naming one: the server restarted or dropped it, and the request did not run)."""

    status: int | None = None
    sessions_refused: int = 0
    session_id: str | None = field(default=None, repr=False)
    """The session id the server gave the session opened last (`None`: it keeps none)."""
    restarts: Restarts = field(default_factory=lambda: Restarts(IDEMPOTENCY_KEY_META), repr=False)
    """The calls a restarting server refused unrun (`agent_host.restarts`)."""


@dataclass
class _Session:
    """One MCP session, held open by its own task until `stop`."""

    client: Client
    refused_before: int = 0
    """`HttpNotes.sessions_refused` when it opened: any more refusals are of this session."""
    sessionless: bool = False
    """Its server keeps no session over HTTP: restarted, it is never seen as the connection ending."""
    stop: anyio.Event = field(default_factory=anyio.Event)
    gone: str | None = None
    """Why nothing more can go through this session (its connection closed), once that is known."""


@dataclass
class McpLink:
    """A connected MCP session and the tools it lists; a session found gone is opened again when next needed."""

    tools: list[mcp_types.Tool]
    """The tools the current session's server lists (a reopened session's own)."""
    target: McpTarget
    server_log: ServerLog | None = field(default=None, repr=False)
    backoff: Backoff = field(default_factory=Backoff, repr=False)
    _session: _Session | None = field(default=None, repr=False)
    _open: Callable[[], Awaitable[_Session]] | None = field(default=None, repr=False)
    """Opens a new session (launching a stdio server anew) and lists its tools, or raises."""
    _notes: HttpNotes = field(default_factory=HttpNotes, repr=False)
    _reopening: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    """Held while a session is opened again: calls that found it gone together open one, not one each."""

    @classmethod
    def over(cls, client: Client, tools: list[mcp_types.Tool], target: McpTarget) -> McpLink:
        """A link over a session its caller holds open: one found gone is not opened again."""
        return cls(tools, target, _session=_Session(client))

    @property
    def client(self) -> Client:
        assert self._session is not None, "the link is not connected"
        return self._session.client

    @property
    def lost(self) -> str | None:
        """Why the current session ended, once it has (the next call opens another)."""
        return None if self._session is None else self._session.gone

    @property
    def protocol_version(self) -> str:
        return self.client.protocol_version

    async def relist(self) -> None:
        """List the tools again if the server keeps no session: it may have restarted with other tools since, which
        only a listing tells (one request; a list change notification needs a stream held open to each replica, and
        a listing's `ttlMs` is a promise a restarted process did not make). One that fails leaves the session gone:
        the next call opens another, listing its tools, before anything is sent. One a draining server refused (503)
        ends nothing: the calls running on it finish, and a call it refuses waits for the restart and lists the tools
        of the server that came back before it is sent again (`_sent`)."""
        session = self._session
        if session is None or not session.sessionless or session.gone is not None:
            return
        refused = self._notes.restarts.listings_refused
        failure = await self._listed_again(session)
        if failure is not None and self._notes.restarts.listings_refused == refused:
            session.gone = failure  # down, or refusing for another reason: the next call reconnects

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> ToolResult:
        """Run one tool; a key makes a retried call (same Foundry `call_id`) take effect once. With `schema`, the
        input schema the arguments were made for, the call is sent only to a server whose tool still has it."""
        if self.lost is not None and (failure := await self._reopen()) is not None:
            return self._not_sent(name, failure)
        if (unoffered := self._unoffered(name, schema)) is not None:
            return _not_offered(name, unoffered)
        wait = RestartWait()
        try:
            return await self._sent(name, arguments, idempotency_key, schema, wait)
        except _Refused:
            reason, unsent = "the server no longer holds the session", True
        except Unrun as refusal:
            return self._refused_unrun(name, refusal, wait)
        except Exception as error:  # anything that kept the call from completing; cancellation still propagates
            reason, unsent = _reason(error), False
        if self.lost is None or not (unsent or idempotency_key):
            return self._unavailable(name, reason)
        # The session is gone: a refused call did not run; one the connection dropped under may have, but under
        # the same key the server runs it at most once and otherwise answers with its stored outcome. Ask again,
        # once the server is back if it is restarting.
        if (failure := await self._reopen(wait if idempotency_key else None)) is not None:
            return self._unavailable(name, f"{reason}; reconnecting failed: {failure}")
        if (unoffered := self._unoffered(name, schema)) is not None:
            if unsent:  # refused unrun, and the new session's server cannot be sent it: nothing ran
                return _not_offered(name, unoffered)
            return self._unavailable(name, f"{reason}; not sent again: {unoffered['error']['message']}")
        try:
            return await self._sent(name, arguments, idempotency_key, schema, wait)
        except Unrun as refusal:
            return self._refused_unrun(name, refusal, wait)
        except Exception as error:
            return self._unavailable(name, f"{reason}; sent again after reconnecting: {_reason(error)}")

    async def _sent(
        self,
        name: str,
        arguments: dict[str, Any],
        idempotency_key: str | None,
        schema: Mapping[str, Any] | None,
        wait: RestartWait,
    ) -> ToolResult:
        """`_send`, and again as often as a restarting server refuses the call unrun, after the wait it asks for,
        within the call's `wait`; `Unrun` once that is spent (`agent_host.restarts`). The server that comes back may
        be another release: on a link without a session (where a restart is never seen as one) its tools are listed
        before the call is sent again (again every `RECONNECT_SECONDS` while that fails: never sent unlisted), and a
        call for a tool it changed is answered, not sent."""
        restarts = self._notes.restarts
        try:
            while True:
                try:
                    return await self._send(name, arguments, idempotency_key)
                except Unrun as refusal:
                    if idempotency_key is None:
                        raise
                    restarts.awaiting.add(idempotency_key)
                    pause = refusal.wait
                    while True:
                        if not await wait.pause(pause):
                            raise
                        listed, unoffered = await self._unoffered_since(name, schema)
                        if listed:
                            break
                        pause = RECONNECT_SECONDS
                    if unoffered is not None:
                        return _not_offered(name, unoffered)
        finally:
            if idempotency_key is not None:
                restarts.awaiting.discard(idempotency_key)

    async def _send(self, name: str, arguments: dict[str, Any], idempotency_key: str | None) -> ToolResult:
        session = self._session
        assert session is not None, "the link is not connected"
        meta = cast(RequestParamsMeta, {IDEMPOTENCY_KEY_META: idempotency_key}) if idempotency_key else None
        refused = self._notes.restarts.refused
        if idempotency_key:
            refused.pop(idempotency_key, None)
        try:
            result = await session.client.call_tool(
                name, arguments, read_timeout_seconds=self.target.call_timeout, meta=meta
            )
        except MCPError as error:
            if idempotency_key and (wait := refused.pop(idempotency_key, None)) is not None:
                raise Unrun(wait, error.message) from error  # refused unrun (503) by a server restarting
            # Only a refusal is one (the SDK's error for a 404, which the request is answered with): a timeout or
            # a dropped connection after a 404 to another request (the session before this one closing, its event
            # stream) is not, and the call it ended may have run.
            if error.code == mcp_types.INVALID_REQUEST and self._notes.sessions_refused > session.refused_before:
                session.gone = session.gone or "the server no longer holds the session"
                raise _Refused from error
            if error.code == mcp_types.CONNECTION_CLOSED:
                session.gone = session.gone or error.message
            raise
        return ToolResult(_output(result), result.is_error)

    async def _reopen(self, wait: RestartWait | None = None) -> str | None:
        """Open a new session in place of the one gone, unless another call did meanwhile; why that failed, else
        `None`. With `wait` (a keyed call the connection dropped under: its server may have died and be restarting),
        a server not accepting connections is tried again every `RECONNECT_SECONDS` until it is back or the call's
        wait is spent."""
        async with self._reopening:
            session = self._session
            assert session is not None, "the link is not connected"
            if session.gone is None:
                return None
            if self._open is None:
                return "this link cannot open another session"
            if (left := self.backoff.left()) is not None:
                return f"{self.backoff.failure} (not tried again for {in_seconds(left)} more)"
            session.stop.set()
            while True:
                self._notes.status = None
                try:
                    self._session = await self._open()
                except Exception as error:
                    if wait is None or not self._restarting(error) or not await wait.pause(RECONNECT_SECONDS):
                        self.backoff.failed(_reason(error))
                        if wait is not None and wait.waited:
                            return f"{self.backoff.failure} (not back after {wait.waited:g} s)"
                        return self.backoff.failure
                else:
                    self.backoff.succeeded()
                    return None

    def _restarting(self, error: Exception) -> bool:
        """Whether opening a session failed on a server not accepting connections (its restart under way): refused,
        or answered 503 (by the host itself while a call refused unrun waits, `Reconnecting`)."""
        return refused_connection(error) or self._notes.status == 503

    async def _unoffered_since(self, name: str, schema: Mapping[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
        """Whether the tools could be listed, and `_unoffered` by the tools a sessionless server lists now; a server
        keeping a session needs no listing (once restarted, it refuses the call 404, and a reopen lists them)."""
        session = self._session
        if session is None or not session.sessionless:
            return True, None
        if await self._listed_again(session) is not None:  # still restarting (503), or not listening yet
            return False, None
        return True, self._unoffered(name, schema)

    async def _listed_again(self, session: _Session) -> str | None:
        """List `session`'s tools again into `tools`; why that failed, else `None` (cancellation propagates)."""
        try:
            self.tools = await _listing(session.client)
        except Exception as error:
            return _reason(error)
        return None

    def _unoffered(self, name: str, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The output for a call the server cannot be sent: it lists no such tool, or one with other arguments."""
        listed = next((tool for tool in self.tools if tool.name == name), None)
        if listed is None:
            return failed_output(
                "unknown_tool",
                f"Not executed: the tool's server does not offer {name} (any more), so nothing was sent.",
                f"The MCP server lists {', '.join(sorted(tool.name for tool in self.tools)) or 'no tools'}.",
            )
        if schema is not None and dict(listed.input_schema) != dict(schema):
            return failed_output(
                "tool_changed",
                f"Not executed: the tool's server changed the arguments {name} takes since this call was made, "
                "so nothing was sent.",
                f"The MCP server's {name} now takes: {json.dumps(listed.input_schema, sort_keys=True)}",
            )
        return None

    def _not_sent(self, name: str, reason: str) -> ToolResult:
        diagnostic = f"MCP call {name} not sent: {reason}. {self.stderr_tail()}".strip()
        return ToolResult(not_sent_output(self.target, reason, self.backoff.left()), True, diagnostic)

    def _refused_unrun(self, name: str, refusal: Unrun, wait: RestartWait) -> ToolResult:
        output = failed_output(
            "tool_unavailable",
            "Not executed: the tool's server is restarting and refused the call, so nothing was done; try again in "
            "a few seconds.",
            f"The MCP server ({self.target.describe()}) still refused the call unrun after {wait.waited:g} s of "
            f"waiting for it to restart: {refusal.reason}",
        )
        return ToolResult(output, True, f"MCP call {name} not run: {refusal.reason}")

    def _unavailable(self, name: str, reason: str) -> ToolResult:
        diagnostic = f"MCP call {name} failed: {reason}. {self.stderr_tail()}".strip()
        return ToolResult(unavailable_output(reason), True, diagnostic)

    def stderr_tail(self) -> str:
        """The last log lines of the server launched last, which usually say why it stopped."""
        return "" if self.server_log is None else self.server_log.tail()


class _Refused(Exception):
    """The server refused a call for naming a session it no longer holds: the call did not run."""


def _not_offered(name: str, output: dict[str, Any]) -> ToolResult:
    return ToolResult(output, True, f"MCP call {name} not sent: {output['error']['message']}")


def failed_output(code: str, message: str, detail: str | None = None) -> dict[str, Any]:
    """A function-call output the host writes itself for a call that did not succeed, in the shape
    of the server's failed results (`status`, `message`, `error.code`, `error.message`), so the model
    reads the host's refusals as it reads the server's."""
    return {"status": "failed", "message": message, "error": {"code": code, "message": detail or message}}


def not_sent_output(target: McpTarget, reason: str, retry_in: float | None = None) -> dict[str, Any]:
    """The function-call output for a call never sent: the MCP server could not be reached again, so it did not
    run; `retry_in`, the seconds until the host tries to reconnect."""
    when = "" if retry_in is None else f" (the host tries to reconnect in {in_seconds(retry_in)})"
    return failed_output(
        "tool_unavailable",
        f"Not executed: the tool's server cannot be reached, so nothing was sent; try again later{when}.",
        f"The connection to the MCP server ({target.describe()}) is gone and reconnecting failed: {reason}",
    )


def unavailable_output(reason: str) -> dict[str, Any]:
    """The function-call output for a call that could not reach the tool: its outcome is unknown."""
    return failed_output(
        "tool_unavailable",
        "The tool could not be reached; whether it ran is unknown, so check before retrying.",
        f"The MCP tool call did not complete: {reason}",
    )


@asynccontextmanager
async def connect(
    target: McpTarget, elicitation: ElicitationFnT | None, messages: MessageHandlerFnT | None = None
) -> AsyncIterator[McpLink]:
    """Connect (launching the server unless `target.url`), list the tools, and yield the link.

    Without `elicitation` the client declares no elicitation capability (no human to ask);
    `messages` receives the server's notifications. A call may take as many 2026-07-28 rounds as
    fit in its timeout at the desk's polling pace: the server asks again until the desk decides.
    """
    async with AsyncExitStack() as stack:
        log: ServerLog | None = None
        notes = HttpNotes()
        http: httpx2.AsyncClient | None = None
        if target.url is None:
            log = ServerLog(stack.enter_context(tempfile.TemporaryFile("a+", encoding="utf-8")))  # noqa: SIM115
        else:
            http = await stack.enter_async_context(_http_client(target, notes))
        tasks = await stack.enter_async_context(anyio.create_task_group())
        context = contextvars.copy_context()
        sessions: list[_Session] = []
        stack.callback(lambda: sessions[-1].stop.set() if sessions else None)

        async def open_session() -> _Session:
            # A transport is good for one session: each session gets its own (a stdio server launched anew).
            if http is not None:
                transport: Any = streamable_http_client(cast(str, target.url), http_client=http)
            else:
                assert log is not None
                log.new_launch()
                transport = stdio_client(_launch_parameters(target), errlog=cast(TextIO, log.file))
            client = Client(
                transport,
                mode=target.protocol,
                elicitation_callback=elicitation,
                message_handler=messages,
                input_required_max_rounds=max(10, math.ceil(target.call_timeout / DESK_POLL_SECONDS) + 10),
            )
            session = _Session(client, notes.sessions_refused)
            sessions[:] = [session]  # an earlier one was told to stop before this was opened
            notes.session_id = None
            # The session's tasks (which take the server's requests, 2025-11-25 questions among them) take the
            # link's context, not that of the call opening it again: a run's context would make every later
            # question look like that run's (`agent_host.web.runs`).
            opened, outcome = anyio.create_memory_object_stream[list[mcp_types.Tool] | Exception](1)
            with outcome:
                try:
                    context.run(tasks.start_soon, _keep_open, session, opened)
                    tools = await outcome.receive()
                except BaseException:
                    session.stop.set()
                    raise
            if isinstance(tools, Exception):
                raise tools
            link.tools = tools
            session.sessionless = http is not None and notes.session_id is None
            return session

        link = McpLink([], target, log, _open=open_session, _notes=notes)
        try:
            link._session = await open_session()
        except Exception as error:
            raise _start_failure(target, error, notes, link.stderr_tail()) from None
        yield link


async def _keep_open(session: _Session, opened: MemoryObjectSendStream[list[mcp_types.Tool] | Exception]) -> None:
    """Hold the MCP session open in a task of its own until `stop`; `opened` gets its tools, or why it failed.

    The SDK's transports run in task groups that cancel their host task when the connection
    breaks (a killed HTTP server does that). Held here, such a failure ends this task only: the
    host's calls then fail and are answered as `tool_unavailable` instead of cancelling the host.
    """
    started = False
    with opened:
        try:
            async with session.client:
                tools = await _listing(session.client)
                started = True
                _report(opened, tools)
                await session.stop.wait()
        except Exception as error:
            if not started:
                _report(opened, error)
                return
            session.gone = _reason(error)


def _report(
    opened: MemoryObjectSendStream[list[mcp_types.Tool] | Exception], outcome: list[mcp_types.Tool] | Exception
) -> None:
    """Tell the opener how the opening went; one cancelled meanwhile (its end closed) set the session's `stop`."""
    with suppress(anyio.BrokenResourceError):
        opened.send_nowait(outcome)


async def _listing(client: Client) -> list[mcp_types.Tool]:
    """The tools the server lists now, never a cached listing."""
    return list((await client.list_tools(cache_mode="bypass")).tools)


DATA_HOME = "XDG_DATA_HOME"
"""Where `platformdirs` puts the user data directory on Linux when set (the SDK's minimal environment lacks it)."""


def _launch_parameters(target: McpTarget) -> StdioServerParameters:
    """`python -m mcp_server serve` with the caller's `BANKGATE_*` settings and user data directory.

    The stdio transport passes only a minimal environment to the child, so the server's own
    settings are forwarded explicitly; `db_url` overrides `BANKGATE_DB_URL`. So is `XDG_DATA_HOME`:
    without it the child kept its embedded ledger and audit key elsewhere than `bankgate-mcp` run by hand.
    """
    inherited = os.environ if target.server_env is None else target.server_env
    env = {key: value for key, value in inherited.items() if key.startswith("BANKGATE_") or key == DATA_HOME}
    if target.db_url:
        env["BANKGATE_DB_URL"] = target.db_url
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server", "serve", *target.server_args],
        env=env,
        cwd=target.server_cwd,
    )


def _http_client(target: McpTarget, notes: HttpNotes) -> httpx2.AsyncClient:
    """An HTTP client sending the bearer token; what it sees goes in `notes`."""
    assert target.url is not None
    if target.token and target.url.startswith("http://") and not is_loopback_url(target.url):
        raise ConfigurationError(
            f"Refusing to send the MCP token over plain http to {target.url}.", "Use https for a remote MCP server."
        )

    async def note_status(response: httpx2.Response) -> None:
        notes.status = response.status_code
        await notes.restarts.note(response)
        if response.status_code == 404 and MCP_SESSION_ID in response.request.headers:
            notes.sessions_refused += 1
        if MCP_SESSION_ID not in response.request.headers and (given := response.headers.get(MCP_SESSION_ID)):
            notes.session_id = given  # to the request opening a session (a closing one's requests name theirs)

    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    return httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=target.call_timeout),
        event_hooks={"response": [note_status]},
        transport=Reconnecting(notes.restarts),
    )


def _start_failure(target: McpTarget, error: Exception, notes: HttpNotes, stderr_tail: str) -> McpUnavailable:
    if target.url is None:
        return McpUnavailable(
            f"The MCP server did not start ({_reason(error)}).",
            stderr_tail or "Run `bankgate-mcp serve` on its own to see why, and check BANKGATE_DB_URL / --db.",
        )
    if notes.status in (401, 403):
        return McpUnavailable(
            f"The MCP server at {target.url} refused the host's token (HTTP {notes.status}).",
            "Pass a token the server accepts with --mcp-token or BANKGATE_MCP_TOKEN.",
        )
    return McpUnavailable(
        f"Cannot connect to the MCP server at {target.url} ({_reason(error)}).",
        "Start it with `bankgate-mcp serve --transport http`, or leave out --mcp-url to launch one over stdio.",
    )


def _reason(error: BaseException) -> str:
    """The message of `error`, or of the one error a task group wrapped in it."""
    error = sole_error(error) if isinstance(error, BaseExceptionGroup) else error
    return str(error) or type(error).__name__


def _output(result: mcp_types.CallToolResult) -> dict[str, Any]:
    """The structured content, or for a tool without one, its text in the same shape."""
    if result.structured_content is not None:
        return dict(result.structured_content)
    text = " ".join(block.text for block in result.content if isinstance(block, mcp_types.TextContent))
    if result.is_error:
        return failed_output("tool_error", text)
    return {"status": "executed", "message": text}
