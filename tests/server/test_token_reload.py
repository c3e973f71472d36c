"""The token file re-read while serving: a line deleted revokes its token, a line added admits a caller, an invalid
or missing file refuses the file's tokens (logged once) until it is valid again, and a JWT may not carry a
principal just added to the file; all without a restart, over real HTTP."""

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from mcp_server.http import token_file
from mcp_server.http.token_file import StaticTokens
from tests.server.harness import Harness, HttpServer
from tests.server.issuer import ISSUER, Issuer, running_issuer
from tests.server.test_http_security import ACCEPT, INITIALIZE
from tests.support import TOKENS, free_port

ALICE, BOB, CAROL = "alice-token-0123456789", "bob-token-0123456789ab", "carol-token-0123456789"
LISTING = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ENVELOPE = {
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
}
MODERN = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
"""A 2026-07-28 request opens no session: polled as often as needed without reaching the per-principal cap."""
SETTLE_S = 5.0
"""How long a test waits for an edit to take effect (the server checks the file once a second)."""


def write(file: Path, *lines: str) -> None:
    """The token file as an editor leaves it: rewritten in place, private."""
    file.write_text("".join(f"{line}\n" for line in lines))
    file.chmod(0o600)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HttpServer, Path, Issuer]]:
    """A server with inline tokens (local's), a token file of alice and bob, and an OAuth issuer."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    file = tmp_path / "tokens"
    write(file, "# principal token", f"alice {ALICE}", f"bob {BOB}")
    with running_issuer(free_port()) as issuer:
        env = {
            "BANKGATE_TOKENS": f"local={TOKENS['local']}",
            "BANKGATE_OAUTH_ISSUER": ISSUER,
            "BANKGATE_OAUTH_JWKS_URL": issuer.jwks_url,
        }
        server = HttpServer(url, "--token-file", str(file), env=env)
        try:
            yield server, file, issuer
        finally:
            server.stop()


def status(server: HttpServer, token: str, **headers: str) -> int:
    auth = {**ACCEPT, **MODERN, "Authorization": f"Bearer {token}", **headers}
    return httpx2.post(server.url, json={**LISTING, "params": ENVELOPE}, headers=auth, timeout=10).status_code


def settles(server: HttpServer, token: str, expected: int) -> float:
    """Seconds until a request with `token` is answered `expected`; fails past `SETTLE_S`."""
    started = time.monotonic()
    while (answered := status(server, token)) != expected:
        assert time.monotonic() - started < SETTLE_S, f"still {answered}, expected {expected}"
        time.sleep(0.05)
    return time.monotonic() - started


def log_text(server: HttpServer) -> str:
    """The server's stderr so far, read without moving the offset the server writes at."""
    fd = server.log.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def test_a_token_removed_from_the_file_is_refused_without_a_restart(
    served: tuple[HttpServer, Path, Issuer],
) -> None:
    server, file, _ = served
    assert status(server, ALICE) == status(server, BOB) == 200
    write(file, f"bob {BOB}")
    waited = settles(server, ALICE, 401)
    assert waited < 2.5, f"revoked after {waited:.2f} s"  # one check interval, and the request's own time
    assert status(server, BOB) == 200
    assert status(server, TOKENS["local"]) == 200, "inline tokens stay as they are"
    assert "removed alice" in log_text(server)


def test_a_token_added_to_the_file_is_accepted_without_a_restart(served: tuple[HttpServer, Path, Issuer]) -> None:
    server, file, _ = served
    assert status(server, CAROL) == 401
    write(file, f"alice {ALICE}", f"bob {BOB}", f"carol {CAROL}")
    settles(server, CAROL, 200)
    assert status(server, ALICE) == 200


def test_a_token_replaced_in_an_atomic_rename_is_the_one_accepted(served: tuple[HttpServer, Path, Issuer]) -> None:
    """Deployment tools write a new file and rename it over the old one (a new inode, maybe the same size)."""
    server, file, _ = served
    fresh = file.with_name("tokens.new")
    write(fresh, f"alice {ALICE[::-1]}", f"bob {BOB}")
    fresh.replace(file)
    settles(server, ALICE, 401)
    assert status(server, ALICE[::-1]) == 200


