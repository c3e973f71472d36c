"""A ledger with pending approvals made by the gate itself, and the desk over it (in-process ASGI for
HTTP tests, a real uvicorn server on a loopback port for the browser)."""

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from sqlalchemy import Connection, text
from starlette.applications import Starlette

from mcp_server.app import AppState, open_state
from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.approvers import ApproverAdmin
from mcp_server.desk.config import DESK_PATH, DeskConfig
from mcp_server.desk.server import config_for
from mcp_server.desk.web import Desk
from mcp_server.settings import Settings
from policy.action import Call
from policy.store import Approval
from tests.desk.authenticator import SoftPasskey
from tests.support import BACKENDS, TEST_POLICY, postgres_schema

PORT = 8766
_CSRF = re.compile(r'data-csrf="([0-9a-f]*)"')
_SHOWN = re.compile(r'data-shown="([^"]*)"')


@dataclass
class World:
    db_url: str
    settings: Settings = field(init=False)
    state: AppState = field(init=False)

    def __post_init__(self) -> None:
        self.settings = Settings(
            db_url=self.db_url,
            policy=TEST_POLICY,
            approval_timeout=300,
            seed_demo=False,
            desk_port=PORT,
            _env_file=None,  # type: ignore[call-arg]
        )
        self.state = open_state(self.settings, create=True)
        self.db = self.state.ledger.db
        self.audit = AuditWriter(self.settings.audit_key_file)
        self.admin = ApproverAdmin(self.db, self.audit)
        ledger = self.state.ledger
        self.source = ledger.create_account("Ada Lovelace").id
        self.target = ledger.create_account("Ben Franklin").id
        ledger.deposit(self.source, "5000")

    def config(self, port: int = PORT) -> DeskConfig:
        return config_for(self.settings, port)

    def app(self) -> Starlette:
        return Starlette(routes=Desk(self.db, self.audit, self.config()).routes())

    def pending(self, amount: str = "250.00", principal: str = "alice", memo: str | None = None) -> Approval:
        """A pending transfer approval."""
        return self.asked(
            "transfer_funds", principal, from_account=self.source, to_account=self.target, amount=amount, memo=memo
        )

    def asked(self, tool: str, principal: str, **arguments: Any) -> Approval:
        """A pending approval, asked the way the gate asks one (question rendered from the ledger, audited)."""
        action = self.state.gate.actions[tool]
        opening = self.state.gate.open(Call(tool, action.canonical(arguments), principal), human_reachable=True)
        assert opening.approval is not None, opening.final
        return opening.approval

    def sql(self, statement: str, **params: Any) -> None:
        def run(conn: Connection) -> None:
            conn.execute(text(statement), params)

        self.db.run(run)

    def rows(self, query: str, **params: Any) -> list[Any]:
        return self.db.read(lambda conn: list(conn.execute(text(query), params).all()))


class DeskBrowser:
    """An approver's browser as the desk sees it: cookies, the CSRF token of the last page, same-origin POSTs."""

    def __init__(self, client: httpx2.AsyncClient, origin: str) -> None:
        self.client = client
        self.origin = origin
        self.csrf = ""

    async def get(self, path: str) -> httpx2.Response:
        response = await self.client.get(DESK_PATH + path)
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
        sent = {"Origin": self.origin, "X-CSRF-Token": self.csrf, **headers}
        return await self.client.post(DESK_PATH + path, json=body, headers={k: v for k, v in sent.items() if v})

    async def registration(self, token: str, passkey: SoftPasskey) -> dict[str, Any]:
        """The body of `/enroll/finish`: the link opened, a challenge asked for and `passkey` registered to it."""
        await self.get("/enroll")  # the page; the token is in the link's fragment, which only its script reads
        options = (await self.post("/enroll/options", {"token": token})).json()
        return {"token": token, "nonce": options["nonce"], "credential": passkey.register(options["options"])}

    async def enroll(self, token: str, passkey: SoftPasskey) -> httpx2.Response:
        return await self.post("/enroll/finish", await self.registration(token, passkey))

    async def sign_in(self, passkey: SoftPasskey) -> httpx2.Response:
        await self.get("/signin")
        reply = await self.post("/signin/options", {})
        if reply.status_code != 200:
            return reply
        options = reply.json()
        return await self.post(
            "/signin/finish", {"nonce": options["nonce"], "credential": passkey.sign(options["options"])}
        )

    async def challenge(self, ref: str, verdict: str) -> dict[str, Any]:
        page = await self.get(f"/approvals/{ref}")
        shown = _SHOWN.search(page.text)
        assert shown is not None, "the page offers no decision"
        reply = await self.post(f"/approvals/{ref}/challenge", {"verdict": verdict, "shown": shown.group(1)})
        assert reply.status_code == 200, reply.text
        found: dict[str, Any] = reply.json()
        return found

    async def decide(self, ref: str, verdict: str, passkey: SoftPasskey, note: str = "") -> httpx2.Response:
        issued = await self.challenge(ref, verdict)
        body = {
            "verdict": verdict,
            "note": note,
            "nonce": issued["nonce"],
            "credential": passkey.sign(issued["options"]),
        }
        return await self.post(f"/approvals/{ref}/decide", body)


