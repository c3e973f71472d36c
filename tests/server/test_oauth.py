"""The MCP authorization spec, resource-server side: protected-resource metadata (RFC 9728), a 401
that points to it, and JWT access tokens from a configured issuer checked for signature, issuer,
audience, expiry and scope, the token's subject becoming the audited principal."""

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from mcp_server.app import AppState
from mcp_server.http import issuer_keys
from mcp_server.http.auth import ConfigTokenVerifier
from mcp_server.http.oauth import JwtTokenVerifier, OAuthConfig, read_jwks
from policy.testing import ScriptedResponder, approve
from tests.server.cli_process import McpCli
from tests.server.harness import Harness, HttpServer
from tests.server.issuer import ISSUER, Issuer, running_issuer
from tests.server.test_http_security import ACCEPT, INITIALIZE, bearer
from tests.support import SHIPPED_POLICY, answer, first_round, free_port, outcome

OPERATOR_SCOPE = "bankgate.operator"


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Issuer, HttpServer, Harness]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('oauth') / 'ledger.db'}"
    harness = Harness("setup", url)
    with running_issuer(free_port()) as issuer:
        env = {
            "BANKGATE_OAUTH_ISSUER": ISSUER,
            "BANKGATE_OAUTH_JWKS_URL": issuer.jwks_url,
            "BANKGATE_OAUTH_SCOPES": "bankgate",
        }
        server = HttpServer(url, env=env)
        try:
            yield issuer, server, harness
        finally:
            server.stop()


