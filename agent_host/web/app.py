"""The AG-UI application: `POST /agent` streams a run as SSE, `/` is the browser chat.

Requests are parsed with the protocol package's own `RunAgentInput` and every event is encoded
with its `EventEncoder`, so the wire is the protocol's, not a look-alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from ag_ui.core import AgentCapabilities, BaseEvent, HumanInTheLoopCapabilities, RunAgentInput
from ag_ui.encoder import EventEncoder
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from agent_host.json_keys import KeyGivenTwice, unique_keys
from agent_host.web.guard import Guard
from agent_host.web.headers import Secured
from agent_host.web.runs import Idle, RunDriver

STATIC = Path(__file__).parent / "static"
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_BODY = 1_000_000
"""Bytes of run input accepted: the host only needs the last user message."""

CAPABILITIES = AgentCapabilities(
    human_in_the_loop=HumanInTheLoopCapabilities(
        supported=True, approvals=True, interrupts=True, interventions=False, feedback=False, approve_with_edits=False
    )
)


def create_app(driver: RunDriver, *, token: str | None = None, names: Iterable[str] = ()) -> ASGIApp:
    """The web front end for `driver`'s runs, behind the `agent_host.web.guard.Guard`, every response `Secured`."""

    async def run(request: Request) -> Response:
        body = await _bounded_body(request)
        if body is None:
            return _problem(413, f"The run input is larger than {MAX_BODY} bytes.")
        twice = _key_given_twice(body)
        if twice is not None:
            return _problem(422, f"The body gives the key {twice!r} more than once in one object; send each key once.")
        try:
            run_input = RunAgentInput.model_validate_json(body)
        except ValidationError as error:
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in error.errors()})
            return _problem(422, f"The body is not a valid AG-UI RunAgentInput (problems at: {', '.join(fields)}).")
        encoder = EventEncoder(accept=request.headers.get("accept", ""))
        return StreamingResponse(
            _encoded(encoder, driver.run(run_input)),
            media_type=encoder.get_content_type(),
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def capabilities(request: Request) -> Response:
        return JSONResponse(CAPABILITIES.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Secured(  # outermost: the server error handler's 500 too
        Starlette(
            routes=[
                Route("/", page),
                Route("/healthz", healthz),
                Route("/agent", run, methods=["POST"]),
                Route("/agent/capabilities", capabilities),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ],
            middleware=[Middleware(Guard, token=token, names=tuple(names))],
        )
    )


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or `None` past `MAX_BODY`: refused on its declared length or its first excess
    chunk, never buffered whole, so a huge or endless upload cannot exhaust the server's memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


def _key_given_twice(body: bytes) -> str | None:
    """A key some object of `body` gives twice (its first 40 characters), if any (`json_keys`); invalid JSON is
    left to the protocol's parser to name."""
    try:
        json.loads(body, object_pairs_hook=unique_keys)
    except KeyGivenTwice as twice:
        return twice.key[:40]
    except (ValueError, RecursionError):
        return None
    return None


KEEPALIVE = ": keepalive\n\n"
"""An SSE comment: it keeps proxies from closing a quiet stream, and every SSE reader skips it."""


async def _encoded(encoder: EventEncoder, events: AsyncIterator[BaseEvent | Idle]) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, Idle):
            yield KEEPALIVE
            continue
        try:
            yield encoder.encode(event)
        except PydanticSerializationError:  # text UTF-8 cannot carry: the stream would break off mid-run
            yield encoder.encode(_valid_unicode(event))


def _valid_unicode(event: BaseEvent) -> BaseEvent:
    """`event` with each lone surrogate (JSON from the model or the service may escape one, `"\\ud800"`, but
    it is no character) replaced by U+FFFD, as a UTF-8 decoder shows what it cannot read."""
    return type(event).model_validate(_replaced(event.model_dump()))


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {key: _replaced(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item) for item in value]
    return value


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
