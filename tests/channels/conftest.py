from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.channels.support import ChannelWorld
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import PORT, DeskBrowser, browser
from tests.support import BACKENDS, postgres_schema


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChannelWorld]:
    """A ledger with two accounts and the desk, on SQLite and (with BANKGATE_TEST_POSTGRES_URL) PostgreSQL."""
    if request.param == "postgresql":
        with postgres_schema("bankgate_channels") as url:
            world = ChannelWorld(url)
            yield world
            world.db.close()
    else:
        yield ChannelWorld(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def passkey() -> SoftPasskey:
    return SoftPasskey(origin=f"http://localhost:{PORT}")


@pytest.fixture
async def dora(world: ChannelWorld, passkey: SoftPasskey) -> AsyncIterator[DeskBrowser]:
    """Approver dora, enrolled with `passkey` and signed in at the desk."""
    token, _ = world.admin.add("dora")
    async with browser(world) as desk:
        reply = await desk.enroll(token, passkey)
        assert reply.status_code == 200, reply.text
        yield desk
