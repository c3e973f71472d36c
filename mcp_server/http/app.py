"""Streamable HTTP: the MCP endpoint behind bearer auth and Host/Origin checks, plus cached health probes.

Secure by default: a token is required unless explicitly disabled (loopback only), the
Host/Origin allowlist is always explicit (also when binding 0.0.0.0, where the SDK would
otherwise switch it off), and request bodies are bounded.
"""

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from mcp_server.app import AppState
from mcp_server.http.auth import check_oauth_settings, token_verifier
from mcp_server.http.drain import Drain
from mcp_server.http.health import HealthProbe
from mcp_server.http.session_quota import SessionQuota
from mcp_server.http.token_file import StaticTokens
from mcp_server.settings import Settings

MCP_PATH = "/mcp"
log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration the server refuses to start with; the message says what to change."""


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Loopback names on the served port, the bound address, and whatever was added explicitly."""
    port = settings.port
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"]
    if not settings.is_loopback and settings.host not in ("0.0.0.0", "::"):
        bound = f"[{settings.host}]" if ":" in settings.host else settings.host  # as a URL names an IPv6 address
        hosts.append(f"{bound}:{port}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + settings.allowed_hosts,
        allowed_origins=origins + settings.allowed_origins,
    )


def check_http_settings(settings: Settings, tokens: StaticTokens) -> list[str]:
    """Refuse unsafe configurations; return warnings for risky but legal ones."""
    if settings.no_auth and not settings.is_loopback:
        raise ConfigError(
            f"refusing to serve without authentication on {settings.host}: --no-auth is for loopback "
            "addresses only; configure tokens (BANKGATE_TOKENS or --token-file) instead"
        )
    check_oauth_settings(settings)
    if not settings.no_auth and not tokens.names and settings.oauth_issuer is None:
        raise ConfigError(
            "HTTP needs bearer tokens: set BANKGATE_TOKENS='principal=token' or --token-file FILE, or an OAuth "
            "issuer (BANKGATE_OAUTH_ISSUER) (or --no-auth on a loopback address for local development)"
        )
    warnings = []
    if settings.stateless:
        if not settings.state_keys():
            raise ConfigError(
                "--stateless needs a shared request-state key ring (BANKGATE_REQUEST_STATE_KEYS), so that "
                "an approval round started on one replica can finish on another"
            )
        warnings.append(
            "stateless mode: clients on protocol 2025-11-25 cannot answer approval questions, so every "
            "gated call from them is denied; serve them from a stateful (sticky) deployment"
        )
    if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
        warnings.append(
            f"bound to {settings.host} with only loopback Host names allowed: remote clients get 421 until "
            "their Host is added with --allowed-host"
        )
    return warnings


def build_http_app(
    server: MCPServer[AppState],
    state: AppState,
    settings: Settings,
    tokens: StaticTokens,
    drain: Drain | None = None,
) -> Starlette:
    """The ASGI app; `drain`: the one the server's SIGTERM begins (`mcp_server.http.drain`), else one never begun."""
    drain = drain if drain is not None else Drain(state.waits, settings.drain_timeout)
    server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=settings.stateless,
        max_request_body_size=settings.max_body_bytes,
        transport_security=transport_security(settings),
        host=settings.host,
    )
    endpoint: ASGIApp = StreamableHTTPASGIApp(server.session_manager)
    middleware: list[Middleware] = []
    discovery: list[Route] = []
    if not settings.no_auth:
        verifier, metadata_url, discovery = token_verifier(settings, tokens)
        if not settings.stateless:
            limit = settings.max_sessions_per_principal
            endpoint = SessionQuota(endpoint, limit, server.session_manager.session_idle_timeout or math.inf)
        endpoint = RequireAuthMiddleware(endpoint, settings.oauth_scopes, metadata_url)
        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(verifier)),
            Middleware(AuthContextMiddleware),
        ]

    probe = HealthProbe(state.ledger.db.ping, interval=settings.health_interval)

    async def healthz(_: Request) -> JSONResponse:
        database = await probe.database()
        return JSONResponse({"status": "ok", "database": database})

    async def readyz(_: Request) -> JSONResponse:
        database = await probe.database()
        clock = "ok" if state.clock is None or state.clock.agrees else "off"  # as measured by the last sweep
        status = "draining" if drain.draining else "ready" if database == clock == "ok" else "unavailable"
        body = {"status": status, "database": database, "clock": clock}
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    desk: list[BaseRoute] = []
    if settings.desk:
        from mcp_server.desk.server import desk_routes

        # The server's own writer: its sequencer wakes for the desk's records and trusts them without a signature check.
        desk = desk_routes(state.ledger.db, state.sequencer.sequencer.writer, settings)
    return Starlette(
        routes=[  # the MCP endpoint first: routes are tried in order, and nearly every request is for it
            Route(MCP_PATH, endpoint=drain.guard(endpoint)),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *discovery,
            *desk,
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
