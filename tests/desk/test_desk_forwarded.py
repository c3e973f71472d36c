"""Whose address the desk counts sign-ins under, over real uvicorn servers on loopback ports: the connecting
client's, unless `forwarded_allow_ips` names the proxy that connects. uvicorn alone trusts `X-Forwarded-For`
from 127.0.0.1, so any local client (every client of the stdio desk) could name a fresh address per request
and pass every per-address limit."""

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.challenges import MAX_OPEN_SIGN_INS
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.server import StdioDesk
from mcp_server.http.proxies import proxy_options
from mcp_server.settings import Settings
from mcp_server.storage.database import Database
from tests.desk.world import DeskBrowser
from tests.server.test_http_listener import RUN, served
from tests.support import free_port

FORWARDED = "203.0.113.7"


def _settings(tmp_path: Path, **options: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        db_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        create=True,
        seed_demo=False,
        port=free_port(),
        no_auth=True,
        log_level="WARNING",
        **options,
    )


@contextmanager
def _http_desk(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[str]:
    """`serve --transport http` on its port, its desk's origin yielded."""
    with served(monkeypatch, settings) as http:
        thread = threading.Thread(target=RUN, args=(http.server, [http.listener]), daemon=True)
        thread.start()
        try:
            yield f"http://localhost:{settings.port}"
        finally:
            http.server.should_exit = True
            thread.join(30)


@contextmanager
def _stdio_desk(settings: Settings) -> Iterator[str]:
    """The desk `serve` starts beside stdio, on a loopback port of its own."""
    desk = StdioDesk(Database.open(settings.db_url, create=True), AuditWriter(), settings, desk_listeners(settings))
    desk.start()
    try:
        yield desk.config.origin
    finally:
        desk.stop()


async def _sign_in_attempt(origin: str, forwarded: str = FORWARDED) -> list[int]:
    """One sign-in started and one failed (its nonce unknown: 403), each claiming to be forwarded for
    `forwarded`; their status codes."""
    async with httpx2.AsyncClient(base_url=origin, timeout=10) as client:
        visitor = DeskBrowser(client, origin)
        await visitor.get("/signin")
        headers = {"X-Forwarded-For": forwarded}
        started = await visitor.post("/signin/options", {}, **headers)
        failed = await visitor.post("/signin/finish", {"nonce": "x", "credential": {}}, **headers)
        return [started.status_code, failed.status_code]


def _scopes(tmp_path: Path) -> tuple[set[str], set[str]]:
    """The addresses the desk counted: challenge subjects, failure scopes (of clients)."""
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        subjects = {s for (s,) in db.execute("SELECT subject FROM desk_challenges")}
        failures = {s for (s,) in db.execute("SELECT scope FROM desk_failures WHERE scope LIKE 'client %'")}
    return subjects, failures


def test_http_desk_counts_the_connecting_address_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own variable: not bankgate's setting, not read
    with _http_desk(monkeypatch, _settings(tmp_path, transport="http")) as origin:
        assert asyncio.run(_sign_in_attempt(origin)) == [200, 403]
    assert _scopes(tmp_path) == ({"client 127.0.0.1"}, {"client 127.0.0.1"})


def test_a_forwarded_address_per_request_does_not_lift_the_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The attack itself: the 11th open sign-in is refused though each request names another address."""

    async def attack(origin: str) -> list[int]:
        async with httpx2.AsyncClient(base_url=origin, timeout=10) as client:
            visitor = DeskBrowser(client, origin)
            await visitor.get("/signin")
            return [
                (await visitor.post("/signin/options", {}, **{"X-Forwarded-For": f"198.51.100.{n}"})).status_code
                for n in range(MAX_OPEN_SIGN_INS + 1)
            ]

    with _http_desk(monkeypatch, _settings(tmp_path, transport="http")) as origin:
        assert asyncio.run(attack(origin)) == [200] * MAX_OPEN_SIGN_INS + [429]


def test_http_desk_counts_the_forwarded_address_behind_a_named_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, transport="http", forwarded_allow_ips="127.0.0.1")
    with _http_desk(monkeypatch, settings) as origin:
        assert asyncio.run(_sign_in_attempt(origin)) == [200, 403]
    assert _scopes(tmp_path) == ({f"client {FORWARDED}"}, {f"client {FORWARDED}"})


def test_the_stdio_desk_never_trusts_forwarded_headers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every client of the desk beside stdio connects from loopback: no proxy stands before it."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    with _stdio_desk(_settings(tmp_path, desk_port=0, forwarded_allow_ips="127.0.0.1")) as origin:
        assert asyncio.run(_sign_in_attempt(origin)) == [200, 403]
    assert _scopes(tmp_path) == ({"client 127.0.0.1"}, {"client 127.0.0.1"})


def test_the_setting_takes_addresses_networks_or_any_proxy() -> None:
    """As uvicorn reads them: '*' alone is its 'believe every sender', not a name no client has."""
    listed = Settings(_env_file=None, forwarded_allow_ips=" 10.0.0.5, 10.1.0.0/16,::1 ")  # type: ignore[call-arg,arg-type]
    assert listed.forwarded_allow_ips == ["10.0.0.5", "10.1.0.0/16", "::1"]
    options = proxy_options(Settings(_env_file=None, forwarded_allow_ips="*").forwarded_allow_ips)  # type: ignore[call-arg,arg-type]
    assert options["proxy_headers"] is True
    assert ProxyHeadersMiddleware(_no_app, options["forwarded_allow_ips"]).trusted_hosts.always_trust


async def _no_app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    raise AssertionError("never called")
