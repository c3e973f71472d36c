"""`approvers add` links to a port a desk of this ledger serves, not to the configured one something else holds.

A desk beside stdio takes another port when its own is taken; the command, in its own process, linked to the
configured port anyway, so the one-time enrollment token went to whatever held it (which could enroll a passkey
of its own as the approver). Desks record their port in the ledger (`mcp_server.desk.presence`)."""

import re
import socket
import time
from collections.abc import Iterator

import httpx2
import pytest

from mcp_server.cli.main import main
from mcp_server.desk import presence
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.server import StdioDesk
from tests.desk.world import World


@pytest.fixture
def held_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A loopback port something other than bankgate holds, configured as the desk's (BANKGATE_DESK_PORT)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port: int = squatter.getsockname()[1]
        monkeypatch.setenv("BANKGATE_DESK_PORT", str(port))
        yield port


def desk_on(world: World, port: int) -> StdioDesk:
    settings = world.settings.model_copy(update={"desk_port": port})
    served = StdioDesk(world.db, world.audit, settings, desk_listeners(settings))
    served.start()
    return served


def invite(world: World, capsys: pytest.CaptureFixture[str], name: str = "dora") -> tuple[int, str]:
    """`approvers add`: the port its link names, and all it printed."""
    assert main(["approvers", "add", name, "--db", world.settings.db_url]) == 0
    out = capsys.readouterr().out
    [port] = re.findall(r"http://localhost:(\d+)/desk/enroll#token=", out)
    return int(port), out


def test_the_link_names_the_port_the_desk_took_when_its_own_was_held(
    world: World, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    served = desk_on(world, held_port)
    try:
        assert served.port != held_port
        port, out = invite(world, capsys)
        assert port == served.port, out
        assert f"not on the configured {held_port}" in out
        link = re.search(r"http://\S+", out)
        assert link is not None
        page = httpx2.get(link.group(0))
        assert page.status_code == 200 and 'id="register"' in page.text, "the link opens this ledger's desk"
    finally:
        served.stop()


def test_a_desk_on_its_own_port_is_linked_with_nothing_more_said(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = desk_on(world, 0)
    monkeypatch.setenv("BANKGATE_DESK_PORT", str(served.port))
    try:
        port, out = invite(world, capsys)
    finally:
        served.stop()
    assert port == served.port and "taken" not in out and "No server has" not in out, out


def test_with_no_desk_served_the_link_says_to_open_it_once_one_is(
    world: World, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped, or never started: the configured port, and a warning that its holder would receive the link."""
    desk_on(world, held_port).stop()
    port, out = invite(world, capsys)
    assert port == held_port
    assert "No server has served this ledger's desk in the last minute" in out
    assert f"whatever holds port {held_port} would receive it" in out


def test_a_desk_killed_without_stopping_is_forgotten_once_stale(
    world: World, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its row stays (nothing withdrew it) but counts only while renewed: after `FRESH` seconds it is gone."""
    world.sql(
        "INSERT INTO stdio_desks (host, port, seen_at) VALUES (:h, :p, :t)",
        h=socket.gethostname(),
        p=held_port + 1,
        t=time.time() - presence.FRESH - 1,
    )
    port, out = invite(world, capsys)
    assert port == held_port and "No server has" in out, out


def test_a_running_desk_renews_its_port(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "BEAT", 0.05)
    served = desk_on(world, 0)
    try:
        world.sql("UPDATE stdio_desks SET seen_at = 0")
        deadline = time.monotonic() + 10
        while world.db.read(lambda conn: presence.live_ports(conn, time.time())) != [served.port]:
            assert time.monotonic() < deadline, "not renewed"
            time.sleep(0.05)
    finally:
        served.stop()
    assert world.rows("SELECT COUNT(*) AS n FROM stdio_desks")[0].n == 0, "withdrawn when stopped"


def test_a_desk_on_another_machine_is_neither_linked_nor_withdrawn_by_this_one(
    world: World, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """One PostgreSQL ledger, stdio servers on two machines: a localhost link names this machine, so another's desk
    is no desk here; and a desk here that stops on the same port number leaves the other machine's record alone."""
    elsewhere = f"{socket.gethostname()}-elsewhere"
    world.sql(
        "INSERT INTO stdio_desks (host, port, seen_at) VALUES (:h, :p, :t)", h=elsewhere, p=held_port, t=time.time()
    )
    port, out = invite(world, capsys)
    assert port == held_port and "No server has" in out, out
    served = desk_on(world, 0)
    world.sql(
        "INSERT INTO stdio_desks (host, port, seen_at) VALUES (:h, :p, :t)", h=elsewhere, p=served.port, t=time.time()
    )
    served.stop()
    rows = world.rows("SELECT host, port FROM stdio_desks ORDER BY port")
    assert sorted((r.host, r.port) for r in rows) == sorted([(elsewhere, held_port), (elsewhere, served.port)])
