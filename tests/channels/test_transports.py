"""The desk channels over real transports: stdio (the desk on its loopback port beside the
server) and Streamable HTTP (the desk at /desk), and across two HTTP replicas sharing a
PostgreSQL ledger (decided at replica A's desk, continued on replica B). The approver drives
the desk over real HTTP with a software passkey."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp.client import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.approvers import ApproverAdmin
from tests.channels.support import body, desk_policy
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.server.harness import Harness, HttpServer
from tests.support import postgres_schema

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def approver(
    harness: Harness, desk_origin: str, name: str = "dora"
) -> AsyncIterator[tuple[DeskBrowser, SoftPasskey]]:
    """`name`, invited, enrolled with a fresh passkey and signed in at the desk served at `desk_origin`."""
    token, _ = ApproverAdmin(harness.db, AuditWriter(harness.settings().audit_key_file)).add(name)
    passkey = SoftPasskey(origin=desk_origin)
    async with httpx2.AsyncClient(base_url=desk_origin) as client:
        desk = DeskBrowser(client, desk_origin)
        enrolled = await desk.enroll(token, passkey)
        assert enrolled.status_code == 200, enrolled.text
        yield desk, passkey


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def transfer(harness: Harness, **extra: Any) -> dict[str, Any]:
    return {
        "from_account": harness.open_account("500"),
        "to_account": harness.open_account("0"),
        "amount": "25",
        **extra,
    }


async def pending_then_continued(harness: Harness, on_b: Harness | None = None) -> dict[str, Any]:
    """A client without elicitation: pending_approval, the approver decides at the linked desk, and
    the same call with approval_ref (on `on_b` if given) executes. The client stays connected
    throughout: a stdio server, and its desk, end with their client."""
    args = transfer(harness)
    async with harness.client(None) as client:
        first = body(await client.call_tool("transfer_funds", args))
        assert first["status"] == "pending_approval", first
        async with approver(harness, origin(first["approval_url"])) as (desk, passkey):
            decided = await desk.decide(first["approval_ref"], "approved", passkey)
            assert decided.status_code == 200, decided.text
        continued = {**args, "approval_ref": first["approval_ref"]}
        if on_b is None:
            done = body(await client.call_tool("transfer_funds", continued))
        else:
            async with on_b.client(None) as other:
                done = body(await other.call_tool("transfer_funds", continued))
    assert done["status"] == "executed" and done["approval_ref"] == first["approval_ref"], done
    assert harness.balance(args["to_account"]) == 2500
    assert harness.events(first["approval_ref"]) == ["requested", "desk_approved", "approved", "executed"]
    return done


def enrolls_and_approves(harness: Harness, seen: list[str]) -> Any:
    """An elicitation callback handling `mode == "url"`: the approver enrolls at the linked desk (up
    now, beside the running server), signs in and approves; any form it would approve too."""

    async def callback(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params.mode or "form")
        if params.mode != "url":
            return ElicitResult(action="accept", content={"approve": True})
        async with approver(harness, origin(params.url), "erin") as (desk, passkey):
            decided = await desk.decide(params.url.rsplit("/", 1)[-1], "approved", passkey)
            assert decided.status_code == 200, decided.text
        return ElicitResult(action="accept")

    return callback


async def url_mode_approve(harness: Harness, mode: str) -> None:
    """channel = "desk" and an SDK client with an elicitation callback: the link comes by URL mode."""
    args = transfer(harness)
    seen: list[str] = []
    async with harness.client(enrolls_and_approves(harness, seen), mode=mode) as client:
        result = body(await client.call_tool("transfer_funds", args))
    assert seen == ["url"] and result["status"] == "executed", result
    assert harness.balance(args["to_account"]) == 2500


async def test_stdio_pending_approval_flow(tmp_path: Path) -> None:
    await pending_then_continued(Harness("stdio", f"sqlite:///{tmp_path / 'ledger.db'}"))


async def test_stdio_url_mode_approve(tmp_path: Path) -> None:
    harness = Harness("stdio", f"sqlite:///{tmp_path / 'ledger.db'}", policy=desk_policy(tmp_path))
    await url_mode_approve(harness, "legacy")


@pytest.fixture
def http(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    server = HttpServer(url, "--policy", str(desk_policy(tmp_path)))
    yield Harness("http", url, server, policy=desk_policy(tmp_path))
    server.stop()


async def test_http_pending_approval_flow_and_url_mode(http: Harness) -> None:
    assert http.http is not None
    await pending_then_continued(http)
    await url_mode_approve(http, "auto")


@pytest.mark.postgres
async def test_decided_at_replica_a_continued_on_replica_b() -> None:
    with postgres_schema("bankgate_desk_replicas") as url:
        Harness("setup", url).db.close()
        a, b = HttpServer(url), HttpServer(url)
        try:
            on_a, on_b = Harness("http", url, a), Harness("http", url, b)
            await pending_then_continued(on_a, on_b)
        finally:
            a.stop()
            b.stop()
