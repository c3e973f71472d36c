"""Subprocess for the upgrade crash drill: migrate a ledger, stopping for good inside migration 0017, after its
first statement ran (its transaction open), once it printed `inside`, for the drill to SIGKILL it there.

Usage (from the repository root): python -m tests.ledger.migration_worker DATABASE_URL
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from sqlalchemy import Connection

from mcp_server.storage import migrations
from mcp_server.storage.database import Database

FIRST = next(m for m in migrations.available() if m.version == 17).statements()[0]
"""The statement after which the worker stops: 0017's first DROP INDEX."""


def main(url: str) -> None:
    run = Connection.exec_driver_sql

    def stopping(conn: Connection, statement: str, *args: Any, **kwargs: Any) -> Any:
        result = run(conn, statement, *args, **kwargs)
        if statement == FIRST:
            print("inside", flush=True)
            threading.Event().wait()  # until killed
        return result

    Connection.exec_driver_sql = stopping  # type: ignore[method-assign,assignment]
    Database.open(url)


if __name__ == "__main__":
    main(sys.argv[1])
