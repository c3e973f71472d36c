"""What the drills share: real server subprocesses to kill and restart, HTTP clients, the books.

`ServerProcess` differs from `tests.server.harness.HttpServer` where the drills need it to:
it can be SIGKILLed and restarted on the same port and database, its log goes to a file
(a pipe nobody drains would stall a busy server), and its pid is known (for RSS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import text

from mcp_server.audit.reader import verify
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from policy.testing import ScriptedResponder
from tests.support import TOKENS, free_port, rss_kib, serve_args

SCALE = float(os.environ.get("BANKGATE_DRILL_SCALE", "1"))
"""Multiplies the drills' sizes (clients, transfers); the assertions stay the same at any scale."""

REPORT_ENV = "BANKGATE_DRILL_REPORT"
KEY_RING = "drill-ring-one-" + "1" * 32
OTHER_KEY_RING = "drill-ring-two-" + "2" * 32
READY_TIMEOUT = 30.0


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * SCALE))


def record(drill: str, **facts: Any) -> None:
    """Append what a drill measured to `$BANKGATE_DRILL_REPORT` (JSON lines), for docs/RESULTS.md."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"drill": drill, **facts}, sort_keys=True) + "\n")


class ServerProcess:
    """`bankgate-mcp serve --transport http` on a fixed loopback port, restartable on the same database."""

    def __init__(
        self,
        db_url: str,
        log_dir: Path,
        *extra: str,
        keys: str | None = KEY_RING,
        approval_timeout: float = 30.0,
        name: str = "server",
    ) -> None:
        self.db_url = db_url
        self.extra = extra
        self.keys = keys
        self.approval_timeout = approval_timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/mcp"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        args = serve_args(self.db_url, "--transport", "http", "--port", str(self.port))
        args += ["--approval-timeout", str(self.approval_timeout), "--log-level", "WARNING", *self.extra]
        env = {**os.environ, "BANKGATE_TOKENS": ";".join(f"{p}={t}" for p, t in TOKENS.items())}
        env.pop("BANKGATE_REQUEST_STATE_KEYS", None)
        if self.keys is not None:
            env["BANKGATE_REQUEST_STATE_KEYS"] = self.keys
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll `/healthz` until the server answers (whatever the database's state)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_tail()}")
            with suppress(httpx2.TransportError):
                if httpx2.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server on port {self.port} not ready after {timeout}s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; whatever was not committed is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str) -> httpx2.Response:
        return httpx2.get(f"{self.base}{path}", timeout=10)


@contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Start the servers together, wait until each answers, and always stop them."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@asynccontextmanager
async def connect(
    url: str,
    responder: ScriptedResponder | None = None,
    *,
    principal: str = "local",
    mode: str = "auto",
    timeout: float = 30.0,
) -> AsyncIterator[Client]:
    """An MCP client over HTTP as `principal`; it always declares form elicitation (an empty
    responder refuses any question it gets)."""
    responder = responder if responder is not None else ScriptedResponder()
    headers = {"Authorization": f"Bearer {TOKENS[principal]}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, elicitation_callback=responder, mode=mode) as client:  # type: ignore[arg-type]
            yield client


class Books:
    """The test's own view of a ledger database: accounts, memo counts, invariants, audit."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.db = Database.open(db_url)
        self.ledger = Ledger(self.db)

    def open_accounts(self, count: int, balance: str) -> list[str]:
        ids = []
        for n in range(count):
            account = self.ledger.create_account(f"Drill Owner {n}")
            if balance not in ("0", "0.00"):
                self.ledger.deposit(account.id, balance)
            ids.append(account.id)
        return ids

    def balance(self, account_id: str) -> int:
        return self.ledger.balance(account_id).balance_minor

    def customer_total(self) -> int:
        sql = text("SELECT COALESCE(SUM(balance_minor), 0) FROM accounts WHERE kind = 'customer'")
        return int(self.db.read(lambda conn: conn.execute(sql).scalar_one()))

    def memo_counts(self, prefix: str) -> Counter[str]:
        """How many ledger transactions carry each memo starting with `prefix`."""
        sql = text("SELECT memo, COUNT(*) FROM transactions WHERE memo LIKE :p GROUP BY memo")
        rows = self.db.read(lambda conn: conn.execute(sql, {"p": prefix + "%"}).all())
        return Counter({str(memo): int(n) for memo, n in rows})

    def events(self, approval_ref: str) -> list[str]:
        sql = text("SELECT event FROM audit_log WHERE approval_ref = :r ORDER BY seq IS NULL, seq, rid")
        return [str(e) for (e,) in self.db.read(lambda conn: conn.execute(sql, {"r": approval_ref}).all())]

    def unchained(self) -> int:
        """Audit records no sequencer has chained yet: each chaining the server still owes is a COMMIT of its own."""
        sql = text("SELECT COUNT(*) FROM audit_log WHERE seq IS NULL")
        return int(self.db.read(lambda conn: conn.execute(sql).scalar_one()))

    def approval_status(self, approval_ref: str) -> str:
        sql = text("SELECT status FROM approvals WHERE ref = :r")
        return str(self.db.read(lambda conn: conn.execute(sql, {"r": approval_ref}).scalar_one()))

    def assert_sound(self) -> int:
        """Ledger invariants hold and the audit chain verifies; returns the audit record count."""
        assert self.ledger.check_invariants() == []
        verified = verify(self.db)
        assert verified.findings == [], verified.findings
        return verified.records + verified.pending

    def close(self) -> None:
        self.db.close()


async def bounded(seconds: float, coro: Any) -> Any:
    """Await `coro` for at most `seconds` (every drill loop is bounded in time)."""
    with anyio.fail_after(seconds):
        return await coro
