"""The stdio wire: every line on stdin is one JSON-RPC message, or is answered as JSON-RPC 2.0 says.

The SDK's `stdio_server` reads stdin with `errors="replace"` (bytes that are not UTF-8 turned into U+FFFD,
so a memo the client never sent ran), ends a line at a lone CR too (cutting in two a message whose JSON
whitespace holds one), and drops a line that is no message at debug level (its client waits for an answer
that never comes). Here stdin ends lines at LF alone and keeps bytes that are not UTF-8 as lone surrogates,
which the SDK's parser refuses; each line refused is answered with one error of id null: -32700 when it is
not JSON (or not UTF-8), -32600 when it is JSON but no JSON-RPC message. A blank line is no message.
"""

import io
import os
from contextlib import suppress
from types import TracebackType
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError


async def serve_stdio(server: MCPServer[Any]) -> None:
    """`server.run()` on stdio (`MCPServer.run_stdio_async`), with stdin read as the module says."""
    lowlevel = server._lowlevel_server  # what run_stdio_async runs; the SDK has no public stdio hook
    async with stdio_server(stdin=anyio.wrap_file(_stdin())) as (read_stream, write_stream):
        messages = AnsweredStream(read_stream, write_stream)
        await lowlevel.run(messages, write_stream, lowlevel.create_initialization_options())


def _stdin() -> io.TextIOWrapper:
    """The client's bytes from a private duplicate of fd 0, while fd 0 reads the null device (as the SDK's
    own claim does: nothing else in the process can take the client's bytes)."""
    wire = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return io.TextIOWrapper(open(wire, "rb"), encoding="utf-8", errors="surrogateescape", newline="\n")


class AnsweredStream:
    """The SDK's stream of parsed lines, minus the lines it could not parse, each answered on `answers`."""

    def __init__(self, lines: ReadStream[SessionMessage | Exception], answers: WriteStream[SessionMessage]) -> None:
        self._lines = lines
        self._answers = answers

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message (the SDK's runner reads it, when there is one)."""
        return getattr(self._lines, "last_context", None)

    async def receive(self) -> SessionMessage:
        while True:
            line = await self._lines.receive()
            if not isinstance(line, Exception):
                return line
            error = refusal(line)
            if error is not None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # the client is gone
                    await self._answers.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error)))

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


def refusal(problem: Exception) -> ErrorData | None:
    """The error answering a line the SDK could not parse (`problem`); None for a blank line."""
    errors = problem.errors() if isinstance(problem, ValidationError) else []
    kinds = {error["type"] for error in errors}
    if "string_unicode" in kinds:
        return ErrorData(code=PARSE_ERROR, message="Parse error: the line is not UTF-8 text; nothing in it was read.")
    if "json_invalid" in kinds:
        line = errors[0]["input"]
        if isinstance(line, str) and not line.strip():
            return None
        message = f"Parse error: the line is not one JSON value ({errors[0]['msg']}); nothing in it was read."
        return ErrorData(code=PARSE_ERROR, message=message)
    if any(isinstance(error["input"], list) and len(error["loc"]) == 1 for error in errors):
        message = "Invalid Request: a batch (a JSON array) is not accepted; send each message on its own line."
    else:
        message = "Invalid Request: the line is not a JSON-RPC 2.0 request, notification or response object."
    return ErrorData(code=INVALID_REQUEST, message=f"{message} Nothing in it was read.")
