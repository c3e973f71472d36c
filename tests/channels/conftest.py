"""A ledger with two accounts and the desk (on SQLite and, with BANKGATE_TEST_POSTGRES_URL, PostgreSQL),
served by in-memory MCP clients, and approver dora signed in at the desk with `passkey`."""

from tests.channels.support import ChannelWorld
from tests.desk.world import approver_fixture, passkey_fixture, world_fixture

world = world_fixture(ChannelWorld, "bankgate_channels")
passkey = passkey_fixture
dora = approver_fixture("dora")
