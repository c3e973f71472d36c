"""The Starlette application: Foundry project routes for agents and the Responses API."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from agent_host.emulator.agents import AgentStore
from agent_host.emulator.auth import authenticate
from agent_host.emulator.errors import ApiError, invalid_request
from agent_host.emulator.faults import FaultInjector
from agent_host.emulator.items import new_id
from agent_host.emulator.responses import DEFAULT_RUN_LIFETIME_S, ResponseService
from agent_host.emulator.streaming import encode_event, response_events, with_call_ids

Handler = Callable[[Request], Awaitable[Response]]
logger = logging.getLogger(__name__)


def create_app(
    project: str, token: str, faults: FaultInjector | None = None, *, run_lifetime: float = DEFAULT_RUN_LIFETIME_S
) -> Starlette:
    """An emulator app serving `/api/projects/{project}`; requests need `Bearer <token>`."""
    agents = AgentStore()
    responses = ResponseService(agents, run_lifetime)
    injector = faults or FaultInjector()

    def guarded(family: Literal["agents", "responses"], handler: Handler) -> Handler:
        """Authenticate, apply faults, and turn `ApiError` into its JSON response."""

        async def endpoint(request: Request) -> Response:
            try:
                authenticate(request.headers.get("authorization"), token)
                delay, fault = injector.admit(family)
                if delay:
                    await anyio.sleep(delay)
                if fault:
                    raise fault
                response = await handler(request)
            except ApiError as error:
                response = error.response()
            except Exception:
                logger.exception("emulator bug while handling %s %s", request.method, request.url.path)
                response = ApiError(
                    500, "The emulator failed; see its log.", type="server_error", code="server_error"
                ).response()
            response.headers["x-request-id"] = new_id("req")
            return response

        return endpoint

    async def create_version(request: Request) -> Response:
        version = agents.create_version(request.path_params["name"], await _json_body(request))
        return JSONResponse(version.to_wire())

    async def list_versions(request: Request) -> Response:
        return JSONResponse(agents.list_page(request.path_params["name"], request.query_params))

    async def get_version(request: Request) -> Response:
        return JSONResponse(agents.get(request.path_params["name"], request.path_params["version"]).to_wire())

    async def get_agent(request: Request) -> Response:
        return JSONResponse(agents.agent_object(request.path_params["name"]))

    async def create_response(request: Request) -> Response:
        body = await _json_body(request)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise invalid_request("Invalid type for 'stream': expected a boolean.", "stream")
        shape = injector.shape
        response = with_call_ids(responses.create(body), shape != "calls_without_id")
        if not stream:
            return JSONResponse(response)
        return StreamingResponse(
            _sse(response_events(response, shape), injector.event_delay),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def get_response(request: Request) -> Response:
        return JSONResponse(responses.get(request.path_params["response_id"]))

    project_routes = [
        Route("/agents/{name}/versions", guarded("agents", create_version), methods=["POST"]),
        Route("/agents/{name}/versions", guarded("agents", list_versions), methods=["GET"]),
        Route("/agents/{name}/versions/{version}", guarded("agents", get_version), methods=["GET"]),
        Route("/agents/{name}", guarded("agents", get_agent), methods=["GET"]),
        Route("/openai/v1/responses", guarded("responses", create_response), methods=["POST"]),
        Route("/openai/v1/responses/{response_id}", guarded("responses", get_response), methods=["GET"]),
    ]
    return Starlette(
        routes=[Mount(f"/api/projects/{project}", routes=project_routes)],
        exception_handlers={HTTPException: _http_error},
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise invalid_request("We could not parse the JSON body of your request.", None) from None
    if not isinstance(body, dict):
        raise invalid_request("Invalid request body: expected a JSON object.", None)
    return body


async def _sse(events: list[dict[str, Any]], pause: float) -> AsyncIterator[bytes]:
    """The events as SSE blocks, `pause` seconds apart after the first (a stalling stream)."""
    for number, event in enumerate(events):
        if number and pause:
            await anyio.sleep(pause)
        yield encode_event(event)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the same JSON error envelope as everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"No route for {request.method} {request.url.path}." if status in (404, 405) else str(exc)
    return ApiError(
        status, message, type="invalid_request_error", code="not_found" if status == 404 else None
    ).response()
