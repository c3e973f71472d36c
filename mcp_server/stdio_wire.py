"""The stdio wire: every line on stdin is one JSON-RPC message, or is answered as JSON-RPC 2.0 says.

The SDK's `stdio_server` reads stdin with `errors="replace"` (bytes that are not UTF-8 turned into U+FFFD,
so a memo the client never sent ran), ends a line at a lone CR too (cutting in two a message whose JSON
whitespace holds one), and drops a line that is no message at debug level (its client waits for an answer
that never comes). Here stdin ends lines at LF alone and keeps bytes that are not UTF-8 as lone surrogates,
which the SDK's parser refuses; each line refused is answered with one error: -32700 when it is not JSON (or
not UTF-8), else -32600 (-32602 for a known method whose `params` alone is wrong, as the SDK answers params it
refuses). The error carries the request's own id when the line is an object with a `method` and a string or
integer `id` (a client matches answers by id), else id null. The SDK reads a request whose id is of another
type (true, 1.5, null, an object) as a notification, acting on it unanswered: it is refused instead, naming the
id's type. A blank line (JSON whitespace alone) is no message.
"""

import io
import logging
import os
from collections import deque
from contextlib import suppress
from types import TracebackType
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    RequestId,
)
from mcp_types.methods import SPEC_CLIENT_METHODS
from pydantic import ValidationError
from pydantic_core import from_json

log = logging.getLogger(__name__)


async def serve_stdio(server: MCPServer[Any]) -> None:
    """`server.run()` on stdio (`MCPServer.run_stdio_async`), with stdin read as the module says."""
    lowlevel = server._lowlevel_server  # what run_stdio_async runs; the SDK has no public stdio hook
    stdin = _stdin()
    async with stdio_server(stdin=anyio.wrap_file(stdin)) as (read_stream, write_stream):
        messages = AnsweredStream(read_stream, write_stream, stdin.kept)
        await lowlevel.run(messages, write_stream, lowlevel.create_initialization_options())


class KeptLines(io.TextIOWrapper):
    """A text stream keeping each line read (in `kept`) until `AnsweredStream` takes it: the SDK's reader
    makes one item of each line, in order, and a refused item names no id, a misread one not its own."""

    def __init__(self, binary: io.BufferedReader) -> None:
        super().__init__(binary, encoding="utf-8", errors="surrogateescape", newline="\n")
        self.kept: deque[str] = deque()
        self.reading = False

    def readline(self, size: int = -1, /) -> str:  # type: ignore[override]  # as typeshed's TextIOWrapper
        if not self.reading:  # the one trace that the thread is in (or bound for) the read SIGINT cannot cut
            self.reading = True
            log.debug("reading stdin: a worker thread waits for the client's lines")
        line = super().readline(size)
        if line:
            self.kept.append(line)
        return line


def _stdin() -> KeptLines:
    """The client's bytes from a private duplicate of fd 0, while fd 0 reads the null device (as the SDK's
    own claim does: nothing else in the process can take the client's bytes)."""
    wire = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return KeptLines(open(wire, "rb"))


class AnsweredStream:
    """The SDK's stream of parsed lines, minus the lines it could not parse or misread as notifications,
    each answered on `answers`; `kept` holds the line behind each item, in order."""

    def __init__(
        self, lines: ReadStream[SessionMessage | Exception], answers: WriteStream[SessionMessage], kept: deque[str]
    ) -> None:
        self._lines = lines
        self._answers = answers
        self._kept = kept

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message (the SDK's runner reads it, when there is one)."""
        return getattr(self._lines, "last_context", None)

    async def receive(self) -> SessionMessage:
        while True:
            item = await self._lines.receive()
            line = self._kept.popleft()
            if isinstance(item, SessionMessage) and not misread(item, line):
                return item
            answer = refusal(item, line)
            if answer is not None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # the client is gone
                    await self._answers.send(SessionMessage(answer))

    async def aclose(self) -> None:
        await self._lines.aclose()

    def __aiter__(self) -> "AnsweredStream":
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "AnsweredStream":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def misread(item: SessionMessage, line: str) -> bool:
    """Whether the SDK read `line` as a notification though it has an `id` (of a type it refuses): a request,
    owed an answer, that it would act on unanswered."""
    return isinstance(item.message, JSONRPCNotification) and "id" in from_json(line)


def refusal(item: SessionMessage | Exception, line: str) -> JSONRPCError | None:
    """The answer to `line`, which the SDK could not parse (or misread, `item`); None for a blank line."""
    errors = item.errors() if isinstance(item, ValidationError) else []
    if any(error["type"] == "string_unicode" for error in errors):
        return _error(None, PARSE_ERROR, "Parse error: the line is not UTF-8 text")
    if invalid := [error["msg"] for error in errors if error["type"] == "json_invalid"]:
        if not line.strip(" \t\r\n"):  # JSON whitespace only (str.strip takes a no-break space too)
            return None
        if line.startswith("\ufeff"):
            return _error(
                None,
                PARSE_ERROR,
                "Parse error: the line begins with a byte order mark (U+FEFF); send UTF-8 without one",
            )
        return _error(None, PARSE_ERROR, f"Parse error: the line is not one JSON value ({invalid[0]})")
    return _invalid(from_json(line))


def _invalid(value: Any) -> JSONRPCError:
    """The error owed to JSON `value`, which is no message the SDK serves."""
    if isinstance(value, list):
        batch = "a batch (a JSON array) is not accepted; send each message on its own line"
        return _error(None, INVALID_REQUEST, f"Invalid Request: {batch}")
    not_a_message = "Invalid Request: the line is not a JSON-RPC 2.0 request, notification or response object"
    if not isinstance(value, dict) or "id" not in value:
        return _error(None, INVALID_REQUEST, not_a_message)
    request_id = value["id"]
    if not _is_request_id(request_id):
        kind = _kind(request_id)
        return _error(None, INVALID_REQUEST, f"Invalid Request: the id is {kind}; an id is a string or an integer")
    if "method" not in value:  # a response's id is one the server chose, not the client's: no answer names it
        return _error(None, INVALID_REQUEST, not_a_message)
    method, params = value["method"], value.get("params")
    if value.get("jsonrpc") != "2.0" or not isinstance(method, str) or params is None or isinstance(params, dict):
        return _error(request_id, INVALID_REQUEST, not_a_message)
    if method in SPEC_CLIENT_METHODS:  # as the SDK answers params its method's model refuses
        return _error(
            request_id, INVALID_PARAMS, f"Invalid request parameters: params is {_kind(params)}, not an object"
        )
    return _error(request_id, INVALID_REQUEST, f"Invalid Request: params is {_kind(params)}, not an object")


def _is_request_id(value: Any) -> bool:
    """Whether `value` is an id MCP accepts: a string or an integer (JSON true is no integer)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _kind(value: Any) -> str:
    """`value`'s JSON type, as a refusal names it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    kinds = {str: "a string", int: "an integer", dict: "an object", list: "an array", type(None): "null"}
    return kinds[type(value)]


def _error(request_id: RequestId | None, code: int, message: str) -> JSONRPCError:
    return JSONRPCError(
        jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=f"{message}. Nothing in it was read.")
    )
