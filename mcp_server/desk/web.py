"""The desk's routes (Starlette, server-rendered Jinja2, one small script for WebAuthn).

Mounted at `/desk` beside `/mcp` on the HTTP transport, or served alone on a loopback port
beside stdio (`server`). Pages are GETs and never change anything; every change is a POST
guarded by `guard.Guard`; a decision needs a signed-in approver and a passkey signature
(`decisions.decide`). Database work runs in worker threads, off the event loop.
"""

import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, Row
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk import challenges, decisions, inbox, passkeys, ratelimit, sessions
from mcp_server.desk.approvers import own_principals
from mcp_server.desk.config import DESK_PATH, DeskConfig
from mcp_server.desk.guard import CSRF_HEADER, Guard, Secured
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import new_token
from mcp_server.desk.turns import Turns
from mcp_server.ledger.errors import LedgerError
from mcp_server.storage.database import CommitUnknown, Database
from mcp_server.storage.gate_store import DESK_DECISION, signoff
from mcp_server.tools.common import MONEY_FACTS
from policy.channel import Channel
from policy.question import deadline_text, requested_confirmation, span_text
from policy.store import Approval, DeskSignoff

T = TypeVar("T")
MAX_BODY = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def summary(approval: Approval, own: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What a person needs at a glance: the effect line of the stored question, amount and accounts; `own`:
    the principals the approver acts as, whose requests are shown but not theirs to decide."""
    lines = approval.question.splitlines()
    now = time.time()
    return {
        "approval": approval,
        "headline": lines[1] if len(lines) > 1 else lines[0] if lines else approval.tool,
        "amount": next((approval.bound[label] for label in MONEY_FACTS if label in approval.bound), None),
        "accounts": [
            (name.replace("_", " "), value)
            for name, value in approval.arguments.items()
            if value and ("account" in name or name == "sweep_to")
        ],
        "age": span_text(now - approval.created_at),
        "left": span_text(approval.expires_at - now),
        "created": deadline_text(approval.created_at),
        "deadline": deadline_text(approval.expires_at),
        "open": approval.status == "pending" and not approval.over(now),
        "decidable": approval.channel is not Channel.FORM,
        "own": approval.principal in own,
    }


class Desk:
    """The desk application over one ledger database."""

    def __init__(self, db: Database, audit: AuditWriter, config: DeskConfig) -> None:
        self.db, self.audit, self.config = db, audit, config
        self.guard = Guard(config)
        self._sign_ins = Turns()
        self.templates = Environment(
            loader=PackageLoader("mcp_server.desk", "templates"), autoescape=select_autoescape()
        )
        self.templates.filters["when"] = deadline_text

    def routes(self) -> list[BaseRoute]:
        """The desk for a router: its app mounted at `DESK_PATH`, and `DESK_PATH` itself (typed by hand) sent on
        to the inbox with the desk's headers, where the router's own redirect would carry none."""
        return [Route(DESK_PATH, endpoint=Secured(_to_inbox)), Mount(DESK_PATH, app=self.app())]

    def app(self) -> ASGIApp:
        """The routes, relative to where the desk is mounted (`/desk`)."""
        page, post = self._page, self._post
        return Secured(
            Starlette(
                routes=[
                    Route("/", page(self.inbox), methods=["GET"]),
                    Route("/history", page(self.history), methods=["GET"]),
                    Route("/approvals/{ref}", page(self.detail), methods=["GET"]),
                    Route("/approvals/{ref}/challenge", post(self.challenge), methods=["POST"]),
                    Route("/approvals/{ref}/decide", post(self.decide), methods=["POST"]),
                    Route("/signin", page(self.signin_page, signed_in=False), methods=["GET"]),
                    Route("/signin/options", post(self.signin_options, signed_in=False), methods=["POST"]),
                    Route("/signin/finish", post(self.signin_finish, signed_in=False), methods=["POST"]),
                    Route("/signout", post(self.signout, signed_in=False), methods=["POST"]),
                    Route("/enroll", page(self.enroll_page, signed_in=False), methods=["GET"]),
                    Route("/enroll/options", post(self.enroll_options, signed_in=False), methods=["POST"]),
                    Route("/enroll/finish", post(self.enroll_finish, signed_in=False), methods=["POST"]),
                    Mount("/static", StaticFiles(packages=[("mcp_server.desk", "static")]), name="static"),
                ]
            )
        )

    # -- plumbing -------------------------------------------------------------------------

    async def _read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        return await run_in_threadpool(self.db.read, work, snapshot=snapshot)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        return await run_in_threadpool(self.db.run, work)

    async def _consume(self, body: dict[str, Any], purpose: str) -> Row[Any]:
        return await self._write(lambda conn: challenges.consume(conn, body.get("nonce"), purpose))

    async def _approver(self, request: Request) -> str | None:
        token = request.cookies.get(self.guard.cookies.session)
        if not token:
            return None
        return await self._read(lambda conn: sessions.session_approver(conn, token))

    def _page(self, render: Callable[[Request, str | None], Awaitable[Response]], *, signed_in: bool = True) -> Handler:
        async def handler(request: Request) -> Response:
            refused = await self.guard.refusal(request)
            if refused is not None:
                return refused
            if self.guard.csrf(request) is None:
                request.state.pre = new_token()
            approver = None
            try:
                approver = await self._approver(request)
                if signed_in and approver is None:  # at this address, which its script loads again once signed in
                    response = await self.signin_page(request, approver)
                else:
                    response = await render(request, approver)
            except (DeskRefusal, LedgerError) as failed:
                refusal = _desk_refusal(failed)
                response = self._render(request, approver, "message.html", status=refusal.status,
                                        title="Not possible", message=refusal.message)  # fmt: skip
            if getattr(request.state, "pre", None):  # a first visit: the pre-session cookie its forms carry
                self.guard.cookies.set(response, self.guard.cookies.pre, request.state.pre, max_age=3600)
            return response

        return handler

    def _post(self, act: Callable[[Request, str | None, dict[str, Any]], Awaitable[Response]], *,
              signed_in: bool = True) -> Handler:  # fmt: skip
        async def handler(request: Request) -> Response:
            raw = await _bounded_body(request)
            if raw is None:
                return JSONResponse({"error": "too_large", "message": "Request too large."}, status_code=413)
            body, csrf = _body(request, raw)
            refused = await self.guard.refusal(request, csrf, signed_out=not signed_in)
            if refused is not None:
                return refused
            if body is None:
                return _refusal(DeskRefusal("bad_request", "The request's body is not a JSON object of text; nothing "
                                            "was done. Reload the page and try again."))  # fmt: skip
            try:
                approver = await self._approver(request)
                if signed_in and approver is None:
                    return _refusal(DeskRefusal("signed_out", "Sign in first.", 401))
                return await act(request, approver, body)
            except (DeskRefusal, LedgerError) as failed:
                return _refusal(_desk_refusal(failed))

        return handler

    def _render(self, request: Request, approver: str | None, template: str, *, status: int = 200,
                **context: Any) -> HTMLResponse:  # fmt: skip
        html = self.templates.get_template(template).render(
            base=self.config.path, approver=approver, csrf=self._csrf(request), **context
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["X-Desk-Template"] = template
        return response

    def _csrf(self, request: Request) -> str:
        pre = getattr(request.state, "pre", None)
        return sessions.csrf_token(pre) if pre else self.guard.csrf(request) or ""

    async def _session_response(self, request: Request, token: str) -> JSONResponse:
        """The new session's cookie; the session the browser held until now ends (on a shared machine, the
        previous approver's would otherwise live on server-side, held by nobody, until it expired)."""
        replaced = request.cookies.get(self.guard.cookies.session)
        if replaced:
            await self._write(lambda conn: sessions.close_session(conn, replaced))
        response = JSONResponse({"redirect": f"{self.config.path}/"})
        self.guard.cookies.set(response, self.guard.cookies.session, token, max_age=int(sessions.SESSION_TTL))
        return response

    # -- pages ------------------------------------------------------------------------------

    async def inbox(self, request: Request, approver: str | None) -> Response:
        assert approver is not None
        pending, own = await self._read(lambda conn: (inbox.inbox(conn), own_principals(conn, approver)))
        return self._render(request, approver, "inbox.html", items=[summary(a, own) for a in pending])

    async def history(self, request: Request, approver: str | None) -> Response:
        assert approver is not None
        rows = await self._read(lambda conn: decisions.history(conn, approver))
        return self._render(request, approver, "history.html", rows=rows)

    async def detail(self, request: Request, approver: str | None) -> Response:
        assert approver is not None
        ref = request.path_params["ref"]

        def read(conn: Connection) -> tuple[Approval, DeskSignoff | None, frozenset[str]]:
            approval = inbox.approval(conn, ref)  # first: a reference of no approval's shape is a 404, never a query
            return approval, signoff(conn, DESK_DECISION, ref), own_principals(conn, approver)

        # The approval as of its decision, or before it; the decision with its approver's standing as the gate would
        # read them now.
        approval, decided, own = await self._read(read, snapshot=True)
        waiting = decided is not None and approval.status == "pending"
        void = decided.void(approval.principal) if decided is not None and waiting else None
        return self._render(
            request,
            approver,
            "detail.html",
            item=summary(approval, own),
            decided=decided,
            confirm=requested_confirmation(approval.question),
            shown=decisions.shown_on_page(approval),
            continue_by=approval.continue_by(decided.decided_at) if decided and waiting and not void else None,
            void=void,
        )

    async def signin_page(self, request: Request, approver: str | None) -> Response:
        return self._render(request, approver, "signin.html")

    async def enroll_page(self, request: Request, approver: str | None) -> Response:
        """The page alone: its script reads the link's token from the fragment and the ceremony judges it."""
        return self._render(request, approver, "enroll.html")

    # -- actions ------------------------------------------------------------------------------

    async def challenge(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        assert approver is not None
        ref = request.path_params["ref"]
        verdict, shown = body.get("verdict"), body.get("shown")
        options = await self._write(
            lambda c: decisions.decision_challenge(c, self.config, approver, ref, verdict, shown)
        )
        return JSONResponse(options)

    async def decide(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        assert approver is not None
        ref = request.path_params["ref"]
        decisions.parse_note(body.get("note"))  # a refused note leaves the signed challenge usable
        issued = await self._consume(body, "decide")
        await self._write(lambda conn: decisions.decide(conn, self.config, self.audit, approver, ref, body, issued))
        return JSONResponse({"redirect": f"{self.config.path}/approvals/{ref}"})

    async def signin_options(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        client = _client(request)
        await self._read(lambda conn: ratelimit.check(conn, [client]))
        async with self._sign_ins.turn(client):  # one address's requests queue here, not holding connections
            return JSONResponse(await self._write(lambda conn: passkeys.sign_in_options(conn, self.config, client)))

    async def signin_finish(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        scopes = [_client(request)]
        owner = await self._read(lambda conn: _owner(conn, body.get("credential")))
        if owner is not None:
            scopes.append(f"approver {owner}")
        stamp = await self._write(lambda conn: ratelimit.attempt(conn, scopes))  # a failure until it succeeds
        issued = await self._consume(body, "sign_in")

        def signed_in(conn: Connection) -> str:  # the session and the attempt's uncounting commit together
            token = passkeys.sign_in(conn, self.config, body, issued)
            ratelimit.succeeded(conn, scopes, stamp)
            return token

        return await self._session_response(request, await self._write(signed_in))

    async def signout(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        token = request.cookies.get(self.guard.cookies.session)
        if token:
            await self._write(lambda conn: sessions.close_session(conn, token))
        response = RedirectResponse(f"{self.config.path}/signin", status_code=303)
        self.guard.cookies.delete(response, self.guard.cookies.session)
        return response

    async def enroll_options(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        token = body.get("token")
        return JSONResponse(await self._write(lambda conn: passkeys.registration_options(conn, self.config, token)))

    async def enroll_finish(self, request: Request, approver: str | None, body: dict[str, Any]) -> Response:
        issued = await self._consume(body, "enroll")
        token = await self._write(lambda conn: passkeys.register(conn, self.config, self.audit, body, issued))
        return await self._session_response(request, token)


async def _to_inbox(scope: Scope, receive: Receive, send: Send) -> None:
    await RedirectResponse(f"{DESK_PATH}/", status_code=307)(scope, receive, send)


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None once it is declared or sent larger than `MAX_BODY`: never buffered past that, so
    a client (any client: this runs before the Origin and CSRF checks) cannot fill the server's memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY:
            return None
    return bytes(received)


def _client(request: Request) -> str:
    """The address sign-ins are counted under. An IPv6 host's is its /64, which it holds whole: counted per address,
    a script picked a fresh one per request and passed every per-address limit. One spelling per address."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"client {host}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return f"client {ipaddress.IPv6Network((address, 64), strict=False)}"
        address = address.ipv4_mapped
    return f"client {address}"


def _owner(conn: Connection, assertion: object) -> str | None:
    try:
        return passkeys.credential(conn, assertion).approver
    except DeskRefusal:
        return None


def _body(request: Request, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The POST's fields (None: malformed JSON) and the CSRF token it carried (JSON with the header, or a
    form with a `csrf` field)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(raw or b"{}")
            # Text only: JSON may spell half a UTF-16 pair ("\ud800"), which no hash or column can encode (a 500).
            json.dumps(parsed, ensure_ascii=False).encode()
        except (ValueError, RecursionError):  # nested past the parser's limit: malformed like any other
            parsed = None
        return (parsed if isinstance(parsed, dict) else None), request.headers.get(CSRF_HEADER)
    fields = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    return fields, fields.get("csrf")


def _desk_refusal(failed: DeskRefusal | LedgerError) -> DeskRefusal:
    """What the approver is told: a desk refusal as it is; the ledger database failing, in the desk's words
    (its `LedgerError` speaks to a tool's caller, of idempotency keys), saying what is known of the outcome."""
    if isinstance(failed, DeskRefusal):
        return failed
    if isinstance(failed, CommitUnknown):
        return DeskRefusal("outcome_unknown", "The desk's database stopped answering while this was being "
                           "recorded, so whether it was is not known. Reload the page to see before trying "
                           "again.", 503)  # fmt: skip
    return DeskRefusal("database_unavailable", "The desk's database is unavailable right now; try again shortly.",
                       503)  # fmt: skip


def _refusal(refusal: DeskRefusal) -> JSONResponse:
    return JSONResponse({"error": refusal.code, "message": refusal.message}, status_code=refusal.status)
