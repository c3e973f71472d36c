"""A URL naming what is not a bankgate ledger (another application's database, a file that is not SQLite, a URL
missing a slash) is refused at open in one line naming what is wrong, and nothing is written there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_server.storage.database import Database, LedgerNotOpened


@pytest.mark.parametrize("url", ["sqlite:/ledger.db", "sqlite:ledger.db", "postgresql:/bank@db.internal/bank"])
def test_a_url_missing_its_slashes_is_refused_not_taken_for_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """It was a relative path: `admin init` created a `sqlite:` or `postgresql:` folder holding a new ledger."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LedgerNotOpened, match=r"the database URL is malformed.*sqlite:///path"):
        Database.open(url, create=True)
    assert list(tmp_path.iterdir()) == []
