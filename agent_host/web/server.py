"""The web front end on uvicorn, bound to a host: what `bankgate-agent serve` and the tests start."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn

from agent_host.errors import ConfigurationError
from agent_host.host import Host
from agent_host.web.app import create_app
from agent_host.web.guard import is_host_name, is_loopback
from agent_host.web.runs import RunDriver


@dataclass(frozen=True)
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8790
    """0 picks a free port (the URL yielded says which)."""
    token: str | None = None
    names: Sequence[str] = ()
    """Host names the server answers to besides the loopback ones (Host-header check)."""

    def check(self) -> None:
        """Before anything starts: a port bind() refuses would end a started lab in a traceback."""
        if not 0 <= self.port <= 65_535:
            raise ConfigurationError(f"--port must be from 0 to 65535 (0 picks a free one), not {self.port}.")
        if not is_loopback(self.host) and not self.token:
            raise ConfigurationError(
                f"Refusing to serve the web front end on {self.host} without a token.",
                "Set --token (or BANKGATE_WEB_TOKEN), or bind to 127.0.0.1.",
            )
        for name in self.names:
            if not is_host_name(name):  # the Host check compares names: this would match no request
                raise ConfigurationError(
                    f"--allowed-host {name!r} is not a host name.",
                    "Give the name alone (bank.example.internal, 10.0.0.5, [fd00::5]): no scheme, port or path.",
                )

    def listen(self) -> socket.socket:
        """The listening socket, bound before anything starts: uvicorn's own bind failure ends in `sys.exit`
        inside the event loop, which skipped every clean-up and left the process hung at exit."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            return socket.create_server((self.host, self.port), family=family)
        except OSError as error:
            raise ConfigurationError(
                f"The web front end cannot listen on {self.host}:{self.port} ({error.strerror}).",
                "Check --host, or choose another --port (--port 0 picks a free one).",
            ) from None


@dataclass(frozen=True)
class RunningWeb:
    url: str
    stopped: anyio.Event
    """Set when uvicorn stops on its own (it handles SIGINT/SIGTERM)."""


@asynccontextmanager
async def running_web(
    host: Host, driver: RunDriver, options: WebOptions, listener: socket.socket | None = None
) -> AsyncIterator[RunningWeb]:
    """Serve `driver`'s runs of `host`'s agent on `listener` (`options.listen()`, bound here if not given) until
    the block ends."""
    options.check()
    listener = listener or options.listen()
    names = (*options.names, options.host)
    app = create_app(driver, token=options.token, names=names)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tasks:
        driver.bind(lambda thread: host.conversation(stream=True, observer=thread), tasks)
        stopped = anyio.Event()

        async def serve() -> None:
            await server.serve(sockets=[listener])
            stopped.set()

        tasks.start_soon(serve)
        while not server.started:
            if server.should_exit:  # a stop signal during start-up
                raise ConfigurationError(
                    f"The web front end stopped before it served on {options.host}:{options.port}."
                )
            await anyio.sleep(0.02)
        port = listener.getsockname()[1]
        shown = f"[{options.host}]" if ":" in options.host else options.host
        try:
            yield RunningWeb(f"http://{shown}:{port}", stopped)
        finally:
            server.should_exit = True
            tasks.cancel_scope.cancel()