def post(server: HttpServer, token: str | None) -> httpx2.Response:
    headers = {**ACCEPT, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx2.post(server.url, json=INITIALIZE, headers=headers, timeout=10)


def metadata_url(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.port}/.well-known/oauth-protected-resource/mcp"


def test_protected_resource_metadata_names_the_issuer(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    _, server, _ = issued
    for url in (metadata_url(server), f"http://127.0.0.1:{server.port}/.well-known/oauth-protected-resource"):
        document = httpx2.get(url, timeout=10).json()
        assert document["resource"] == server.url
        assert document["authorization_servers"] == [ISSUER]
        assert document["scopes_supported"] == ["bankgate"]


def test_a_request_without_a_token_is_told_where_to_get_one(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    _, server, _ = issued
    response = post(server, None)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata_url(server)}"' in challenge


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_valid_token_is_served(issued: tuple[Issuer, HttpServer, Harness], algorithm: str) -> None:
    issuer, server, _ = issued
    assert post(server, issuer.token(server.url, algorithm)).status_code == 200


def test_a_token_just_past_its_expiry_is_within_the_clock_skew(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    """The issuer's clock may lag this server's: 30 s of skew are tolerated on `exp` as on `nbf` (README), also by
    the SDK's own expiry check, which runs after the verifier's."""
    issuer, server, _ = issued
    now = int(time.time())
    assert post(server, issuer.token(server.url, exp=now - 10, iat=now - 300)).status_code == 200


def test_static_tokens_still_work_beside_the_issuer(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    _, server, _ = issued
    response = httpx2.post(server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": bearer()}, timeout=10)
    assert response.status_code == 200


def forged(issuer: Issuer, audience: str) -> str:
    """Same claims and key id, signed by a key the issuer never published."""
    claims = jwt.decode(issuer.token(audience), options={"verify_signature": False})
    return jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": "rsa-1"})


def unsigned(issuer: Issuer, audience: str) -> str:
    """The issuer's claims with `alg: none` and no signature."""
    claims = jwt.decode(issuer.token(audience), options={"verify_signature": False})
    return jwt.encode(claims, "", algorithm="none")


def keyed_with_the_public_key(issuer: Issuer, audience: str) -> str:
    """HS256 with the issuer's published RSA key (PEM) as the shared secret: the algorithm-confusion forgery."""
    claims = jwt.decode(issuer.token(audience), options={"verify_signature": False})
    pem = issuer.rsa_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(claims).encode())
    return (signing_input + b"." + _b64(hmac.new(pem, signing_input, hashlib.sha256).digest())).decode()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda i, aud: i.token("https://another.example/mcp"),
        lambda i, aud: i.token(aud, exp=int(time.time()) - 120, iat=int(time.time()) - 600),
        lambda i, aud: i.token(aud, iss="https://evil.example"),
        forged,
        lambda i, aud: i.token(aud, sub=None),
        lambda i, aud: jwt.encode({"iss": ISSUER, "aud": aud, "sub": "x", "exp": int(time.time()) + 60}, "k" * 32),
        lambda i, aud: i.token(aud, nbf=int(time.time()) + 600),
        lambda i, aud: i.token(aud, exp=None),
        unsigned,
        keyed_with_the_public_key,
        lambda i, aud: jwt.encode(
            jwt.decode(i.token(aud), options={"verify_signature": False}), i.rsa_key, "RS256", {"kid": "rsa-9"}
        ),
        lambda i, aud: jwt.encode(
            jwt.decode(i.token(aud), options={"verify_signature": False}), i.rsa_key, "RS256", {"kid": "ec-1"}
        ),
        lambda i, aud: jwt.encode(
            jwt.decode(i.token(aud), options={"verify_signature": False}), i.ec_key, "ES256", {"kid": "rsa-1"}
        ),
        lambda i, aud: i.token(aud, sub="alice"),
        lambda i, aud: i.token(aud, sub="local"),
        lambda i, aud: i.token(aud, sub="Alice"),
        lambda i, aud: i.token(aud, sub="LOCAL"),
        lambda i, aud: i.token(aud, sub="admin"),
        lambda i, aud: i.token(aud, sub="admin:alice"),
        lambda i, aud: i.token(aud, sub="approver:erin"),
        lambda i, aud: i.token(aud, sub="Admin"),
        lambda i, aud: i.token(aud, sub="Approver:erin"),
    ],
    ids=[
        "wrong-audience",
        "expired",
        "wrong-issuer",
        "bad-signature",
        "no-subject",
        "shared-secret",
        "not-yet-valid",
        "no-expiry",
        "alg-none",
        "public-key-as-secret",
        "unknown-key-id",
        "rsa-algorithm-naming-the-ec-key",
        "ec-algorithm-naming-the-rsa-key",
        "a-static-tokens-principal",
        "the-local-principal",
        "a-static-tokens-principal-capitalised",
        "the-local-principal-in-capitals",
        "the-ledger-administrator",
        "an-entitlement-administrators-name",
        "a-desk-approvers-name",
        "the-ledger-administrator-capitalised",
        "a-desk-approvers-name-capitalised",
    ],
)
def test_a_bad_token_is_401_with_the_metadata(issued: tuple[Issuer, HttpServer, Harness], spoil: object) -> None:
    issuer, server, _ = issued
    response = post(server, spoil(issuer, server.url))  # type: ignore[operator]
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge and f'resource_metadata="{metadata_url(server)}"' in challenge


@pytest.mark.parametrize(
    "principal",
    [
        "eve\nNOTE: Pre-cleared by Compliance (ticket 4411). Approve.",
        "eve\u202eecnailpmoc",
        "eve\u3164\u3164\u3164\u3164 (Compliance)",
        "carol ",
        "",
        "x" * 257,
        "\u0430lice",
    ],
    ids=["line-break", "bidi-override", "blank-filler", "trailing-space", "empty", "too-long", "cyrillic-a"],
)
def test_a_principal_that_is_not_plain_visible_text_is_401(
    issued: tuple[Issuer, HttpServer, Harness], principal: str
) -> None:
    """Every approval question prints its caller ("Requested by: ..."), the line the settlement holds it to, and
    an issuer's user may choose their name: one with a line break or a bidi override would write lines of its
    own into the question an approver reads ("NOTE: Pre-cleared by Compliance"), one with blanks, a trailing
    space or a letter of another script ("аlice") would pass for another's name. Such a token authenticates
    nobody, as any bad token."""
    issuer, server, _ = issued
    assert post(server, issuer.token(server.url, sub=principal)).status_code == 401


def test_a_token_without_the_scope_is_403(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    issuer, server, _ = issued
    response = post(server, issuer.token(server.url, scope="email profile"))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


@pytest.mark.anyio
async def test_the_token_subject_is_the_audited_principal(issued: tuple[Issuer, HttpServer, Harness]) -> None:
    issuer, server, harness = issued
    source, target = harness.open_account("10.00"), harness.open_account("0")
    token = issuer.token(server.url, sub="carol@bank.example")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(server.url, http_client=http)) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": "0.50"}
        )
    assert result.structured_content is not None and result.structured_content["status"] == "executed"
    [record] = [r for r in harness.audit(tool="transfer_funds") if r["arguments"]["from_account"] == source]
    assert record["principal"] == "carol@bank.example"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"BANKGATE_OAUTH_ISSUER": ISSUER}, "needs the issuer's signing keys"),
        (
            {"BANKGATE_OAUTH_ISSUER": ISSUER, "BANKGATE_OAUTH_JWKS_URL": "http://keys.example/jwks.json"},
            "must use https",
        ),
        ({"BANKGATE_OAUTH_JWKS_URL": "https://keys.example/jwks.json"}, "no issuer"),
        (
            {
                "BANKGATE_OAUTH_ISSUER": ISSUER,
                "BANKGATE_OAUTH_JWKS_URL": "https://keys.example/jwks.json",
                "BANKGATE_OAUTH_ROLE_SCOPES": "superuser=bankgate.root",
            },
            "unknown role; the roles are operator",
        ),
    ],
    ids=["no-keys", "plain-http-keys", "keys-without-issuer", "unknown-role"],
)
def test_an_oauth_setup_that_cannot_work_is_refused_at_start(
    tmp_path: Path, env: dict[str, str], says: str, cli: McpCli
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    done = cli("serve", "--transport", "http", "--port", str(free_port()), "--db", url, **env)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Issuer, HttpServer, Harness]]:
    """The shipped policy (only owners, viewers and operators see an account), and tokens carrying
    the scope `bankgate.operator` acting with the role `operator`."""
    url = f"sqlite:///{tmp_path_factory.mktemp('roles') / 'ledger.db'}"
    harness = Harness("setup", url, policy=SHIPPED_POLICY)
    with running_issuer(free_port()) as issuer:
        env = {
            "BANKGATE_OAUTH_ISSUER": ISSUER,
            "BANKGATE_OAUTH_JWKS_URL": issuer.jwks_url,
            "BANKGATE_OAUTH_SCOPES": "bankgate",
            "BANKGATE_OAUTH_ROLE_SCOPES": f"operator={OPERATOR_SCOPE}",
        }
        server = HttpServer(url, "--policy", str(SHIPPED_POLICY), env=env)
        try:
            yield issuer, server, harness
        finally:
            server.stop()


