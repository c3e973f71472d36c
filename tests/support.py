"""What more than one test folder needs, in one place, so no test imports `bench/` or another
folder's conftest: loopback ports and process memory, throwaway PostgreSQL schemas, how a test
starts the server and talks to it (tokens, the idempotency key, hand-driven approval rounds),
a fingerprint of the books, the Hypothesis profiles, threads started together to race, a clock moved by hand,
and a page served from another origin (a browser test's other site).
"""

from __future__ import annotations

import argparse
import http.server
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import mcp_types as types
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from mcp import Client
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

import policy
from mcp_server.http.token_file import StaticTokens
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.free_text import parse_memo
from mcp_server.ledger.identifiers import parse_account_id, parse_idempotency_key
from mcp_server.ledger.models import CloseReceipt, TransferReceipt
from mcp_server.ledger.money import amount_identity
from mcp_server.storage.database import Database
from policy.canonical import digest
from policy.idempotency_key import IDEMPOTENCY_KEY_META

# --- the machine -------------------------------------------------------------------------------


def http_status(sock: socket.socket) -> int:
    """The status code of the HTTP answer on `sock` (0 if the server closed without one)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def free_port() -> int:
    """A loopback port nobody listens on right now (for a server the test starts next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


WAITS_FOR_THE_LEDGER = "a worker thread runs it"
"""What a server logs (at DEBUG) when a call's ledger work would wait for another writer (`SqlGateStore._placed`):
the one sign that a call reached the ledger and waits for a write lock a test holds."""


def logged(path: Path, line: str, since: int = 0, within: float = 30.0) -> None:
    """Wait until the log at `path` (a server's stderr) holds `line` past byte `since` (its size before the
    test's action): the server has reached that state."""
    deadline = time.monotonic() + within
    while line.encode() not in path.read_bytes()[since:]:
        assert time.monotonic() < deadline, f"{line!r} not logged in {within} s: {path.read_text()[-2000:]}"
        time.sleep(0.02)


def rss_kib(pid: int) -> int:
    """Resident set size in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


# --- a command line in this process -----------------------------------------------------------


def run_main(
    main: Callable[[list[str]], int | None],
    args: Sequence[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    clear: tuple[str, ...],
    env: Mapping[str, str],
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """A CLI's `main(argv)` run here as a shell would run it in a process of its own (without the process's
    start-up cost): no environment variable starting with one of `clear` but those in `env`, stdin a pipe
    holding `stdin`, and its exit status, stdout and stderr as `subprocess.run` reports them. The root
    logger, which a command may configure for its run, is put back afterwards."""
    for key in [key for key in os.environ if key.startswith(clear)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse's --help, --version and usage errors
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status or 0, out, err)


# --- PostgreSQL --------------------------------------------------------------------------------

POSTGRES_URL_ENV = "BANKGATE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
"""Parameters for a test that runs on SQLite, and on PostgreSQL when `POSTGRES_URL_ENV` is set."""


def postgres_base_url() -> str | None:
    """The server to test against, as a plain libpq URL, or ``None`` when not configured."""
    url = os.environ.get(POSTGRES_URL_ENV)
    return url.replace("postgresql+psycopg://", "postgresql://", 1) if url else None


def url_with_search_path(base_url: str, schema: str) -> str:
    """``base_url`` with every connection's ``search_path`` set to ``schema``."""
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def create_schema(base_url: str, prefix: str) -> str:
    """A new, empty schema named `prefix_<random>`: each test has its own, so tests run in parallel."""
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def drop_schemas(base_url: str, *schemas: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema, dropped afterwards; skips when none is configured."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    schema = create_schema(base, prefix)
    try:
        yield url_with_search_path(base, schema)
    finally:
        drop_schemas(base, schema)


# --- the server under test ---------------------------------------------------------------------

SERVER_TESTS = Path(__file__).with_name("server")
TEST_POLICY = SERVER_TESTS / "test_policy.toml"
LIMIT_POLICY = SERVER_TESTS / "limit_policy.toml"
SHIPPED_POLICY = Path(policy.__file__).with_name("default_policy.toml")
APPROVAL_TIMEOUT = 2.0
TOKENS = {
    "local": "tok-local-0123456789abcdef",
    "capped": "tok-capped-0123456789abcdef",
    "other": "tok-other-0123456789abcdef",
    "alice": "tok-alice-0123456789abcdef",
    "bob": "tok-bob-0123456789abcdef0",
    "carol": "tok-carol-0123456789abcdef",
}
KEY = IDEMPOTENCY_KEY_META


def static_tokens() -> StaticTokens:
    """`TOKENS` as the HTTP app takes them (inline, as `BANKGATE_TOKENS` gives them)."""
    return StaticTokens(";".join(f"{p}={t}" for p, t in TOKENS.items()), None)


def serve_command(db_url: str, *extra: str) -> list[str]:
    """`bankgate-mcp serve` on `db_url` with the test policy and a short approval timeout (its argv)."""
    return [
        "serve", "--db", db_url, "--policy", str(TEST_POLICY),
        "--approval-timeout", str(APPROVAL_TIMEOUT), "--no-seed", *extra,
    ]  # fmt: skip


def serve_args(db_url: str, *extra: str) -> list[str]:
    """`python` arguments for `serve_command`."""
    return ["-m", "mcp_server", *serve_command(db_url, *extra)]


def keyed(key: str) -> types.RequestParamsMeta:
    """The request `_meta` carrying idempotency key `key`."""
    return cast(types.RequestParamsMeta, {KEY: key})


# --- approval rounds by hand (2026-07-28) ------------------------------------------------------

ASK = "policy.approval_round:ask"
APPROVE = types.ElicitResult(action="accept", content={"approve": True})


async def first_round(client: Client, tool: str, args: dict[str, Any], **kwargs: Any) -> types.InputRequiredResult:
    """Send a gated call and return its approval round without answering it."""
    result = await client.session.call_tool(tool, args, allow_input_required=True, **kwargs)
    assert isinstance(result, types.InputRequiredResult), result
    assert list(result.input_requests or {}) == [ASK]
    return result


async def answer(
    client: Client,
    tool: str,
    args: dict[str, Any],
    state: str | None,
    response: types.ElicitResult = APPROVE,
    *,
    input_key: str = ASK,
    **kwargs: Any,
) -> types.CallToolResult | types.InputRequiredResult:
    """Answer the round sealed in `state` with `response` (under input key `input_key`)."""
    result = await client.session.call_tool(
        tool, args, input_responses={input_key: response}, request_state=state, allow_input_required=True, **kwargs
    )
    assert isinstance(result, types.CallToolResult | types.InputRequiredResult), result
    return result


def outcome(result: object) -> dict[str, Any]:
    """A tool result's structured content (asserting there is one)."""
    assert isinstance(result, types.CallToolResult) and result.structured_content is not None, result
    return dict(result.structured_content)


# --- the books ---------------------------------------------------------------------------------


def snapshot(db: Database) -> dict[str, Any]:
    """Balances, statuses and row counts: equal before and after means nothing changed."""

    def read(conn: Connection) -> dict[str, Any]:
        accounts = conn.execute(text("SELECT id, status, balance_minor FROM accounts ORDER BY id")).all()
        counts = {
            table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in ("transactions", "entries", "idempotency_keys")
        }
        return {"accounts": [tuple(row) for row in accounts], **counts}

    return db.read(read)


# --- Hypothesis --------------------------------------------------------------------------------

PROFILE_ENV = "BANKGATE_FUZZ_PROFILE"
DRILL_FACTOR = 10

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev")
settings.register_profile("drill", derandomize=False, max_examples=settings().max_examples * DRILL_FACTOR)


def select_profile(environ: Mapping[str, str]) -> str:
    return environ.get(PROFILE_ENV) or ("ci" if environ.get("CI") else "dev")


PROFILE = select_profile(os.environ)


def examples(usual: int) -> int:
    """The example count for a test that sets its own (explicit counts override profiles)."""
    return usual * DRILL_FACTOR if PROFILE == "drill" else usual


# --- the bare ledger ---------------------------------------------------------------------------


def ledger_transfer(
    ledger: Ledger,
    from_account: object,
    to_account: object,
    amount: object,
    memo: object = None,
    idempotency_key: object = None,
) -> TransferReceipt:
    """A transfer in a transaction of its own, planned and posted as the server's tool does inside the
    gate's transaction (`amount` in major units), at most once per key: the bare ledger for tests."""
    source = parse_account_id(from_account, "from_account")
    target = parse_account_id(to_account, "to_account")
    note = parse_memo(memo)
    key = None if idempotency_key is None else parse_idempotency_key(idempotency_key)
    request = {"from_account": source, "to_account": target, "amount": amount_identity(amount), "memo": note}

    def work(conn: Connection) -> TransferReceipt:
        plan = ledger.plan_transfer_in(conn, source, target, amount)
        return ledger.transfer_in(conn, source, target, plan.amount_minor, note, idempotency_key=key)

    return ledger.once(key, lambda: digest({"operation": "transfer", **request}), TransferReceipt, work)


def ledger_close(
    ledger: Ledger, account_id: object, sweep_to: object = None, idempotency_key: object = None
) -> CloseReceipt:
    """`close_in` in a transaction of its own, at most once per key: the bare ledger for tests."""
    target = parse_account_id(account_id, "account_id")
    sweep = None if sweep_to is None else parse_account_id(sweep_to, "sweep_to")
    key = None if idempotency_key is None else parse_idempotency_key(idempotency_key)
    request = {"operation": "close", "account_id": target, "sweep_to": sweep}

    def work(conn: Connection) -> CloseReceipt:
        return ledger.close_in(conn, target, sweep, idempotency_key=key)

    return ledger.once(key, lambda: digest(request), CloseReceipt, work)


def unexplained_options(parser: argparse.ArgumentParser, path: str) -> dict[str, list[str]]:
    """Per (sub)command of `parser` (named from `path`), its options and arguments that its `--help` does not
    list or lists without a line saying what they are; empty when every one is explained. An option whose help is
    suppressed is offered by none (`bankgate-agent serve` takes `--approver` only to refuse it, naming why)."""
    found: dict[str, list[str]] = {}
    text = parser.format_help()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= unexplained_options(sub, f"{path} {name}")
        elif not action.help or not all(option in text for option in action.option_strings):
            found.setdefault(path, []).append("/".join(action.option_strings) or action.dest)
    return found


# --- races -------------------------------------------------------------------------------------


def run_together(*work: Callable[[], Any], within: float = 30.0) -> list[Any]:
    """Run each in a thread of its own, started together; their results in order (a failure re-raised)."""
    start = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work[n]()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(within)
        assert not thread.is_alive(), f"still running after {within} s (waiting for a lock it should skip?)"
    if errors:
        raise errors[0]
    return results


class Clock:
    """A clock the test moves by hand (`clock.now += 60`), for code that reads one as `Callable[[], float]`."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01 00:00 UTC
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def another_origin(html: str, host: str) -> Iterator[str]:
    """`html` served at `host` on a port of its own: another origin than the desk's (`localhost`: the same site,
    which SameSite cookies do not tell apart; `127.0.0.1`: another site, from which they are not sent). Its URL."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