def test_an_invalid_edit_refuses_the_files_tokens_and_is_logged_once(served: tuple[HttpServer, Path, Issuer]) -> None:
    server, file, _ = served
    write(file, f"alice {ALICE}", "bob short")  # alice's line is fine, the file is not: none of it is trusted
    settles(server, ALICE, 401)
    assert status(server, BOB) == 401
    assert status(server, TOKENS["local"]) == 200, "inline tokens stay as they are"
    time.sleep(2.2)  # two more checks, requests meanwhile
    for _ in range(5):
        assert status(server, ALICE) == 401
    errors = [line for line in log_text(server).splitlines() if "ERROR" in line and "token file" in line]
    assert len(errors) == 1, errors
    assert f"{file}:2: expected a principal name and a token of at least 16 characters" in errors[0]
    assert BOB not in log_text(server) and ALICE not in log_text(server)  # never a token

    write(file, f"alice {ALICE}", f"bob {BOB}")
    settles(server, ALICE, 200)
    assert status(server, BOB) == 200
    assert "valid again" in log_text(server)


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda file: file.chmod(0o644), "chmod 600"),
        (lambda file: file.unlink(), "cannot be read (FileNotFoundError)"),
        (lambda file: write(file, f"alice {ALICE}", f"bob {ALICE}"), "'bob' has the same token as 'alice'"),
        (lambda file: write(file, f"alice {ALICE}", f"Alice {BOB}"), "differs from 'alice' only in letter case"),
        (lambda file: write(file, f"alice {ALICE}", f"alice {BOB}"), "'alice' has more than one token"),
        (lambda file: write(file, f"local {ALICE}"), "'local' has more than one token"),  # an inline principal
        (lambda file: write(file, f"approver:erin {ALICE}"), "nor begin with admin: or approver:"),
    ],
    ids=["opened-to-others", "deleted", "shared-token", "case-twins", "twice", "an-inline-principal", "reserved"],
)
def test_a_file_that_turns_unusable_fails_closed_until_it_is_valid(
    served: tuple[HttpServer, Path, Issuer], spoil: object, says: str
) -> None:
    server, file, _ = served
    spoil(file)  # type: ignore[operator]
    settles(server, ALICE, 401)
    assert status(server, BOB) == 401
    assert status(server, TOKENS["local"]) == 200
    assert says in log_text(server)
    write(file, f"alice {ALICE}", f"bob {BOB}")
    settles(server, ALICE, 200)


def test_a_revoked_token_is_refused_on_its_open_session(served: tuple[HttpServer, Path, Issuer]) -> None:
    """Sessions belong to a principal (the SDK answers another principal 404), but every request of one is
    authenticated again: the revoked token's next request on its session is 401; the session stays its
    principal's, so a new token for the same principal continues it."""
    server, file, _ = served
    auth = {**ACCEPT, "Authorization": f"Bearer {ALICE}"}
    opened = httpx2.post(server.url, json=INITIALIZE, headers=auth, timeout=10)
    assert opened.status_code == 200
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx2.post(server.url, json=initialized, headers={**auth, **session}, timeout=10).status_code == 202

    def on_session(token: str) -> int:
        headers = {**ACCEPT, "Authorization": f"Bearer {token}", **session}
        return httpx2.post(server.url, json={**LISTING, "id": 2}, headers=headers, timeout=10).status_code

    assert on_session(ALICE) == 200
    write(file, f"alice {CAROL}", f"bob {BOB}")  # alice's token replaced, as after a leak
    settles(server, CAROL, 200)
    assert on_session(ALICE) == 401
    assert on_session(CAROL) == 200


def test_a_jwt_may_not_carry_a_principal_added_to_the_file(served: tuple[HttpServer, Path, Issuer]) -> None:
    server, file, issuer = served
    assert status(server, issuer.token(server.url, sub="carol")) == 200
    assert status(server, issuer.token(server.url, sub="Alice")) == 401, "a static principal, in any letter case"
    write(file, f"alice {ALICE}", f"bob {BOB}", f"carol {CAROL}")
    settles(server, CAROL, 200)
    assert status(server, issuer.token(server.url, sub="carol")) == 401
    assert status(server, issuer.token(server.url, sub="CAROL")) == 401
    write(file, f"alice {ALICE}", f"bob {BOB}", f"carol {CAROL}", "dave short")  # invalid: carol's name stays held
    settles(server, CAROL, 401)
    assert status(server, issuer.token(server.url, sub="carol")) == 401


