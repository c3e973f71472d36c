import os
from pathlib import Path

import pytest

from tests.desk.world import World, approver_fixture, passkey_fixture, world_fixture

world = world_fixture(World, "bankgate_desk")
"""A ledger with two accounts, on SQLite and (with BANKGATE_TEST_POSTGRES_URL) PostgreSQL."""
passkey = passkey_fixture
erin = approver_fixture("erin")
"""Approver erin, enrolled with `passkey` and signed in."""


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where browser tests save screenshots: $BANKGATE_SCREENSHOTS (docs/screenshots for the README), else tmp."""
    folder = Path(os.environ.get("BANKGATE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
