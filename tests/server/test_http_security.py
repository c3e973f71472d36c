"""HTTP is secure by default: tokens, Host/Origin allowlist, bounded bodies, refusals at start."""

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import policy
from mcp_server.cli.main import main
from mcp_server.http.app import transport_security
from mcp_server.http.auth import parse_tokens
from mcp_server.settings import Settings
from tests.server.cli_process import McpCli
from tests.server.harness import Harness, HttpServer
from tests.support import TOKENS, free_port, outcome, serve_command

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sec') / 'ledger.db'}"
    Harness("setup", url)
    running = HttpServer(url, "--max-body-bytes", "2048")
    yield running
    running.stop()


def post(server: HttpServer, body: object = INITIALIZE, **headers: str) -> httpx2.Response:
    return httpx2.post(server.url, json=body, headers={**ACCEPT, **headers}, timeout=10)


def bearer(principal: str = "local") -> str:
    return f"Bearer {TOKENS[principal]}"


def test_a_valid_token_is_served(server: HttpServer) -> None:
    assert post(server, Authorization=bearer()).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", "Basic dXNlcjpwYXNz", "Bearer"])
def test_missing_or_wrong_token_is_401(server: HttpServer, authorization: str | None) -> None:
    response = post(server, **({"Authorization": authorization} if authorization else {}))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_foreign_host_is_421(server: HttpServer) -> None:
    assert post(server, Authorization=bearer(), Host="evil.example").status_code == 421


def test_foreign_origin_is_403(server: HttpServer) -> None:
    assert post(server, Authorization=bearer(), Origin="http://evil.example").status_code == 403


def test_oversized_body_is_413(server: HttpServer) -> None:
    padded = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "x" * 4096}}  # type: ignore[dict-item]
    assert post(server, padded, Authorization=bearer()).status_code == 413


@pytest.mark.parametrize(
    ("headers", "pad", "status"),
    [({"Host": "evil.example"}, 0, 421), ({"Origin": "http://evil.example"}, 0, 403), ({}, 4096, 413)],
    ids=["foreign-host", "foreign-origin", "oversized-body"],
)
def test_the_2026_07_28_entry_checks_host_origin_and_size_too(
    server: HttpServer, headers: dict[str, str], pad: int, status: int
) -> None:
    """A request naming a 2026-07-28 protocol version is served by another handler than the session's (every
    approval round of a modern client goes there, in stateful mode too): it must refuse the same requests."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": "x" * pad}}
    assert (
        post(server, body, Authorization=bearer(), **{"MCP-Protocol-Version": "2026-07-28"}, **headers).status_code
        == status
    )


def test_malformed_body_is_a_clear_400(server: HttpServer) -> None:
    response = httpx2.post(server.url, content=b"{not json", headers={**ACCEPT, "Authorization": bearer()})
    assert response.status_code == 400


def test_health_needs_no_token(server: HttpServer) -> None:
    base = server.url.removesuffix("/mcp")
    assert httpx2.get(f"{base}/healthz").json() == {"status": "ok", "database": "ok"}
    assert httpx2.get(f"{base}/readyz").status_code == 200


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--host", "0.0.0.0", "--no-auth"], {}, "refusing to serve without authentication"),
        ([], {"BANKGATE_TOKENS": ""}, "HTTP needs bearer tokens"),
        (["--stateless"], {}, "needs a shared request-state key ring"),
        ([], {"BANKGATE_TOKENS": "alice=short"}, "at least 16 characters"),
        # One token for two principals authenticated as the last: bob's calls, grants and audit as alice's.
        ([], {"BANKGATE_TOKENS": f"alice={'t' * 24};bob={'t' * 24}"}, "'bob' has the same token as 'alice'"),
        # Two names an approver reading "Requested by: ..." cannot tell apart, each with its own grants.
        ([], {"BANKGATE_TOKENS": f"alice={'t' * 24};Alice={'u' * 24}"}, "'Alice' differs from 'alice' only in letter"),
        # Every question prints its caller ("Requested by: ..."): a name that reorders text passes for another.
        ([], {"BANKGATE_TOKENS": f"eve\u202e={'t' * 24}"}, "must be 1 to 256 characters of visible text"),
        (["--principal", "eve\u2028Approved"], {}, "must be 1 to 256 characters of visible text"),
        ([], {"BANKGATE_TOKENS": f"\u0430lice={'t' * 24}"}, "must be 1 to 256 characters of visible text"),
        # The audit log names desk approvers and entitlement administrators so: a caller named so passes for one.
        ([], {"BANKGATE_TOKENS": f"approver:erin={'t' * 24}"}, "nor begin with admin: or approver:"),
    ],
    ids=[
        "no-auth-off-loopback",
        "no-tokens",
        "stateless-without-keys",
        "weak-token",
        "shared-token",
        "case-twins",
        "bidi-principal",
        "line-break-principal",
        "mixed-script-principal",
        "an-approvers-name",
    ],
)
def test_unsafe_configurations_are_refused_at_start(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str, cli: McpCli
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    tokens = ";".join(f"{p}={t}" for p, t in TOKENS.items())
    done = cli(
        *serve_command(url, "--transport", "http", "--port", str(free_port()), *args),
        **{"BANKGATE_TOKENS": tokens, **env},
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert "t" * 24 not in done.stderr  # a token is never echoed


@pytest.mark.parametrize(("mode", "says"), [(0o644, "chmod 600"), (0o620, "chmod 600"), (None, "cannot be read")])
def test_a_token_file_others_may_read_is_refused_at_start(
    tmp_path: Path, mode: int | None, says: str, cli: McpCli
) -> None:
    """Each line is a principal's credential (the audit key file's rule): whoever reads it calls as anyone."""
    url, file = f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "tokens"
    if mode is not None:
        file.write_text(f"alice {'t' * 24}\n")
        file.chmod(mode)
    done = cli(
        *serve_command(url, "--transport", "http", "--port", str(free_port()), "--token-file", str(file), "--create")
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"bankgate-mcp: token file {file}")
    assert says in done.stderr and "t" * 24 not in done.stderr
    assert not (tmp_path / "ledger.db").exists()


def test_a_private_token_file_is_read(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(f"# principal token\nalice {'t' * 24}\n")
    file.chmod(0o640)  # a group that may read it, as a secret mount's
    assert parse_tokens(None, file) == {"alice": "t" * 24}


@pytest.mark.parametrize(
    "text",
    [f"alice\t{'t' * 24}\n", f"\ufeffalice {'t' * 24}\n", f"alice {'t' * 24}  \r\n"],
    ids=["tab-separated", "byte-order-mark", "crlf-and-trailing-spaces"],
)
def test_a_token_file_as_editors_write_it_is_read(tmp_path: Path, text: str) -> None:
    """A tab between name and token, or the byte-order mark a Windows editor puts first, was read as part of the
    principal's name and refused as a missing token or as a name of invisible characters, the real cause unnamed."""
    file = tmp_path / "tokens"
    file.write_bytes(text.encode())
    file.chmod(0o600)
    assert parse_tokens(None, file) == {"alice": "t" * 24}


