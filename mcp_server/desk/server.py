"""Where the desk runs: mounted at `/desk` beside `/mcp` on the HTTP transport, or on a loopback port
of its own beside stdio (a desktop assistant's user needs a page to approve at)."""

import logging
import socket
import threading
from urllib.parse import urlsplit

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.config import (
    DEFAULT_STDIO_PORT,
    DESK_PATH,
    DeskConfig,
    DeskConfigError,
    default_desk_url,
    desk_config,
)
from mcp_server.desk.guard import Secured
from mcp_server.desk.presence import Presence
from mcp_server.desk.web import Desk
from mcp_server.http.app import transport_security
from mcp_server.settings import Settings
from mcp_server.storage.database import Database

log = logging.getLogger(__name__)


def public_desk_url(settings: Settings, port: int) -> str:
    """The configured desk URL; else the public MCP URL's origin + /desk; else localhost on `port`."""
    if settings.desk_url:
        return settings.desk_url
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        return f"{parts.scheme}://{parts.netloc}{DESK_PATH}"
    return default_desk_url(port)


def settings_desk_config(settings: Settings, port: int, security: TransportSecuritySettings) -> DeskConfig:
    """`desk_config` of the settings' desk URL; one taken from BANKGATE_PUBLIC_URL is refused naming that setting
    and the ways out, since the operator never wrote a desk URL."""
    url = public_desk_url(settings, port)
    try:
        return desk_config(url, security)
    except DeskConfigError as refused:
        if settings.desk_url or not settings.public_url:
            raise
        raise DeskConfigError(
            f"{refused} (the desk's default URL, from BANKGATE_PUBLIC_URL's origin); set BANKGATE_DESK_URL "
            "(--desk-url) to the https address approvers use, or turn the desk off with --no-desk"
        ) from None


def served_port(settings: Settings) -> int:
    """The port the desk's default URL names: the HTTP port, or the stdio desk port."""
    return settings.port if settings.transport == "http" else settings.desk_port or DEFAULT_STDIO_PORT


def config_for(settings: Settings, port: int) -> DeskConfig:
    """The desk's URL and the Host/Origin allowlist of `/mcp` served on `port`, plus the desk URL's own."""
    security = transport_security(settings.model_copy(update={"port": port}))
    return settings_desk_config(settings, port, security)


def desk_routes(db: Database, audit: AuditWriter, settings: Settings) -> list[BaseRoute]:
    """The desk for the HTTP app, at /desk."""
    config = config_for(settings, settings.port)
    if not settings.is_loopback and config.rp_id == "localhost":
        log.warning(
            "the approval desk's URL is %s: set BANKGATE_DESK_URL to the https address approvers use", config.url
        )
    return Desk(db, audit, config).routes()


class StdioDesk:
    """The desk on a loopback port, served by uvicorn on a daemon thread beside the stdio server."""

    def __init__(self, db: Database, audit: AuditWriter, settings: Settings, sockets: list[socket.socket]) -> None:
        """Served on `sockets` (`desk_listeners`, bound before the ledger opened)."""
        self.sockets = sockets
        self.port: int = self.sockets[0].getsockname()[1]
        self.config = config_for(settings, self.port)
        app = Secured(Starlette(routes=Desk(db, audit, self.config).routes()))  # the whole server is the desk's
        # uvicorn's own log lines would go to stderr too; keep them to warnings (stdout stays MCP's). No proxy
        # stands before a loopback port: X-Forwarded-For from any local client would name its sign-ins' address.
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off", proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True)
        # Recorded only where the links follow the port taken: a fixed desk URL is refused a taken port instead.
        fixed = settings.desk_url or settings.public_url
        self.presence = None if fixed else Presence(db, self.port)

    def start(self) -> str:
        self.thread.start()
        if self.presence is not None:
            self.presence.start()
        return self.config.url + "/"

    def withdraw(self) -> None:
        """Take the port out of the ledger's live desks (`presence`), as the process exits: its thread ends with it."""
        if self.presence is not None:
            self.presence.stop()

    def stop(self) -> None:
        self.withdraw()
        self.server.should_exit = True
        self.thread.join(5)
