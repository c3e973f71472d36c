"""Access control at the desk beyond test_desk_http.py: one approver's challenge, passkey or session
used by another, a link or challenge used twice at once (PostgreSQL lets two transactions read
"unused" together), a revocation racing an enrollment, and bodies too large to read."""

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest
from webauthn import verify_registration_response

from mcp_server.desk import challenges, passkeys
from mcp_server.desk.decisions import decision_for
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.server import StdioDesk
from mcp_server.desk.sessions import SESSION_COOKIE
from mcp_server.desk.web import MAX_BODY
from tests.desk.authenticator import SoftPasskey
from tests.desk.races import Held, abreast, change_during_decision, change_while_held
from tests.desk.world import PORT, DeskBrowser, World, asks_to_sign_in, browser
from tests.support import http_status

pytestmark = pytest.mark.anyio


def second_passkey() -> SoftPasskey:
    return SoftPasskey(origin=f"http://localhost:{PORT}")


async def test_another_approvers_challenge_is_refused(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> None:
    """Fred cannot finish a decision erin's challenge was issued for, with his passkey or hers."""
    approval = world.pending()
    fred_key = second_passkey()
    token, _ = world.admin.add("fred")
    async with browser(world) as fred:
        assert (await fred.enroll(token, fred_key)).status_code == 200
        issued = await erin.challenge(approval.ref, "approved")
        await fred.get(f"/approvals/{approval.ref}")
        body = {"verdict": "approved", "nonce": issued["nonce"], "credential": fred_key.sign(issued["options"])}
        refused = await fred.post(f"/approvals/{approval.ref}/decide", body)
        assert refused.status_code == 403 and refused.json()["error"] == "wrong_challenge"

        mine = await fred.challenge(approval.ref, "approved")
        with_erins_key = {"verdict": "approved", "nonce": mine["nonce"], "credential": passkey.sign(mine["options"])}
        refused = await fred.post(f"/approvals/{approval.ref}/decide", with_erins_key)
        assert refused.status_code == 403 and refused.json()["error"] == "unknown_passkey"
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


async def test_a_signed_out_session_cookie_is_dead(world: World, erin: DeskBrowser) -> None:
    await erin.get("/")
    cookie = erin.client.cookies[SESSION_COOKIE]
    out = await erin.client.post("/desk/signout", data={"csrf": erin.csrf}, headers={"Origin": erin.origin})
    assert out.status_code == 303
    async with browser(world) as thief:
        thief.client.cookies.set(SESSION_COOKIE, cookie, path="/desk")
        assert asks_to_sign_in(await thief.get("/")), "the old cookie no longer signs anyone in"


@pytest.mark.parametrize("how", ["sign-in", "enrollment"])
async def test_signing_in_again_ends_the_session_the_browser_held(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, how: str
) -> None:
    """A browser signed in afresh (as the same approver, or enrolling another on a shared machine) holds one
    session: the one it replaced is dead server-side, not merely forgotten by the browser until it expires."""
    await erin.get("/")
    replaced = erin.client.cookies[SESSION_COOKIE]
    if how == "sign-in":
        reply = await erin.sign_in(passkey)
    else:
        token, _ = world.admin.add("fay")
        reply = await erin.enroll(token, second_passkey())
    assert reply.status_code == 200, reply.text
    assert erin.client.cookies[SESSION_COOKIE] != replaced
    assert (await erin.get("/")).status_code == 200, "the new session works"
    async with browser(world) as thief:
        thief.client.cookies.set(SESSION_COOKIE, replaced, path="/desk")
        assert asks_to_sign_in(await thief.get("/")), "the replaced cookie no longer signs anyone in"


async def test_a_sign_count_moved_since_it_was_read_refuses_the_assertion(world: World, erin: DeskBrowser) -> None:
    """Two uses of one passkey at once (a clone's, or two tabs'): each checked its count against the same stored
    one, and the slower must not write its lower count over the faster's, or a clone would go unnoticed."""
    [(credential_id, stored)] = world.rows("SELECT credential_id, sign_count FROM desk_credentials")
    key = world.db.read(lambda conn: passkeys.credential(conn, {"id": credential_id}))
    world.sql("UPDATE desk_credentials SET sign_count = :c", c=stored + 2)  # the faster use, committed meanwhile
    with pytest.raises(DeskRefusal) as refused:
        world.db.run(lambda conn: passkeys.update_sign_count(conn, key, stored + 1))
    assert refused.value.code == "bad_signature" and "at the same moment" in refused.value.message
    assert world.rows("SELECT sign_count FROM desk_credentials") == [(stored + 2,)]


async def test_an_expired_session_is_dead_though_its_cookie_is_still_sent(world: World, erin: DeskBrowser) -> None:
    """The server's expiry counts, not the cookie's Max-Age: a browser (or thief) that keeps sending it gets nothing."""
    approval = world.pending()
    await erin.get(f"/approvals/{approval.ref}")
    world.sql("UPDATE desk_sessions SET expires_at = :t", t=time.time() - 1)
    assert asks_to_sign_in(await erin.client.get(f"/desk/approvals/{approval.ref}"))
    refused = await erin.post(f"/approvals/{approval.ref}/challenge", {"verdict": "approved"})
    assert refused.status_code == 401 and refused.json()["error"] == "signed_out"


async def test_a_reinvited_approvers_first_link_is_dead(world: World, passkey: SoftPasskey) -> None:
    first, _ = world.admin.add("gail")
    second, _ = world.admin.add("gail")
    async with browser(world) as desk:
        await desk.get("/enroll")
        assert (await desk.post("/enroll/options", {"token": first})).status_code == 410
        assert (await desk.enroll(second, passkey)).status_code == 200


async def test_an_enrollment_challenge_answers_only_its_own_link(world: World, passkey: SoftPasskey) -> None:
    mine, _ = world.admin.add("hank")
    other, _ = world.admin.add("ivy")
    async with browser(world) as desk:
        await desk.get("/enroll")
        options = (await desk.post("/enroll/options", {"token": mine})).json()
        body = {"token": other, "nonce": options["nonce"], "credential": passkey.register(options["options"])}
        refused = await desk.post("/enroll/finish", body)
        assert refused.status_code == 403 and refused.json()["error"] == "unknown_challenge"
    assert {r.status for r in world.rows("SELECT status FROM desk_approvers")} == {"invited"}


async def test_one_enrollment_link_used_twice_at_once_registers_one_passkey(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = world.admin.add("jude")
    held = Held(verify_registration_response, abreast(world, 2))
    monkeypatch.setattr(passkeys, "verify_registration_response", held)
    statuses: list[int] = []

    async with browser(world) as one, browser(world) as two:
        # Both browsers hold a challenge before either finishes: the race is at the finish, not at the options
        # (on SQLite a finish holds the write lock, so options asked for after it would see the link used up).
        bodies = [await desk.registration(token, second_passkey()) for desk in (one, two)]

        async def finish(desk: DeskBrowser, body: dict[str, Any]) -> None:
            statuses.append((await desk.post("/enroll/finish", body)).status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(finish, one, bodies[0])
            tasks.start_soon(finish, two, bodies[1])
            await held.line_up()

    assert sorted(statuses) == [200, 410], statuses
    assert len(world.rows("SELECT credential_id FROM desk_credentials WHERE approver = 'jude'")) == 1


async def test_a_revocation_during_enrollment_stands(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The administrator revokes an invited approver while their link is being used: they stay revoked."""
    token, _ = world.admin.add("kim")
    held = Held(verify_registration_response, 1)
    monkeypatch.setattr(passkeys, "verify_registration_response", held)

    async with browser(world) as desk:
        body = await desk.registration(token, second_passkey())
        replies: list[Any] = []

        async def finish() -> None:
            replies.append(await desk.post("/enroll/finish", body))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(finish)
            await change_while_held(world, held, lambda: world.admin.revoke("kim"))
        assert asks_to_sign_in(await desk.get("/")), "no session survives the revocation"

    assert world.rows("SELECT status FROM desk_approvers WHERE name = 'kim'")[0].status == "revoked"


async def test_one_sign_in_assertion_sent_twice_at_once_opens_one_session(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, monkeypatch: pytest.MonkeyPatch
) -> None:
    await erin.get("/signin")
    options = (await erin.post("/signin/options", {})).json()
    body = {"nonce": options["nonce"], "credential": passkey.sign(options["options"])}
    # Hold both right after each has read the challenge (consume reads the clock next).
    held = Held(time.time, abreast(world, 2))
    monkeypatch.setattr(challenges, "time", type("Clock", (), {"time": staticmethod(held)}))
    statuses: list[int] = []

    async with browser(world) as one, browser(world) as two:

        async def finish(desk: DeskBrowser) -> None:
            await desk.get("/signin")
            statuses.append((await desk.post("/signin/finish", body)).status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(finish, one)
            tasks.start_soon(finish, two)
            await held.line_up()

    assert sorted(statuses) == [200, 409], statuses


@pytest.fixture
def served_desk(world: World) -> Iterator[int]:
    """The desk on a free loopback port (uvicorn, as beside stdio): its port."""
    settings = world.settings.model_copy(update={"desk_port": 0})
    served = StdioDesk(world.db, world.audit, settings, desk_listeners(settings))
    served.start()
    yield served.port
    served.stop()


async def test_a_nul_in_a_reference_nonce_or_passkey_id_names_nothing(world: World, erin: DeskBrowser) -> None:
    """A clear refusal on both backends: PostgreSQL's text cannot hold NUL, and passing one to a query made
    it raise (a 500, before sign-in for the passkey id)."""
    approval = world.pending()
    await erin.get(f"/approvals/{approval.ref}")
    page = await erin.get("/approvals/APR-%00")
    assert page.status_code == 404 and "There is no approval" in page.text
    challenge = await erin.post("/approvals/APR-%00/challenge", {"verdict": "approved"})
    assert challenge.status_code == 404 and challenge.json()["error"] == "unknown_approval"
    decide = await erin.post(f"/approvals/{approval.ref}/decide", {"verdict": "approved", "nonce": "n\x00"})
    assert decide.status_code == 403 and decide.json()["error"] == "unknown_challenge"
    async with browser(world) as stranger:
        await stranger.get("/signin")
        nonce = (await stranger.post("/signin/options", {})).json()["nonce"]
        signin = await stranger.post("/signin/finish", {"nonce": nonce, "credential": {"id": "k\x00"}})
        assert signin.status_code == 401 and signin.json()["error"] == "unknown_passkey"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/enroll/options", '{"token": "t\\ud800"}'),
        ("/signin/finish", '{"nonce": "n", "credential": {"id": "k\\ud800"}}'),
        ("/approvals/APR-0000000000/decide", '{"verdict": "rejected", "nonce": "n\\ud800", "note": "\\udfff"}'),
    ],
    ids=["enroll-token", "passkey-id", "nonce-and-note"],
)
async def test_a_lone_surrogate_in_a_json_body_is_a_clear_refusal(
    world: World, erin: DeskBrowser, path: str, body: str
) -> None:
    """JSON may spell half a UTF-16 pair (\\ud800), which no column or hash takes as text: refused like any
    malformed body, not a 500 from encoding it (before sign-in, for the first two)."""
    await erin.get("/")
    headers = {"Origin": erin.origin, "X-CSRF-Token": erin.csrf, "Content-Type": "application/json"}
    reply = await erin.client.post("/desk" + path, content=body.encode(), headers=headers)
    assert reply.status_code == 400 and reply.json()["error"] == "bad_request", reply.text


def head(port: int, extra: str) -> bytes:
    return (
        f"POST /desk/signin/options HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_body_declared_too_large_is_refused_unread(served_desk: int) -> None:
    port = served_desk
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head(port, f"Content-Length: {1 << 30}\r\n") + b"{" + b" " * 1000)
        assert http_status(sock) == 413


def test_a_chunked_body_is_cut_off_at_the_limit(served_desk: int) -> None:
    """The desk stops reading once a body passes its limit, instead of buffering whatever is sent."""
    port = served_desk
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head(port, "Transfer-Encoding: chunked\r\n"))
        chunk = b" " * 8192
        for _ in range(MAX_BODY // len(chunk) + 4):  # past the limit, and never the final chunk
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        assert http_status(sock) == 413


@pytest.mark.parametrize("body", [b"[" * 20_000, b'{"a":' * 10_000], ids=["arrays", "objects"])
def test_a_body_nested_too_deep_is_a_clear_refusal(served_desk: int, body: bytes) -> None:
    """Under the size limit but past the JSON parser's recursion limit: a 4xx, as for any malformed body."""
    port = served_desk
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head(port, f"Content-Length: {len(body)}\r\n") + body)
        status = http_status(sock)
    assert 400 <= status < 500, status


class Spoiled(SoftPasskey):
    """Erin's passkey, signing as a phishing page (or another port or scheme of the desk's host), without user
    verification, as a clone (old counter), or a registration's client data (`kind`) over a sign-in's challenge."""

    def __init__(
        self, real: SoftPasskey, *, origin: str | None = None, flags: int | None = None, count: int = -1, kind: str = ""
    ):
        super().__init__(origin or real.origin, real.rp_id, real.key, real.credential_id, real.count, real.user_handle)
        self.flags, self.rewind, self.kind = flags, count, kind

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return super()._client_data(self.kind or kind, challenge)

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        if self.rewind >= 0:
            self.count = self.rewind
        return super()._auth_data(self.flags if self.flags is not None else flags, extra)


@pytest.mark.parametrize(
    "spoil",
    ["foreign-origin", "other-port", "https-scheme", "create-type", "no-user-verification", "cloned-counter",
     "backed-up-single-device"],
)  # fmt: skip
async def test_an_assertion_from_elsewhere_or_unverified_decides_nothing(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, spoil: str
) -> None:
    approval = world.pending()
    assert (await erin.decide(world.pending("120.00").ref, "approved", passkey)).status_code == 200  # count 2
    forged = {
        "foreign-origin": Spoiled(passkey, origin="https://desk.evil.example"),
        "other-port": Spoiled(passkey, origin=f"http://localhost:{PORT + 1}"),
        "https-scheme": Spoiled(passkey, origin=f"https://localhost:{PORT}"),
        "create-type": Spoiled(passkey, kind="webauthn.create"),
        "no-user-verification": Spoiled(passkey, flags=0x01),
        "cloned-counter": Spoiled(passkey, count=0),
        "backed-up-single-device": Spoiled(passkey, flags=0x01 | 0x04 | 0x10),  # BS set, BE not: malformed
    }[spoil]
    issued = await erin.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": forged.sign(issued["options"])}
    refused = await erin.post(f"/approvals/{approval.ref}/decide", body)
    assert refused.status_code == 403 and refused.json()["error"] == "bad_signature", refused.text
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


class Unusable(SoftPasskey):
    """A registration no signature could ever be checked against (a key on no supported curve, a point off
    P-256), or whose flags contradict themselves (backed up, yet single-device)."""

    def __init__(self, spoil: str) -> None:
        super().__init__(origin=f"http://localhost:{PORT}")
        self.spoil = spoil

    def cose_key(self) -> dict[int, Any]:
        key = super().cose_key()
        if self.spoil == "unknown-curve":
            key[-1] = 99
        elif self.spoil == "off-curve-point":
            key[-3] = key[-2]
        return key

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        return super()._auth_data(flags | 0x10 if self.spoil == "backed-up-single-device" else flags, extra)


@pytest.mark.parametrize("spoil", ["unknown-curve", "off-curve-point", "backed-up-single-device"])
async def test_a_passkey_that_could_never_sign_is_refused_and_the_link_kept(
    world: World, passkey: SoftPasskey, spoil: str
) -> None:
    """A clear refusal that changes nothing: registered, such a key would use up the link and leave an
    active approver who can never sign in."""
    token, _ = world.admin.add("erin")
    async with browser(world) as desk:
        refused = await desk.enroll(token, Unusable(spoil))
        assert refused.status_code == 400 and refused.json()["error"] == "registration_failed", refused.text
        assert world.rows("SELECT status FROM desk_approvers WHERE name = 'erin'")[0].status == "invited"
        assert world.rows("SELECT COUNT(*) AS n FROM desk_credentials")[0].n == 0
        assert (await desk.enroll(token, passkey)).status_code == 200, "the link still enrolls a working passkey"
        assert (await desk.sign_in(passkey)).status_code == 200


async def test_a_passkey_registered_already_is_refused_and_the_link_kept(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """A registration naming the credential id of erin's passkey (an authenticator under the enrollee's
    control can claim any id): a clear refusal, not a database error, and fred's link still works."""
    token, _ = world.admin.add("fred")
    async with browser(world) as fred:
        claimed = SoftPasskey(origin=f"http://localhost:{PORT}", credential_id=passkey.credential_id)
        refused = await fred.enroll(token, claimed)
        assert refused.status_code == 409 and refused.json()["error"] == "passkey_registered", refused.text
        assert world.rows("SELECT status FROM desk_approvers WHERE name = 'fred'")[0].status == "invited"
        assert (await fred.enroll(token, second_passkey())).status_code == 200
    assert (await erin.sign_in(passkey)).status_code == 200, "erin's passkey is still hers"


async def test_a_revocation_during_a_decision_stands(
    world: World, erin: DeskBrowser, passkey: SoftPasskey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The administrator revokes erin while her signed decision is being checked: a revocation that commits
    first stops the decision; a decision is recorded only if the revocation came after it."""
    approval = world.pending()
    reply, revoked_first = await change_during_decision(
        world, erin, passkey, approval, lambda: world.admin.revoke("erin"), monkeypatch
    )
    decided = world.db.read(lambda conn: decision_for(conn, approval.ref))
    if revoked_first:
        assert reply.status_code == 403 and reply.json()["error"] == "approver_revoked", reply.text
        assert decided is None
    else:
        assert reply.status_code == 200 and decided is not None, "decided before the revocation could commit"


async def test_a_link_naming_no_approval_puts_none_of_its_text_on_the_desks_page(erin: DeskBrowser) -> None:
    """Anyone may send an approver a desk link: a path that is no reference's shape is not echoed, or the bank's
    own page would say what the link's author wrote (reversed by a bidi override, even)."""
    planted = "APR-0000000001 was approved by the bank. Call +1 555 0100 to confirm \u202eenod"
    page = await erin.get("/approvals/" + planted.replace(" ", "%20"))
    assert page.status_code == 404 and "There is no approval with that reference." in page.text
    assert "by the bank" not in page.text and "\u202e" not in page.text
    challenge = await erin.post("/approvals/" + planted.replace(" ", "%20") + "/challenge", {"verdict": "approved"})
    assert challenge.status_code == 404 and "by the bank" not in challenge.json()["message"]
    well_formed = await erin.get("/approvals/APR-00000000FF")
    assert well_formed.status_code == 404 and "There is no approval APR-00000000FF." in well_formed.text


async def test_a_copied_passkey_whose_count_fell_behind_signs_nothing(
    world: World, erin: DeskBrowser, passkey: SoftPasskey
) -> None:
    """A copy of erin's passkey taken before her last uses counts from where it was copied: its next count is not
    past the stored one, so neither a sign-in nor a decision of it counts, and the stored count stays."""
    copy = replace(passkey)  # taken now; erin goes on using hers
    for _ in range(3):
        assert (await erin.sign_in(passkey)).status_code == 200
    approval = world.pending()
    [(stored,)] = world.rows("SELECT sign_count FROM desk_credentials")
    assert stored == copy.count + 3
    refused = await erin.decide(approval.ref, "approved", copy)
    assert refused.status_code == 403 and refused.json()["error"] == "bad_signature"
    async with browser(world) as thief:
        signed_in = await thief.sign_in(copy)
        assert signed_in.status_code == 403 and signed_in.json()["error"] == "bad_signature"
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None
    assert world.rows("SELECT sign_count FROM desk_credentials") == [(stored,)]
