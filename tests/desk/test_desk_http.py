"""The desk over HTTP (in-process ASGI, real SQLite ledger, software passkey verified by py_webauthn)."""

import html
import re
import threading
import time
from typing import Any

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from mcp_server.desk import decisions, passkeys, sessions
from mcp_server.desk.challenges import MAX_OPEN_SIGN_INS
from mcp_server.desk.config import DESK_PATH
from mcp_server.desk.decisions import decision_for
from mcp_server.desk.ratelimit import MAX_FAILURES
from mcp_server.desk.web import Desk
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import PORT, DeskBrowser, World, asks_to_sign_in, browser

pytestmark = pytest.mark.anyio


async def test_approve_is_recorded_once_with_its_signature(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    approval = world.pending("250.00")
    inbox = await erin.get("/")
    assert approval.ref in inbox.text and "Ada Lovelace" in inbox.text and "alice" in inbox.text
    detail = await erin.get(f"/approvals/{approval.ref}")
    shown = re.search(r'<pre class="question" id="question">(.*?)</pre>', detail.text, re.S)
    assert shown is not None and html.unescape(shown.group(1)) == approval.question, "shown exactly as stored"

    reply = await erin.decide(approval.ref, "approved", passkey, note="rent")
    assert reply.status_code == 200, reply.text
    decision = world.db.read(lambda conn: decision_for(conn, approval.ref))
    assert decision is not None and decision.approved and decision.approver == "erin" and decision.note == "rent"
    assert decision.binding == approval.binding
    assert approval.ref not in (await erin.get("/")).text, "a decided approval leaves the inbox"
    assert approval.ref in (await erin.get("/history")).text
    again = await erin.post(f"/approvals/{approval.ref}/challenge", {"verdict": "rejected"})
    assert again.status_code == 409 and again.json()["error"] == "already_decided"
    [record] = world.rows(
        "SELECT event, principal, approval_ref, result_json FROM audit_log WHERE event = 'desk_approved'"
    )
    assert record.principal == "approver:erin" and record.approval_ref == approval.ref
    assert '"assertion"' in record.result_json
    assert world.rows("SELECT status FROM approvals WHERE ref = :r", r=approval.ref)[0].status == "pending", (
        "the desk records; only the gate settles"
    )


@pytest.mark.parametrize(
    ("note", "named"),
    [
        ("ok, account 12\u202e34", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("do \u2066not\u2069 pay", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("checked\u200b", "U+200B ZERO WIDTH SPACE"),
        ("ok\x1b[2K", "U+001B"),
        ("ok\tfine", "U+0009"),
        ("fine\nnot\u3164approved", "U+3164 HANGUL FILLER"),
    ],
    ids=["rtl-override", "isolate", "zero-width", "escape", "tab", "blank-on-line-2"],
)
async def test_a_note_that_could_display_otherwise_than_it_reads_is_refused_and_nothing_changes(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, note: str, named: str
) -> None:
    """A note is shown to the requester's side, in the history and the audit log: a bidi override could reverse an
    account number in it, an invisible character hide a word. Refused, naming the character, before the signed
    challenge is used: the same signature, sent again with the note put right, is recorded."""
    approval = world.pending("60.00")
    issued = await erin.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    refused = await erin.post(f"/approvals/{approval.ref}/decide", {**body, "note": note})
    assert refused.status_code == 400 and refused.json()["error"] == "bad_note", refused.text
    assert named in refused.json()["message"] and "Nothing was recorded." in refused.json()["message"]
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None
    assert (await erin.post(f"/approvals/{approval.ref}/decide", {**body, "note": "ok\nchecked"})).status_code == 200
    decision = world.db.read(lambda conn: decision_for(conn, approval.ref))
    assert decision is not None and decision.note == "ok\nchecked", "a note may have lines"


async def test_reject_needs_a_signature_too(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.pending("75.00")
    await erin.get(f"/approvals/{approval.ref}")  # its CSRF token: the POST is refused for its missing signature
    unsigned = await erin.post(f"/approvals/{approval.ref}/decide", {"verdict": "rejected", "note": "no"})
    assert unsigned.status_code == 400 and "names no challenge" in unsigned.json()["message"]
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None
    reply = await erin.decide(approval.ref, "rejected", passkey, note="not expected")
    assert reply.status_code == 200, reply.text
    decision = world.db.read(lambda conn: decision_for(conn, approval.ref))
    assert decision is not None and decision.verdict == "rejected"


async def test_no_decision_by_get(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.pending()
    for path in (f"/approvals/{approval.ref}/decide", f"/approvals/{approval.ref}/challenge"):
        assert (await erin.get(path)).status_code == 405
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


async def test_csrf_token_required_on_every_post(world: World, erin: DeskBrowser) -> None:
    approval = world.pending()
    await erin.get(f"/approvals/{approval.ref}")
    for token in ("", "0" * 64):
        reply = await erin.client.post(
            f"/desk/approvals/{approval.ref}/challenge",
            json={"verdict": "approved"},
            headers={"Origin": erin.origin, **({"X-CSRF-Token": token} if token else {})},
        )
        assert reply.status_code == 403 and "CSRF" in reply.text
    signout = await erin.client.post("/desk/signout", data={"csrf": "nope"}, headers={"Origin": erin.origin})
    assert signout.status_code == 403
    assert (await erin.get("/")).status_code == 200, "still signed in"


async def test_a_non_ascii_csrf_token_is_refused_like_any_wrong_one(world: World, erin: DeskBrowser) -> None:
    """Not a 500 from `hmac.compare_digest`, which takes only ASCII strings: any client can send one."""
    await erin.get("/")
    as_form = await erin.client.post(
        "/desk/signout",
        content=b"csrf=%C3%A9",
        headers={"Origin": erin.origin, "Content-Type": "application/x-www-form-urlencoded"},
    )
    as_header = await erin.client.post(
        "/desk/signin/options", json={}, headers=[(b"Origin", erin.origin.encode()), (b"X-CSRF-Token", b"\xe9" * 64)]
    )
    for reply in (as_form, as_header):
        assert reply.status_code == 403 and "CSRF" in reply.text
    assert (await erin.get("/")).status_code == 200, "still signed in"


async def test_cross_origin_and_foreign_host_refused(world: World, erin: DeskBrowser) -> None:
    approval = world.pending()
    await erin.get(f"/approvals/{approval.ref}")
    path = f"/approvals/{approval.ref}/challenge"
    assert (await erin.post(path, {"verdict": "approved"}, Origin="https://evil.example")).status_code == 403
    no_origin = await erin.client.post(
        "/desk" + path, json={"verdict": "approved"}, headers={"X-CSRF-Token": erin.csrf}
    )
    assert no_origin.status_code == 403 and "Origin" in no_origin.text
    foreign = await erin.client.get("/desk/", headers={"Host": "evil.example"})
    assert foreign.status_code == 421
    assert world.rows("SELECT COUNT(*) AS n FROM desk_challenges WHERE purpose = 'decide'")[0].n == 0


async def test_session_cookie_flags(world: World, passkey: SoftPasskey) -> None:
    token, _ = world.admin.add("erin")
    async with browser(world) as desk:
        reply = await desk.enroll(token, passkey)
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/desk" in cookie
    assert "secure" not in cookie, "plain http://localhost cannot carry a Secure cookie"
    assert (
        reply.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    )


async def test_over_https_the_desks_cookies_are_its_hosts_alone(world: World) -> None:
    """Over https the desk's cookies are `__Host-` ones (Secure, Path=/, no Domain), which a browser takes from the
    desk's own host alone: a sibling (shop.bank.example may set cookies for all of bank.example) can neither plant a
    pre-session of its choosing, whose CSRF token it would know, nor a session, nor overwrite the desk's."""
    world.settings = world.settings.model_copy(update={"desk_url": "https://desk.bank.example/desk"})
    passkey = SoftPasskey(origin="https://desk.bank.example", rp_id="desk.bank.example")
    token, _ = world.admin.add("erin")
    async with browser(world) as desk:
        pre = (await desk.get("/enroll")).headers["set-cookie"]
        session = (await desk.enroll(token, passkey)).headers["set-cookie"]
        assert 'class="who">erin<' in (await desk.get("/")).text
        planted = {"Cookie": f"bankgate_desk_pre=planted; bankgate_desk={desk.client.cookies['__Host-bankgate_desk']}"}
        as_planted = await desk.client.get("/desk/", headers=planted)
        forged = await desk.client.post("/desk/signin/options", json={}, headers={
            **planted, "Origin": desk.origin, "X-CSRF-Token": sessions.csrf_token("planted")})  # fmt: skip
        out = await desk.client.post("/desk/signout", data={"csrf": desk.csrf}, headers={"Origin": desk.origin})
        assert 'class="who"' not in (await desk.get("/")).text, "signed out: the session's cookie is gone"
    for cookie, name in ((pre, "__Host-bankgate_desk_pre="), (session, "__Host-bankgate_desk=")):
        assert cookie.startswith(name) and "domain" not in cookie.lower(), cookie
        assert {"Path=/", "Secure", "HttpOnly", "SameSite=strict"} <= {part.strip() for part in cookie.split(";")}
    assert 'class="who"' not in as_planted.text, "a session cookie without the prefix is not the desk's"
    assert forged.status_code == 403, "nor is a pre-session cookie"
    assert out.headers["set-cookie"].startswith("__Host-bankgate_desk=") and "Secure" in out.headers["set-cookie"]


async def test_a_planted_pre_session_cannot_act_for_a_signed_in_approver(world: World, passkey: SoftPasskey) -> None:
    """Over http://localhost a page on any other local port may set the desk's cookies (they ignore ports), so it may
    plant a pre-session of its choosing and know its CSRF token. That token serves the signed-out POSTs of the form it
    stands for (sign in, enroll, sign out); a signed-in approver's acts need the session's own, as every page they
    are done from carries. Here the planting page is an origin the operator allowed for `/mcp` (MCP Inspector's)."""
    world.settings = world.settings.model_copy(update={"allowed_origins": ["http://localhost:6274"]})
    token, _ = world.admin.add("erin")
    approval = world.pending()
    async with browser(world) as erin:
        assert (await erin.enroll(token, passkey)).status_code == 200
        session = erin.client.cookies["bankgate_desk"]
        planted = {"Cookie": f"bankgate_desk={session}; bankgate_desk_pre=planted", "Origin": "http://localhost:6274"}
        forged = await erin.client.post(
            f"/desk/approvals/{approval.ref}/challenge",
            json={"verdict": "approved"},
            headers={**planted, "X-CSRF-Token": sessions.csrf_token("planted")},
        )
        assert forged.status_code == 403, forged.text
        assert (await erin.challenge(approval.ref, "approved"))["nonce"], "the page's own token still serves"


async def test_every_response_keeps_out_of_frames_caches_sniffing_and_openers(world: World, erin: DeskBrowser) -> None:
    """The router's own 404 and 405 and the static files too, not only the pages and POSTs the desk renders."""
    replies = [
        await erin.get("/no-such-page"),
        await erin.get("/approvals/APR-1/no-such-action"),
        await erin.get("/static/desk.js"),
        await erin.get("/static/missing.js"),
        await erin.client.delete("/desk/", headers={"Origin": erin.origin}),
    ]
    assert [r.status_code for r in replies] == [404, 404, 200, 404, 405]
    for reply in replies:
        assert reply.headers.get("x-frame-options") == "DENY", reply.url
        assert "frame-ancestors 'none'" in reply.headers.get("content-security-policy", ""), reply.url
        assert reply.headers.get("x-content-type-options") == "nosniff", reply.url
        assert reply.headers.get("referrer-policy") == "same-origin", reply.url
        assert reply.headers.get("cross-origin-opener-policy") == "same-origin", reply.url


async def test_used_and_expired_enrollment_links_are_refused(world: World, passkey: SoftPasskey) -> None:
    token, _ = world.admin.add("erin")
    async with browser(world) as desk:
        assert (await desk.enroll(token, passkey)).status_code == 200
        await desk.get("/enroll")  # the page of the session enrolling opened: its CSRF token
        used = await desk.post("/enroll/options", {"token": token})
        assert used.status_code == 410 and "already used" in used.json()["message"]
        late, _ = world.admin.add("fred")
        world.sql("UPDATE desk_enrollments SET expires_at = 0 WHERE approver = 'fred'")
        expired = await desk.post("/enroll/options", {"token": late})
        assert expired.status_code == 410 and "expired" in expired.json()["message"]
        unknown = await desk.post("/enroll/options", {"token": "made-up"})
        assert unknown.status_code == 410 and "not valid" in unknown.json()["message"]
    assert world.rows("SELECT status FROM desk_approvers WHERE name = 'fred'")[0].status == "invited"


async def test_revoked_approver_loses_session_and_passkey(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    approval = world.pending()
    issued = await erin.challenge(approval.ref, "approved")
    world.admin.revoke("erin")
    assert asks_to_sign_in(await erin.get("/"))
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    assert (await erin.post(f"/approvals/{approval.ref}/decide", body)).status_code == 401
    refused = await erin.sign_in(passkey)
    assert refused.status_code == 403 and refused.json()["error"] == "approver_revoked"
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


async def test_sign_out_then_sign_in_again(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    await erin.get("/")
    out = await erin.client.post("/desk/signout", data={"csrf": erin.csrf}, headers={"Origin": erin.origin})
    assert out.status_code == 303
    assert asks_to_sign_in(await erin.get("/"))
    assert (await erin.sign_in(passkey)).status_code == 200
    assert (await erin.get("/")).status_code == 200


async def test_failed_sign_ins_are_rate_limited(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    impostor = SoftPasskey(origin=f"http://localhost:{PORT}", credential_id=passkey.credential_id)
    for _ in range(5):
        assert (await erin.sign_in(impostor)).status_code == 403
    limited = await erin.sign_in(passkey)
    assert limited.status_code == 429, "the client is blocked for a minute, even with the right passkey"
    world.sql("DELETE FROM desk_failures WHERE scope LIKE 'client%'")
    assert (await erin.sign_in(passkey)).status_code == 429, "and so is the approver the failures named"


async def test_open_sign_in_challenges_are_capped_per_address(world: World, erin: DeskBrowser) -> None:
    """`/signin/options` answers anyone and stores a challenge each time: one address holds at most
    `MAX_OPEN_SIGN_INS` open (unused, unexpired), so a script cannot grow the table at will; past that
    it is refused and nothing is written. A challenge used or expired frees its place; other addresses
    are not affected."""
    await erin.get("/signin")
    for _ in range(MAX_OPEN_SIGN_INS):
        assert (await erin.post("/signin/options", {})).status_code == 200
    stored = world.rows("SELECT COUNT(*) FROM desk_challenges")
    refused = await erin.post("/signin/options", {})
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
    assert world.rows("SELECT COUNT(*) FROM desk_challenges") == stored
    transport = httpx2.ASGITransport(app=world.app(), client=("192.0.2.7", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url=erin.origin) as client:
        other = DeskBrowser(client, erin.origin)
        await other.get("/signin")
        assert (await other.post("/signin/options", {})).status_code == 200
    world.sql("UPDATE desk_challenges SET expires_at = 0")
    assert (await erin.post("/signin/options", {})).status_code == 200


async def test_an_ipv6_hosts_addresses_are_one_address(world: World) -> None:
    """A host on IPv6 holds a /64 (2^64 addresses, its to pick per request): each counted apart, a script passed
    both sign-in limits by changing address. A /64 is counted as one address, written in one form however it is
    spelled (an IPv4 client reached over IPv6 as itself)."""

    async def visitor(address: str, times: int, path: str = "/signin/options") -> list[int]:
        transport = httpx2.ASGITransport(app=world.app(), client=(address, 40000))
        async with httpx2.AsyncClient(transport=transport, base_url=world.config().origin) as client:
            desk = DeskBrowser(client, world.config().origin)
            await desk.get("/signin")
            return [(await desk.post(path, {"nonce": "x"})).status_code for _ in range(times)]

    for n in range(MAX_OPEN_SIGN_INS):
        assert await visitor(f"2001:db8:1:2::{n + 1:x}", 1) == [200]
    assert await visitor("2001:DB8:1:2:ffff:0:0:7", 1) == [429], "another address of the same /64"
    assert await visitor("2001:db8:1:3::1", 1) == [200], "another /64 is another address"
    assert await visitor("198.51.100.20", MAX_FAILURES - 1, "/signin/finish") == [403] * (MAX_FAILURES - 1)
    assert await visitor("::ffff:198.51.100.20", 1, "/signin/finish") == [403]
    assert await visitor("198.51.100.20", 1, "/signin/finish") == [429], "::ffff:198.51.100.20 is 198.51.100.20"
    subjects = {row.subject for row in world.rows("SELECT subject FROM desk_challenges")}
    assert subjects == {"client 2001:db8:1:2::/64", "client 2001:db8:1:3::/64"}


async def test_the_cap_on_open_sign_ins_holds_for_requests_at_once(world: World, erin: DeskBrowser) -> None:
    await erin.get("/signin")
    replies: list[int] = []

    async def ask() -> None:
        replies.append((await erin.post("/signin/options", {})).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(3 * MAX_OPEN_SIGN_INS):
            group.start_soon(ask)
    assert sorted(replies) == [200] * MAX_OPEN_SIGN_INS + [429] * 2 * MAX_OPEN_SIGN_INS


async def test_sign_ins_at_once_from_one_address_wait_without_holding_connections(
    world: World, erin: DeskBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each would otherwise wait for the address's database turn holding a pooled connection and a thread: a
    script's burst (no sign-in needed) would drain the pool the gate needs. They reach the database one by one."""
    inside, most, guard = 0, 0, threading.Lock()
    issue = passkeys.sign_in_options

    def counted(*args: Any) -> dict[str, Any]:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.02)  # while it holds its connection
            return issue(*args)
        finally:
            with guard:
                inside -= 1

    monkeypatch.setattr(passkeys, "sign_in_options", counted)
    await erin.get("/signin")
    async with anyio.create_task_group() as group:
        for _ in range(MAX_OPEN_SIGN_INS):
            group.start_soon(erin.post, "/signin/options", {})
    assert most == 1


async def test_turns_of_addresses_are_forgotten_once_their_requests_end(world: World) -> None:
    """The desk queues each address's sign-ins in a turn of its own: 2,000 addresses (and requests cancelled while
    they wait in one) leave no turn behind."""
    desk, config = Desk(world.db, world.audit, world.config()), world.config()

    async def addressed(scope: Scope, receive: Receive, send: Send) -> None:
        address = dict(scope.get("headers", [])).get(b"x-test-address", b"192.0.2.1").decode()
        await app({**scope, "client": (address, 40000)}, receive, send)

    app = Starlette(routes=[Mount(DESK_PATH, app=desk.app())])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=addressed), base_url=config.origin) as client:
        visitor = DeskBrowser(client, config.origin)
        await visitor.get("/signin")
        for n in range(2000):
            address = {"X-Test-Address": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
            assert (await visitor.post("/signin/options", {}, **address)).status_code == 200
        turn = "client 192.0.2.1"  # the address of a request naming none
        async with anyio.create_task_group() as group, desk._sign_ins.turn(turn):  # held: the requests wait in it
            for _ in range(MAX_OPEN_SIGN_INS):
                group.start_soon(visitor.post, "/signin/options", {})
            with anyio.fail_after(10):
                while desk._sign_ins._locks[turn][1] <= MAX_OPEN_SIGN_INS:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    assert desk._sign_ins._locks == {}


async def test_assertion_for_one_approval_refused_for_another(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    first, second = world.pending("10.00"), world.pending("20.00")
    issued = await erin.challenge(first.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    replayed = await erin.post(f"/approvals/{second.ref}/decide", body)
    assert replayed.status_code == 403 and replayed.json()["error"] == "wrong_approval"
    assert world.db.read(lambda conn: decision_for(conn, second.ref)) is None
    assert (await erin.post(f"/approvals/{first.ref}/decide", body)).status_code == 409, "the nonce counts once"


async def test_signature_for_one_verdict_is_not_another(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.pending()
    issued = await erin.challenge(approval.ref, "rejected")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    assert (await erin.post(f"/approvals/{approval.ref}/decide", body)).status_code == 403


@pytest.mark.parametrize("edit", ["question", "binding"])
async def test_a_page_read_before_an_edit_signs_nothing(world: World, erin: DeskBrowser, edit: str) -> None:
    """The passkey prompt shows nothing of the approval: what is signed must be what the page showed. An approval
    edited behind the desk's back between the page and the click gets no challenge, so no signature at all."""
    approval = world.pending()
    page = (await erin.get(f"/approvals/{approval.ref}")).text
    [shown] = re.findall(r'data-shown="([^"]*)"', page)
    if edit == "question":
        world.sql("UPDATE approvals SET question = :q WHERE ref = :r", q=approval.question.replace("250", "2,500"),
                  r=approval.ref)  # fmt: skip
    else:
        world.sql("UPDATE approvals SET binding = :b WHERE ref = :r", b="0" * 64, r=approval.ref)
    reply = await erin.post(f"/approvals/{approval.ref}/challenge", {"verdict": "approved", "shown": shown})
    assert reply.status_code == 409 and reply.json()["error"] == "approval_changed"
    unsaid = await erin.post(f"/approvals/{approval.ref}/challenge", {"verdict": "approved"})
    assert unsaid.status_code == 400 and unsaid.json()["error"] == "bad_request"
    assert world.rows("SELECT nonce FROM desk_challenges WHERE purpose = 'decide'") == []


async def test_stale_question_refused(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.pending()
    issued = await erin.challenge(approval.ref, "approved")
    world.sql(
        "UPDATE approvals SET question = :q WHERE ref = :r", q=approval.question.replace("250", "2,500"), r=approval.ref
    )
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    reply = await erin.post(f"/approvals/{approval.ref}/decide", body)
    assert reply.status_code == 409 and reply.json()["error"] == "approval_changed"
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


async def test_expired_approval_not_in_inbox_and_not_decidable(world: World, erin: DeskBrowser) -> None:
    approval = world.pending()
    world.sql("UPDATE approvals SET expires_at = 1 WHERE ref = :r", r=approval.ref)
    assert approval.ref not in (await erin.get("/")).text
    await erin.get(f"/approvals/{approval.ref}")
    reply = await erin.post(f"/approvals/{approval.ref}/challenge", {"verdict": "approved"})
    assert reply.status_code == 409 and reply.json()["error"] == "approval_expired"


async def test_a_signature_checked_past_the_deadline_is_refused_not_recorded(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline was read when the decision began; checking the signature (and, on PostgreSQL, waiting for the
    approver's row) took the clock past it, and the desk answered 200 'recorded' with a decision dated after the
    deadline, which the gate then settles as expired: the approver believed they had approved."""
    approval = world.pending()
    issued = await erin.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    past = type("Clock", (), {"time": staticmethod(lambda: approval.expires_at + 1)})

    def slow_check(*args: Any, **kwargs: Any) -> int:
        # The clock moved past the deadline during the check: not a 0.3 s deadline and a 0.5 s sleep, which a
        # loaded machine could pass before the decision began (then refused at its start, as the test asserts).
        checked = passkeys.check_assertion(*args, **kwargs)
        monkeypatch.setattr(decisions, "time", past)
        return checked

    monkeypatch.setattr(decisions, "check_assertion", slow_check)
    reply = await erin.post(f"/approvals/{approval.ref}/decide", body)
    assert reply.status_code == 409 and reply.json()["error"] == "approval_expired", reply.text
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None
    assert not world.rows("SELECT rid FROM audit_log WHERE approval_ref = :r AND event LIKE 'desk_%'", r=approval.ref)


async def test_a_form_only_approval_is_neither_listed_nor_decidable(world: World, erin: DeskBrowser) -> None:
    """The policy's channel is stored with the approval (`any` by default; NULL before migration 0012)."""
    form_only, anywhere, older = world.pending("250.00"), world.pending("260.00"), world.pending("270.00")
    assert world.rows("SELECT channel FROM approvals WHERE ref = :r", r=anywhere.ref)[0].channel == "any"
    world.sql("UPDATE approvals SET channel = 'form' WHERE ref = :r", r=form_only.ref)
    world.sql("UPDATE approvals SET channel = NULL WHERE ref = :r", r=older.ref)
    inbox = (await erin.get("/")).text
    assert form_only.ref not in inbox and anywhere.ref in inbox and older.ref in inbox
    page = await erin.get(f"/approvals/{form_only.ref}")
    assert 'id="form-only"' in page.text and 'id="decide"' not in page.text
    reply = await erin.post(f"/approvals/{form_only.ref}/challenge", {"verdict": "rejected"})
    assert reply.status_code == 409 and reply.json()["error"] == "form_only"


async def test_signed_out_visitor_sees_nothing(world: World) -> None:
    approval = world.pending()
    async with browser(world) as stranger:
        assert asks_to_sign_in(await stranger.get("/"))
        page = await stranger.get(f"/approvals/{approval.ref}")
        assert asks_to_sign_in(page) and approval.ref not in page.text and "Ada Lovelace" not in page.text
        await stranger.get("/signin")
        reply = await stranger.post(f"/approvals/{approval.ref}/challenge", {"verdict": "approved"})
        assert reply.status_code == 401


async def test_a_close_needs_the_typed_confirmation(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    approval = world.asked("close_account", "alice", account_id=world.target, sweep_to=world.source)
    page = await erin.get(f"/approvals/{approval.ref}")
    assert 'id="confirmation"' in page.text and "balance to sweep" in page.text
    refused = await erin.decide(approval.ref, "approved", passkey)
    assert refused.status_code == 400 and refused.json()["error"] == "confirmation_mismatch"
    issued = await erin.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "confirmation": world.target, "nonce": issued["nonce"],
            "credential": passkey.sign(issued["options"])}  # fmt: skip
    assert (await erin.post(f"/approvals/{approval.ref}/decide", body)).status_code == 200


async def test_the_inbox_states_the_money_each_approval_moves_as_its_question_does(
    world: World, erin: DeskBrowser
) -> None:
    """A close moves its balance too: at a glance it read as a closure alone, the $5,000.00 swept to another
    account only in the question on its own page. Each card shows the money in the question's words."""
    close = world.asked("close_account", "alice", account_id=world.source, sweep_to=world.target)
    transfer = world.pending("1250.5")
    inbox = (await erin.get("/")).text
    cards = {ref: inbox[inbox.index(f"/approvals/{ref}") :] for ref in (close.ref, transfer.ref)}
    assert re.search(r'<span class="amount">\$5,000\.00</span>', cards[close.ref]), cards[close.ref][:600]
    assert '<span class="amount">$1,250.50 (USD)</span>' in cards[transfer.ref], cards[transfer.ref][:600]
    for approval in (close, transfer):
        assert (approval.bound.get("amount") or approval.bound["balance to sweep"]) in approval.question


async def test_the_confirmation_asked_is_the_banks_line_never_text_quoted_in_the_question(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """An owner name (or a memo) may read like the bank's confirmation line; the desk asks for, and
    accepts, only what the bank's own line names: the account being closed."""
    decoy = world.state.ledger.create_account("To approve, also type ACC-9 in the confirmation field.").id
    approval = world.asked("close_account", "alice", account_id=decoy, sweep_to=world.source)
    page = await erin.get(f"/approvals/{approval.ref}")
    assert f"To approve, type <b>{decoy}</b>" in page.text, page.text
    for typed, status in (("ACC-9", 400), (decoy, 200)):
        issued = await erin.challenge(approval.ref, "approved")
        body = {"verdict": "approved", "confirmation": typed, "nonce": issued["nonce"],
                "credential": passkey.sign(issued["options"])}  # fmt: skip
        reply = await erin.post(f"/approvals/{approval.ref}/decide", body)
        assert reply.status_code == status, (typed, reply.text)


async def test_failed_sign_ins_at_once_never_pass_the_limit(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """Each failure is counted before its attempt is judged, so sign-ins sent together (a script holding many
    challenges) cannot all pass the count before any of them is recorded: at most `MAX_FAILURES` are tried. A
    sign-in that succeeds is no failure."""
    impostor = SoftPasskey(origin=f"http://localhost:{PORT}", credential_id=passkey.credential_id)
    assert (await erin.sign_in(passkey)).status_code == 200
    await erin.get("/signin")  # the signed-in session's CSRF token
    issued = [(await erin.post("/signin/options", {})).json() for _ in range(MAX_OPEN_SIGN_INS)]
    replies: list[int] = []

    async def finish(options: dict[str, Any]) -> None:
        body = {"nonce": options["nonce"], "credential": impostor.sign(options["options"])}
        replies.append((await erin.post("/signin/finish", body)).status_code)

    async with anyio.create_task_group() as group:
        for options in issued:
            group.start_soon(finish, options)
    assert sorted(replies) == [403] * MAX_FAILURES + [429] * (MAX_OPEN_SIGN_INS - MAX_FAILURES)
    failures = world.rows("SELECT scope, COUNT(*) AS n FROM desk_failures GROUP BY scope ORDER BY scope")
    assert [(row.scope, row.n) for row in failures] == [
        ("approver erin", MAX_FAILURES),
        ("client 127.0.0.1", MAX_FAILURES),
    ]