def test_all_interfaces_still_check_host(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    wide = HttpServer(url, "--host", "0.0.0.0")
    try:
        assert post(wide, Authorization=bearer()).status_code == 200
        assert post(wide, Authorization=bearer(), Host=f"attacker.example:{wide.port}").status_code == 421
    finally:
        wide.stop()


@pytest.mark.parametrize(("host", "named"), [("10.0.0.5", "10.0.0.5:8765"), ("fd00::5", "[fd00::5]:8765")])
def test_the_bound_address_is_an_allowed_host_as_clients_name_it(host: str, named: str) -> None:
    """A client of http://[fd00::5]:8765/mcp sends `Host: [fd00::5]:8765`: an IPv6 address goes in brackets, or
    every request to the address the server was bound to is refused 421."""
    allowed = transport_security(Settings(host=host, _env_file=None)).allowed_hosts  # type: ignore[call-arg]
    assert named in allowed


@pytest.mark.anyio
async def test_without_auth_every_http_call_is_the_configured_principal(tmp_path: Path) -> None:
    """The README's claim: `--no-auth` serves every HTTP caller as `BANKGATE_PRINCIPAL` (here bob, who owns
    ACC-002 and sees nothing else), not as an anonymous caller nor as the default `local` operator."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["admin", "init", "--db", url, "--seed-demo"]) == 0
    shipped = Path(policy.__file__).with_name("default_policy.toml")  # visibility by entitlements
    running = HttpServer(url, "--no-auth", "--policy", str(shipped), env={"BANKGATE_PRINCIPAL": "bob"})
    try:
        async with Client(streamable_http_client(running.url)) as client:  # type: ignore[arg-type]
            own = outcome(await client.call_tool("get_account_balance", {"account_id": "ACC-002"}))
            other = outcome(await client.call_tool("get_account_balance", {"account_id": "ACC-001"}))
    finally:
        running.stop()
    assert own["status"] == "executed" and own["owner"] == "Bob Example"
    assert other["status"] == "failed" and other["error"]["code"] == "unknown_account"