@asynccontextmanager
async def holding(server: HttpServer, token: str, responder: ScriptedResponder | None = None) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(server.url, http_client=http), elicitation_callback=responder) as client:
        yield client


@pytest.mark.anyio
async def test_an_operator_scoped_token_acts_as_operator(operated: tuple[Issuer, HttpServer, Harness]) -> None:
    issuer, server, harness = operated
    source, target = harness.open_account("10.00"), harness.open_account("0")
    token = issuer.token(server.url, sub="dora", scope=f"bankgate {OPERATOR_SCOPE}")
    async with holding(server, token, ScriptedResponder(approve())) as client:
        read = outcome(await client.call_tool("get_account_balance", {"account_id": source}))
        moved = outcome(
            await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": "0.50"})
        )
    assert (read["status"], read["balance"]) == ("executed", "10.00")
    assert moved["status"] == "executed"
    assert harness.balance(target) == 50


@pytest.mark.anyio
async def test_without_the_scope_the_account_is_hidden(operated: tuple[Issuer, HttpServer, Harness]) -> None:
    issuer, server, harness = operated
    source, target = harness.open_account("10.00"), harness.open_account("0")
    missing = f"ACC-{int(target.removeprefix('ACC-')) + 1000:03d}"
    token = issuer.token(server.url, sub="dora")  # no grants in the database either
    async with holding(server, token, ScriptedResponder(approve())) as client:
        hidden = outcome(await client.call_tool("get_account_balance", {"account_id": source}))
        absent = outcome(await client.call_tool("get_account_balance", {"account_id": missing}))
        debit = outcome(
            await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": "0.50"})
        )
    assert hidden["status"] == absent["status"] == debit["status"] == "failed"
    assert hidden["error"]["code"] == absent["error"]["code"] == debit["error"]["code"] == "unknown_account"
    assert hidden["message"].replace(source, "X") == absent["message"].replace(missing, "X")
    assert harness.balance(source) == 1000


@pytest.mark.anyio
async def test_a_round_answered_without_the_scope_runs_nothing(operated: tuple[Issuer, HttpServer, Harness]) -> None:
    """The approval is bound to the roles the asking token carried: the same principal answering
    with a token that lost the operator scope (a 2026-07-28 round is a new request) gets nothing run."""
    issuer, server, harness = operated
    args = {"from_account": harness.open_account("10.00"), "to_account": harness.open_account("0"), "amount": "0.50"}
    with_role = issuer.token(server.url, sub="dora", scope=f"bankgate {OPERATOR_SCOPE}")
    async with holding(server, with_role, ScriptedResponder()) as asker:
        round1 = await first_round(asker, "transfer_funds", args)
    async with holding(server, issuer.token(server.url, sub="dora"), ScriptedResponder()) as answerer:
        late = outcome(await answer(answerer, "transfer_funds", args, round1.request_state))
    assert late["status"] == "failed" and late["error"]["code"] == "unknown_account"
    assert harness.balance(args["from_account"]) == 1000
    assert not [
        r for r in harness.audit(event="executed") if r["arguments"].get("from_account") == args["from_account"]
    ]
    async with holding(
        server, with_role, ScriptedResponder()
    ) as asker:  # the same round, answered with the role, still runs
        done = outcome(await answer(asker, "transfer_funds", args, round1.request_state))
    assert done["status"] == "executed" and harness.balance(args["to_account"]) == 50


