"""One way to reach the server over each transport, and a test-side view of its ledger.

`memory` builds the server in-process; `stdio` launches `python -m mcp_server serve` per
client (as a desktop assistant does); `http` talks to one `serve --transport http`
subprocess on a free loopback port. All three share one SQLite file with the test, which
reads balances and audit records straight from it.

Behaviour is tested in process (`IN_PROCESS`, the `harness` fixture's default): the server's
logic is the same whatever carries its messages. A scenario marked `over_every_transport` also
runs over stdio and HTTP: together those make the transport conformance set, proving each wire
carries every kind of exchange the in-process scenarios rely on.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import text

from mcp_server.app import build_server, open_state
from mcp_server.audit.keys import KEY_FILE_ENV
from mcp_server.ledger.books import Ledger
from mcp_server.settings import Settings
from mcp_server.storage.database import Database
from policy.testing import ScriptedResponder
from tests.support import APPROVAL_TIMEOUT, TEST_POLICY, TOKENS, free_port, postgres_schema, serve_args

IN_PROCESS = ["memory", pytest.param("memory-postgresql", marks=pytest.mark.postgres)]
TRANSPORTS = ["memory", "stdio", "http", pytest.param("memory-postgresql", marks=pytest.mark.postgres)]
over_every_transport = pytest.mark.parametrize("harness", TRANSPORTS, indirect=True)
"""Run the scenario over stdio and HTTP as well as in process: a member of the conformance set."""
over_http = pytest.mark.parametrize("harness", ["http"], indirect=True)
"""Run the scenario over HTTP only (what only HTTP has, e.g. authenticated principals)."""


class HttpServer:
    """`bankgate-mcp serve --transport http` as a subprocess, up until `stop()`."""

    def __init__(self, db_url: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        tokens = ";".join(f"{p}={t}" for p, t in TOKENS.items())
        # A file, not a pipe: nobody reads the log while tests run, and a full pipe would stall the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, *serve_args(db_url, "--transport", "http", "--port", str(self.port), *extra)],
            env={**os.environ, "BANKGATE_TOKENS": tokens, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode(errors='replace')}")
            try:
                if httpx2.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the HTTP server did not become healthy")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Harness:
    transport: str
    db_url: str
    http: HttpServer | None = None
    policy: Path = TEST_POLICY

    def __post_init__(self) -> None:
        self.db = Database.open(self.db_url)
        self.ledger = Ledger(self.db)
        self._owners = 0

    def settings(self, principal: str = "local") -> Settings:
        return Settings(
            db_url=self.db_url,
            policy=self.policy,
            approval_timeout=APPROVAL_TIMEOUT,
            seed_demo=False,
            principal=principal,
            _env_file=None,  # type: ignore[call-arg]
        )

    @asynccontextmanager
    async def client(
        self, responder: ScriptedResponder | None = None, *, mode: str = "auto", principal: str = "local"
    ) -> AsyncIterator[Client]:
        callback = responder if responder is not None else None
        if self.transport == "memory":
            settings = self.settings(principal)
            state = open_state(settings)
            try:  # its connections closed with it: tests open hundreds of servers, PostgreSQL allows 100 clients
                async with Client(build_server(state, settings), elicitation_callback=callback, mode=mode) as client:
                    yield client
            finally:
                state.ledger.db.close()
            return
        target: Any
        if self.transport == "stdio":
            env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
            env |= {name: value for name, value in os.environ.items() if name == KEY_FILE_ENV}  # the run's audit key
            args = serve_args(self.db_url, "--principal", principal, "--policy", str(self.policy))
            target = StdioServerParameters(command=sys.executable, args=args, env=env)
        else:
            assert self.http is not None
            headers = {"Authorization": f"Bearer {TOKENS[principal]}"}
            target = streamable_http_client(self.http.url, http_client=httpx2.AsyncClient(headers=headers))
        async with Client(target, elicitation_callback=callback, mode=mode) as client:  # type: ignore[arg-type]
            yield client

    def open_account(self, balance: str, owner: str | None = None) -> str:
        self._owners += 1
        account = self.ledger.create_account(owner or f"Owner {self._owners}")
        if balance not in ("0", "0.00"):
            self.ledger.deposit(account.id, balance)
        return account.id

    def balance(self, account_id: str) -> int:
        return self.ledger.balance(account_id).balance_minor

    def audit(self, **match: Any) -> list[dict[str, Any]]:
        """Audit records whose columns equal `match` (JSON columns decoded), chain order, unchained ones last."""
        query = text("SELECT * FROM audit_log ORDER BY seq IS NULL, seq, rid")
        rows = self.db.read(lambda c: c.execute(query).mappings().all())
        records = []
        for row in rows:
            record = dict(row)
            for column in ("arguments_json", "matched_rules_json", "result_json"):
                record[column.removesuffix("_json")] = json.loads(record[column]) if record[column] else None
            records.append(record)
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def events(self, approval_ref: str) -> list[str]:
        return [r["event"] for r in self.audit(approval_ref=approval_ref)]


def postgres_harness() -> Iterator[Harness]:
    """An in-process harness on a fresh PostgreSQL schema (skips when none is configured)."""
    with postgres_schema("bankgate_server") as url:
        harness = Harness("memory", url)
        try:
            yield harness
        finally:
            harness.db.close()