def test_the_file_is_checked_at_most_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stat per request would be one system call on every request; once a second bounds how long a revoked
    token keeps working."""
    now = [100.0]
    monkeypatch.setattr(token_file, "monotonic", lambda: now[0])
    file = tmp_path / "tokens"
    write(file, f"alice {ALICE}")
    tokens = StaticTokens(None, file)
    assert tokens.current() == {"alice": ALICE}
    write(file, f"bob {BOB}")
    now[0] += 0.9
    assert tokens.current() == {"alice": ALICE}, "checked again before the interval is over"
    now[0] += 0.1
    assert tokens.current() == {"bob": BOB}
    monkeypatch.setattr(token_file, "CHECK_INTERVAL_S", 5.0)
    write(file, f"carol {CAROL}")
    now[0] += 4.9
    assert tokens.current() == {"bob": BOB}
    now[0] += 0.1
    assert tokens.current() == {"carol": CAROL}


def test_a_write_within_one_timestamp_tick_is_not_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file rewritten to the same size within the file system's timestamp tick (milliseconds; seconds on some)
    looks unchanged to a stat: a change is read once more at the next check."""
    now = [100.0]
    monkeypatch.setattr(token_file, "monotonic", lambda: now[0])
    file = tmp_path / "tokens"
    write(file, f"alice {ALICE}")
    tokens = StaticTokens(None, file)
    write(file, f"alice {BOB}")
    stamp = file.stat()
    now[0] += 1.0
    assert tokens.current() == {"alice": BOB}
    write(file, f"alice {CAROL}")  # same size; its times put back as they were, as a coarse tick would leave them
    os.utime(file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    now[0] += 1.0
    assert tokens.current() == {"alice": CAROL}


def test_a_principal_read_missing_mid_write_stays_held_from_jwts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten in place (an editor, `cat >`) is empty or cut short between its truncation and its last
    write: a check landing there reads a valid file without bob, which refuses his token for a second (fail
    closed), but must not free his name for an issuer's user meanwhile. A name is freed once the file reads the same
    at two checks."""
    now = [100.0]
    monkeypatch.setattr(token_file, "monotonic", lambda: now[0])
    file = tmp_path / "tokens"
    write(file, f"alice {ALICE}", f"bob {BOB}")
    tokens = StaticTokens(None, file)
    write(file, f"alice {ALICE}")  # the rewrite caught half done
    now[0] += 1.0
    assert tokens.current() == {"alice": ALICE}
    assert tokens.names == {"alice", "bob"}, "bob's name freed by a file read mid-write"
    write(file, f"alice {ALICE}", f"bob {BOB}")  # the rewrite done
    now[0] += 1.0
    assert tokens.current() == {"alice": ALICE, "bob": BOB}
    assert tokens.names == {"alice", "bob"}
    write(file, f"alice {ALICE}")  # bob deleted for good: his name is freed at the next check
    now[0] += 1.0
    assert tokens.current() == {"alice": ALICE}
    assert tokens.names == {"alice", "bob"}
    now[0] += 1.0
    assert tokens.current() == {"alice": ALICE}
    assert tokens.names == {"alice"}


def test_a_pipe_given_as_the_token_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--token-file <(pass show bankgate/tokens)` hands the server a pipe, its secrets never on disk: read at start,
    it reads empty again (its writer gone), which revoked every token a second later, or blocks (its writer still
    there), which would hold every request. Only a regular file is re-read when it changes."""
    now = [100.0]
    monkeypatch.setattr(token_file, "monotonic", lambda: now[0])
    reader, writer = os.pipe()
    os.write(writer, f"alice {ALICE}\n".encode())
    os.close(writer)
    try:
        tokens = StaticTokens(None, Path(f"/dev/fd/{reader}"))
        now[0] += 1.0
        assert tokens.current() == {"alice": ALICE}
        assert tokens.names == {"alice"}
    finally:
        os.close(reader)


def test_a_token_file_replaced_by_a_fifo_is_refused_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a FIFO waits for a writer: on a request, that held the server's event loop, every request with it."""
    now = [100.0]
    monkeypatch.setattr(token_file, "monotonic", lambda: now[0])
    file = tmp_path / "tokens"
    write(file, f"alice {ALICE}")
    tokens = StaticTokens(f"local={TOKENS['local']}", file)
    file.unlink()
    os.mkfifo(file, 0o600)
    now[0] += 1.0
    checked: list[object] = []
    worker = threading.Thread(target=lambda: checked.append(tokens.current()), daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # let the blocked open go, then fail
        os.close(os.open(file, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("the check opened the FIFO and waited for a writer")
    assert checked == [{"local": TOKENS["local"]}], "refused: the inline tokens alone"
    assert tokens.names == {"local", "alice"}
