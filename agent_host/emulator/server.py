"""Running the emulator: uvicorn on 127.0.0.1, in a background thread or in the foreground (CLI)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio.to_thread
import uvicorn

from agent_host.emulator.app import create_app
from agent_host.emulator.faults import FaultConfig, FaultInjector
from agent_host.emulator.responses import DEFAULT_RUN_LIFETIME_S
from agent_host.foundry.dev_token import DEV_TOKEN, DevTokenCredential

HOST = "127.0.0.1"
"""The only address the emulator binds: it is a development tool with a well-known token."""

DEFAULT_PROJECT = "bankgate-dev"
_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EmulatorConfig:
    """How to run an emulator; `port=0` picks a free port."""

    project: str = DEFAULT_PROJECT
    token: str = DEV_TOKEN
    port: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    run_lifetime: float = DEFAULT_RUN_LIFETIME_S
    """Seconds after which a response waiting for function call outputs expires (Foundry: 600)."""

    def __post_init__(self) -> None:
        if not _PROJECT.fullmatch(self.project):
            raise ValueError(f"invalid project name {self.project!r}: use letters, digits, '-' or '_'")
        if not self.token or any(c.isspace() or c == "@" for c in self.token):
            raise ValueError("the token must be non-empty without whitespace or '@'")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port {self.port}")
        if not self.run_lifetime > 0:
            raise ValueError("the run lifetime must be > 0 seconds")


class Emulator:
    """An emulator bound to a loopback port: use as a context manager, or `serve_forever`.

    The socket is bound on construction, so `endpoint` is known before serving starts.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, log_level: str | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultInjector(self.config.faults)
        """Re-arm with `FaultInjector.arm`; read counts from `FaultInjector.stats`."""
        self._socket = _listen(self.config.port)
        self.port: int = self._socket.getsockname()[1]
        app = create_app(self.config.project, self.config.token, self.faults, run_lifetime=self.config.run_lifetime)
        logging: dict[str, Any] = {"log_level": log_level} if log_level else {"log_config": None}
        self._server = uvicorn.Server(
            uvicorn.Config(app, lifespan="off", timeout_graceful_shutdown=1, access_log=bool(log_level), **logging)
        )
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The project endpoint, as `AIProjectClient(endpoint=...)` takes it."""
        return f"http://{HOST}:{self.port}/api/projects/{self.config.project}"

    @property
    def token(self) -> str:
        return self.config.token

    def credential(self) -> DevTokenCredential:
        """A token credential for this emulator's token."""
        return DevTokenCredential(self.config.token)

    def serve_forever(self) -> None:
        """Serve in the calling (main) thread until Ctrl-C / SIGTERM."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self) -> None:
        """Serve in a daemon thread; returns once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        self._thread = threading.Thread(target=self.serve_forever, name=f"emulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator failed to start; see the log for uvicorn's error")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the emulator did not start within {_START_TIMEOUT_S:g} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end (idempotent)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_S)
        self._socket.close()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1.

    The protocol is given explicitly: asyncio enables TCP_NODELAY only on sockets whose `proto` is
    TCP, and without it every keep-alive request stalls ~40 ms on delayed ACKs.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def running_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    """`async with running_emulator() as emu:` -- an emulator in a background thread.

    The server has its own thread and event loop, so blocking SDK calls made from the caller's
    loop cannot deadlock it.
    """
    emulator = Emulator(config)
    await anyio.to_thread.run_sync(emulator.start)
    try:
        yield emulator
    finally:
        await anyio.to_thread.run_sync(emulator.stop)
