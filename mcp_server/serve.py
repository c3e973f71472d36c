"""Running the server: stdio for desktop assistants, Streamable HTTP under uvicorn."""

import logging
import sys

import uvicorn

from mcp_server.app import build_server, open_state
from mcp_server.auth import parse_tokens
from mcp_server.http_app import build_http_app, check_http_settings
from mcp_server.settings import Settings

log = logging.getLogger("bankgate")


def serve(settings: Settings) -> None:
    # stdout is the protocol on stdio: every log line goes to stderr.
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if settings.transport == "http":
        tokens = parse_tokens(settings.tokens.get_secret_value() if settings.tokens else None, settings.token_file)
        warnings = check_http_settings(settings, tokens)
    state = open_state(settings)
    server = build_server(state, settings)
    policy = state.gate.policy
    log.info("ledger %s; policy %s (%s)", _redacted(settings.db_url), policy.source, policy.version)
    if settings.transport == "stdio":
        server.run()
        return
    for warning in warnings:
        log.warning(warning)
    app = build_http_app(server, state, settings, tokens)
    log.info("serving MCP at http://%s:%d/mcp (health: /healthz)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else url