def asks_to_sign_in(response: httpx2.Response) -> bool:
    """Whether `response` is the sign-in form a signed-out visitor gets at the address they asked for."""
    return response.status_code == 200 and response.headers.get("x-desk-template") == "signin.html"


async def approved(
    world: World, approver: DeskBrowser, passkey: SoftPasskey, *, asked_ago: float = 0.0, key: str | None = None
) -> tuple[Call, Approval, float]:
    """A transfer of 80.00 asked `asked_ago` seconds ago and approved at the desk now by `approver`: its call, its
    approval and when the yes was signed."""
    gate = world.state.gate
    action = gate.actions["transfer_funds"]
    arguments = {"from_account": world.source, "to_account": world.target, "amount": "80.00"}
    call = Call("transfer_funds", action.canonical(arguments), "alice", key)
    gate.clock = lambda: time.time() - asked_ago
    opening = gate.open(call, human_reachable=True)
    gate.clock = time.time
    assert opening.approval is not None, opening.final
    reply = await approver.decide(opening.approval.ref, "approved", passkey)
    assert reply.status_code == 200, reply.text
    [row] = world.rows("SELECT decided_at FROM desk_decisions WHERE approval_ref = :r", r=opening.approval.ref)
    return call, opening.approval, float(row.decided_at)


def moved(world: World) -> int:
    """What the transfers paid the target account (minor units)."""
    return world.state.ledger.balance(world.target).balance_minor


def events(world: World, ref: str) -> list[str]:
    return [row.event for row in world.rows("SELECT event FROM audit_log WHERE approval_ref = :r", r=ref)]


@asynccontextmanager
async def browser(world: World) -> AsyncIterator[DeskBrowser]:
    config = world.config()
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url=config.origin) as client:
        yield DeskBrowser(client, config.origin)


AnyWorld = TypeVar("AnyWorld", bound=World)


def world_fixture(kind: type[AnyWorld], schema_prefix: str) -> Any:
    """The `world` fixture of the desk and channel tests: a `kind` of world on a fresh ledger, on SQLite
    and (with BANKGATE_TEST_POSTGRES_URL) on a PostgreSQL schema of its own."""

    @pytest.fixture(params=BACKENDS, name="world")
    def fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyWorld]:
        if request.param == "postgresql":
            with postgres_schema(schema_prefix) as url:
                world = kind(url)
                yield world
                world.db.close()
        else:
            yield kind(f"sqlite:///{tmp_path / 'ledger.db'}")

    return fixture


@pytest.fixture(name="passkey")
def passkey_fixture() -> SoftPasskey:
    """A software passkey for the desk the worlds serve."""
    return SoftPasskey(origin=f"http://localhost:{PORT}")


def approver_fixture(name: str) -> Any:
    """A fixture named `name`: that approver, enrolled with the test's `passkey` and signed in at the desk."""

    @pytest.fixture(name=name)
    async def fixture(world: World, passkey: SoftPasskey) -> AsyncIterator[DeskBrowser]:
        token, _ = world.admin.add(name)
        async with browser(world) as desk:
            reply = await desk.enroll(token, passkey)
            assert reply.status_code == 200, reply.text
            yield desk

    return fixture


approver_changes = pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda world: world.admin.revoke("erin"), "whose access was revoked"),
        (lambda world: world.admin.link("erin", "alice"), "who acts as the requester alice (four eyes"),
    ],
    ids=["revoked", "linked-to-the-requester"],
)
"""What takes erin's power to approve alice's calls away (`revoke`, or `link` to alice: four eyes), with the words a
yes she signed before is then void by (`policy.store.void_yes`)."""
