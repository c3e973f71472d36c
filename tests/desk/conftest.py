import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.desk.authenticator import SoftPasskey
from tests.desk.world import PORT, DeskBrowser, World, browser
from tests.ledger.conftest import BACKENDS, postgres_schema


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A ledger with two accounts, on SQLite and (with BANKGATE_TEST_POSTGRES_URL) PostgreSQL."""
    if request.param == "postgresql":
        with postgres_schema("bankgate_desk") as url:
            world = World(url)
            yield world
            world.db.close()
    else:
        yield World(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def passkey() -> SoftPasskey:
    return SoftPasskey(origin=f"http://localhost:{PORT}")


@pytest.fixture
async def erin(world: World, passkey: SoftPasskey) -> AsyncIterator[DeskBrowser]:
    """Approver erin, enrolled with `passkey` and signed in."""
    token, _ = world.admin.add("erin")
    async with browser(world) as desk:
        reply = await desk.enroll(token, passkey)
        assert reply.status_code == 200, reply.text
        yield desk


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where browser tests save screenshots: $BANKGATE_SCREENSHOTS (docs/screenshots for the README), else tmp."""
    folder = Path(os.environ.get("BANKGATE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