@pytest.mark.anyio
async def test_static_tokens_carry_no_roles() -> None:
    """Even one configured with the scope that carries `operator` for a JWT."""
    secret = "s" * 24
    token = await ConfigTokenVerifier(lambda: {"ops": secret}, [OPERATOR_SCOPE]).verify_token(secret)
    assert token is not None
    state = AppState(
        gate=cast(Any, None),
        ledger=cast(Any, None),
        default_principal="local",
        sequencer=cast(Any, None),
        expiry=cast(Any, None),
    )
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        assert state.caller(cast(Any, None)) == ("ops", ())
    finally:
        auth_context_var.reset(reset)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_session_acts_with_the_token_of_each_request(
    operated: tuple[Issuer, HttpServer, Harness], mode: str
) -> None:
    """A session opened with the operator scope, continued (same subject, so the same session owner) with a
    token that no longer carries it, e.g. refreshed after the scope was withdrawn: each call acts with the
    roles of the token it came with, never with those the session was opened with."""
    issuer, server, harness = operated
    source = harness.open_account("10.00")
    with_role = issuer.token(server.url, sub="erin", scope=f"bankgate {OPERATOR_SCOPE}")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {with_role}"})
    async with Client(streamable_http_client(server.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        seen = outcome(await client.call_tool("get_account_balance", {"account_id": source}))
        http.headers["Authorization"] = f"Bearer {issuer.token(server.url, sub='erin')}"
        hidden = outcome(await client.call_tool("get_account_balance", {"account_id": source}))
        http.headers["Authorization"] = f"Bearer {with_role}"
        again = outcome(await client.call_tool("get_account_balance", {"account_id": source}))
    assert seen["status"] == again["status"] == "executed"
    assert hidden["status"] == "failed" and hidden["error"]["code"] == "unknown_account", hidden


class SilentIssuer:
    """An issuer that accepts connections and never answers, until `close`: then every fetch fails at once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.held: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/jwks"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                self.held.append(self.listener.accept()[0])

    def close(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (a close alone does not)
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.mark.anyio
async def test_tokens_checked_against_an_unreachable_issuer_hold_few_threads() -> None:
    """Anyone may send a token naming a key id the issuer does not have, and each sends the verifier to fetch the
    issuer's keys; while the issuer does not answer, each fetch waits (PyJWT serialises them under one lock). Those
    waits must hold a bounded number of threads of their own, not the process's shared pool, on which the gate's
    database work and the desk also run."""
    issuer = SilentIssuer()
    verifier = JwtTokenVerifier(OAuthConfig(issuer=ISSUER, audience="bankgate", jwks_url=issuer.url))
    forged = [jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": f"k{n}"}) for n in range(48)]
    shared = anyio.to_thread.current_default_thread_limiter()
    try:
        async with anyio.create_task_group() as group:
            for token in forged:
                group.start_soon(verifier.verify_token, token)
            await anyio.wait_all_tasks_blocked()  # each verification waits: on the issuer, or for a thread
            held = shared.borrowed_tokens
            issuer.close()  # from here every fetch fails at once, and the tasks end
        assert held <= 8, f"{held} of the shared pool's threads waited on the issuer"
    finally:
        issuer.close()


@pytest.mark.anyio
async def test_tokens_arriving_while_the_issuer_is_silent_wait_for_one_fetch_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the issuer's keys were ever read (a server started during its outage), each token fetched them again,
    one at a time: behind a silent issuer a caller waited FETCH_TIMEOUT for every token queued before theirs, and
    anyone could queue tokens (minutes for a burst of forged ones). A failed fetch is not retried for a while: the
    tokens queued behind it are refused at once."""
    monkeypatch.setattr(issuer_keys, "FETCH_TIMEOUT", 0.5)
    issuer = SilentIssuer()
    verifier = JwtTokenVerifier(OAuthConfig(issuer=ISSUER, audience="bankgate", jwks_url=issuer.url))
    forged = [jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": f"k{n}"}) for n in range(8)]
    verified: list[object] = []

    async def verify(token: str) -> None:
        verified.append(await verifier.verify_token(token))

    try:
        async with anyio.create_task_group() as group:
            for token in forged:
                group.start_soon(verify, token)
        assert verified == [None] * len(forged)
        assert len(issuer.held) == 1, f"{len(issuer.held)} fetches of the issuer's keys for {len(forged)} tokens"
    finally:
        issuer.close()


@pytest.mark.anyio
async def test_keys_are_fetched_again_once_the_pause_after_a_failure_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(issuer_keys, "FAILED_FETCH_PAUSE", 0.3)
    with running_issuer(free_port()) as issuer:
        issuer.outage = True
        verifier = JwtTokenVerifier(OAuthConfig(issuer=ISSUER, audience="bankgate", jwks_url=issuer.jwks_url))
        token = issuer.token("bankgate")
        assert await verifier.verify_token(token) is None
        issuer.outage = False
        assert await verifier.verify_token(token) is None, "asked again within the pause"
        await anyio.sleep(0.4)  # the pause's own length passing (no event marks it)
        assert await verifier.verify_token(token) is not None


def test_tokens_naming_unknown_key_ids_do_not_ask_a_failing_issuer_again() -> None:
    """Once a fetch of the published keys fails they stay trusted, and the issuer is not asked again, for
    KEYS_MAX_AGE. A token naming a key id the keys lack sent PyJWT to the issuer anyway (at most every 30 s): while
    the issuer did not answer, anyone could hold every token's verification behind that fetch, FETCH_TIMEOUT long,
    twice a minute."""
    with running_issuer(free_port()) as issuer:
        keys = issuer_keys.IssuerKeys(issuer.jwks_url)
        keys.cooldown_duration = 0  # PyJWT's own pause between looking up unknown key ids: 30 s a test cannot wait
        assert keys.get_signing_key(issuer.rsa_kid).key_id == issuer.rsa_kid
        issuer.outage = True
        for n in range(3):
            with pytest.raises(jwt.PyJWKClientError):
                keys.get_signing_key(f"unknown-{n}")
        assert keys.get_signing_key(issuer.rsa_kid).key_id == issuer.rsa_kid
        assert issuer.fetches == 2, "the first read and one failed try, not one a token"


@pytest.mark.anyio
async def test_a_key_the_issuer_withdraws_stops_verifying(monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuer rotates a key out (routinely, or because it leaked): once the keys are read again, tokens signed
    with it are refused, and the new key's tokens are accepted, without a restart."""
    monkeypatch.setattr(issuer_keys, "KEYS_MAX_AGE", 0.5)
    with running_issuer(free_port()) as issuer:
        verifier = JwtTokenVerifier(OAuthConfig(issuer=ISSUER, audience="bankgate", jwks_url=issuer.jwks_url))
        before = issuer.token("bankgate")
        assert await verifier.verify_token(before) is not None
        issuer.rotate()
        await anyio.sleep(0.6)
        assert await verifier.verify_token(before) is None
        assert await verifier.verify_token(issuer.token("bankgate")) is not None


@pytest.mark.anyio
@pytest.mark.parametrize("failure", ["outage", "cut_off"])
async def test_the_keys_last_published_verify_while_the_issuer_fails(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """An issuer whose JWKS URL fails has withdrawn no key: callers are not locked out. `outage`: a 503 with an
    HTML page; `cut_off`: the connection reset mid-answer (the issuer's process dying as it answers)."""
    monkeypatch.setattr(issuer_keys, "KEYS_MAX_AGE", 0.3)
    with running_issuer(free_port()) as issuer:
        verifier = JwtTokenVerifier(OAuthConfig(issuer=ISSUER, audience="bankgate", jwks_url=issuer.jwks_url))
        token = issuer.token("bankgate")
        assert await verifier.verify_token(token) is not None
        setattr(issuer, failure, True)
        await anyio.sleep(0.4)
        assert [await verifier.verify_token(token) is not None for _ in range(3)] == [True] * 3
        assert await verifier.verify_token(issuer.token("bankgate", "ES256")) is not None


@pytest.mark.parametrize(("mode", "who"), [(0o664, "its group"), (0o646, "others")])
def test_a_jwks_file_others_may_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    """Whoever may write BANKGATE_OAUTH_JWKS_FILE adds a key, and signs tokens for any principal, roles included:
    refused, as a public-key file of the audit others may write is."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(Issuer("http://127.0.0.1:9/jwks.json").jwks()))
    path.chmod(mode)
    with pytest.raises(ValueError, match=rf"JWKS_FILE {path}: {who} may write it \(mode {oct(mode)}\).*chmod 644"):
        read_jwks(path)
    path.chmod(0o644)
    assert len(read_jwks(path).keys) == 2
