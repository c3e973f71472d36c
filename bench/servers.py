"""Starting bankgate and the bare baseline side by side, on the same transports, with the benchmark's own audit key."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mcp_server.audit.writer import AuditWriter
from mcp_server.settings import Settings

TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


QUESTIONS_AT_ONCE = "1000"
"""`--max-pending-approvals` for bankgate and the required-work bound under load: every bench client acts as the one
principal `local`, each with a question of its own open at a time, so the cap must pass the most clients (256)."""


def audit_key(workdir: Path) -> Path:
    """A benchmark's own audit signing key, beside its throwaway ledger in `workdir`: the default (`audit.key` in the
    user data dir) is the operator's real key, which a benchmark must neither read nor create."""
    return workdir / "audit.key"


def bench_audit(workdir: Path) -> AuditWriter:
    """The audit writer of a benchmark's own setup (deposits, grants), signing with `audit_key(workdir)`."""
    return AuditWriter(audit_key(workdir))


def bench_settings(workdir: Path, db_url: str | None = None, **more: Any) -> Settings:
    """bankgate's settings for an in-process server in a benchmark's `workdir`: on `db_url` (default a SQLite ledger
    there), signing with `audit_key(workdir)`, no `.env` read."""
    url = db_url or f"sqlite:///{workdir / 'ledger.db'}"
    return Settings(db_url=url, audit_key_file=audit_key(workdir), _env_file=None, **more)  # type: ignore[call-arg]


def ours_args(db_url: str, workdir: Path, *extra: str) -> list[str]:
    """`serve` on a benchmark's ledger, signing with `audit_key(workdir)` (the key its in-process checks read)."""
    serve = ["-m", "mcp_server", "serve", "--db", db_url, "--audit-key-file", str(audit_key(workdir))]
    serve += ["--log-level", "WARNING"]
    return [*serve, "--max-pending-approvals", QUESTIONS_AT_ONCE, *extra]


BARE_ARGS = ["-m", "bench.bare_server"]


def required_args(db_url: str) -> list[str]:
    """`bench.required_server` on `db_url`, as `bench.load` runs it beside bankgate: under the same cap."""
    return ["-m", "bench.required_server", "--db", db_url, "--max-pending-approvals", QUESTIONS_AT_ONCE]


def stdio_params(args: list[str]) -> StdioServerParameters:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": os.getcwd()}
    return StdioServerParameters(command=sys.executable, args=args, env=env)


@contextmanager
def http_server(args: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server subprocess on a free loopback port; yield its MCP URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *args, "--transport", "http", "--port", str(port)],
        # `local` is the demo ledger's operator, entitled to every account.
        env={**os.environ, "BANKGATE_TOKENS": f"local={TOKEN}", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"server {args} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def http_client(url: str, **kwargs: Any) -> Client:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers)), **kwargs)
