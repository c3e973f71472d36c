"""Running the server: stdio for desktop assistants, Streamable HTTP under uvicorn."""

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable

import anyio
import uvicorn

from mcp_server.app import AppState, build_server, open_state
from mcp_server.desk.listeners import desk_listeners
from mcp_server.heap import settle_heap
from mcp_server.http.app import ConfigError, build_http_app, check_http_settings
from mcp_server.http.drain import STOP_GRACE, Drain, DrainingServer
from mcp_server.http.head_deadline import head_deadline
from mcp_server.http.listener import tcp_listener
from mcp_server.http.proxies import proxy_options
from mcp_server.http.token_file import StaticTokens
from mcp_server.logs import configure_logging
from mcp_server.settings import Settings
from mcp_server.stdio_wire import serve_stdio
from mcp_server.storage.database import redacted_url

log = logging.getLogger("bankgate")

_BEFORE_EXIT: list[Callable[[], None]] = []
"""Run by `_exit` however the process ends (its client gone, SIGINT): `os._exit` runs no `finally`, so a desk beside
stdio is withdrawn here, or its recorded port stayed live for a minute and `approvers add` linked to it."""
BEFORE_EXIT_WAIT_S = 1.0
"""How long `_exit` waits for `_BEFORE_EXIT`: a ledger locked by another writer held the exit for 15 s (the retries'
deadline); a port not withdrawn goes stale within a minute anyway."""

WAITING = (
    "bankgate-mcp: waiting for an MCP client on stdin (the stdio transport is for an assistant to launch; "
    "Ctrl-C stops, `serve --transport http` serves a port)"
)


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    listener: socket.socket | None = None
    desk_sockets: list[socket.socket] = []
    if settings.transport == "http":
        tokens = StaticTokens(settings.tokens.get_secret_value() if settings.tokens else None, settings.token_file)
        warnings = check_http_settings(settings, tokens)
        listener = _listen(settings.host, settings.port)  # before the ledger opens: a taken port changes nothing
    else:
        _check_stdio()
        if settings.desk:  # before the ledger opens, as the HTTP port is
            desk_sockets = desk_listeners(settings)
    state = open_state(settings, create=settings.creates_ledger, seed=settings.seeds_demo)
    if state.clock is not None:
        state.clock.check()  # deadlines read on a clock off the database's would be wrong by as much
    server = build_server(state, settings)
    policy = state.gate.policy
    log.info("ledger %s; policy %s (%s)", redacted_url(settings.db_url), policy.source, policy.version)
    for warning in policy.warnings:
        log.warning("policy: %s", warning)
    if listener is None:
        if desk_sockets:
            _start_desk(state, settings, desk_sockets)
        settle_heap()
        _serve_stdio(lambda: anyio.run(_interruptible, lambda: serve_stdio(server)))
        return
    for warning in warnings:
        log.warning(warning)
    drain = Drain(state.waits, settings.drain_timeout)
    app = build_http_app(server, state, settings, tokens, drain)
    settle_heap()
    log.info("serving MCP at http://%s:%d/mcp (health: /healthz)", settings.host, settings.port)
    config = uvicorn.Config(
        app,
        http=head_deadline(settings.header_timeout),
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=STOP_GRACE,
        **proxy_options(settings.forwarded_allow_ips),
    )
    http_server = DrainingServer(config, drain)
    try:
        http_server.run(sockets=[listener])
    except KeyboardInterrupt:  # SIGINT as a second signal: uvicorn stopped, then raised it again
        _exit(130)
    _exit_served(130 if http_server.stopped_by == signal.SIGINT else 0)


def _start_desk(state: AppState, settings: Settings, sockets: list[socket.socket]) -> None:
    """The approval desk on a loopback port beside stdio; its address on stderr (stdout is MCP's)."""
    from mcp_server.desk.server import StdioDesk

    desk = StdioDesk(
        state.ledger.db, state.sequencer.sequencer.writer, settings, sockets
    )  # the server's writer (as on HTTP)
    state.desk = desk.config  # the port actually taken: the links the tools hand out name it
    url = desk.start()
    _BEFORE_EXIT.append(desk.withdraw)
    print(f"bankgate-mcp: approval desk at {url}", file=sys.stderr, flush=True)


def _check_stdio() -> None:
    """Before the ledger opens: a process started with fd 0 or 1 closed has no wire (Python sets no
    `sys.stdin`/`sys.stdout`), which would otherwise surface as an AttributeError mid-start."""
    for name in ("stdin", "stdout"):
        if getattr(sys, name) is None:
            raise ConfigError(
                f"{name} is closed: the stdio transport speaks MCP over stdin and stdout, which the MCP client "
                "that launches bankgate-mcp opens; to serve a port instead use --transport http"
            )


def _serve_stdio(run: Callable[[], None]) -> None:
    """Serve on stdin/stdout; typed into a terminal, say so. SIGINT stops at once, as SIGTERM does.

    The SDK reads stdin on a worker thread that SIGINT cannot interrupt, so the process would
    stay until stdin ended (in a terminal, until Enter; from a client, until it closed the pipe).
    Every ledger write is one transaction and an open question stays pending for the caller's
    retry, so exiting on the spot loses nothing. A client that exits closes stdout too: the SDK's
    writer then fails with a broken pipe, which is that client gone, not an error. Once the client is
    gone every call has ended, and the process exits without waiting for worker threads (see `_exit_served`).
    """
    if sys.stdin.isatty():
        print(WAITING, file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, _exit_on_interrupt)
    try:
        run()
    except* BrokenPipeError:  # the client closed stdout (it exited): gone, as at the end of stdin
        log.info("the MCP client closed stdout; stopped")
    _exit_served()


async def _interruptible(serving: Callable[[], Awaitable[None]]) -> None:
    """`serving()`, with SIGINT handled by the event loop from now on.

    A handler set by `signal.signal` runs only once the main thread runs Python again: a SIGINT landing
    just before the loop blocks in its wait for I/O (or on another thread) sat unhandled until something
    woke the loop (1 in 3–6 Ctrl-Cs sent as the server began reading stdin, on a busy machine). The loop's
    handler is told through its wake-up pipe, which that wait watches.
    """
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, _exit_on_interrupt, signal.SIGINT, None)
    await serving()


def _exit_on_interrupt(_signum: int, _frame: object) -> None:
    print("bankgate-mcp: stopped", file=sys.stderr, flush=True)
    _exit(130)


def _exit_served(code: int = 0) -> None:
    """Exit with `code` once serving has ended (its calls answered or cut off, the audit chained as the lifespan
    ended), not waiting for worker threads: a call cut off, or given up on past its database deadline, may have left
    one in a transaction waiting for a lock (on PostgreSQL, without end), and the process would have stayed with it."""
    _exit(code)


def _exit(code: int) -> None:
    """Exit now, whatever threads still run: every ledger write is one transaction, so a write cut off leaves
    nothing half done, and a question left open stays pending for the caller's retry."""
    last = threading.Thread(target=lambda: [done() for done in _BEFORE_EXIT], name="before-exit", daemon=True)
    last.start()
    last.join(BEFORE_EXIT_WAIT_S)
    logging.shutdown()
    os._exit(code)


def _listen(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound now, so a taken port is one line instead of a traceback after startup."""
    try:
        return tcp_listener(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another bankgate-mcp, or the Foundry emulator?); "
                "choose another with --port or BANKGATE_PORT"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port") from exc
