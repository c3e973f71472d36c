"""psycopg's server-side prepared statements, set from the database URL (`?prepare_threshold=none`).

psycopg prepares a statement on the server once it ran `prepare_threshold` (5) times on a connection, then
runs it by name. Behind PgBouncer in transaction pooling mode (1.18, without 1.21's `max_prepared_statements`)
the next transaction may run on another server connection, which has no such name: every gated call failed
within seconds (26000 `prepared statement "_pg3_1" does not exist`, 42P05 `... already exists`). It is a
keyword of psycopg's `connect`, not a libpq parameter (libpq refuses unknown ones), so it is taken off the
URL's query here and handed to psycopg: `none` (or empty) never prepares, a number replaces 5.
"""

import logging
import os
from typing import Any

import psycopg
from sqlalchemy.engine import ExceptionContext

_log = logging.getLogger(__name__)

KEY = "prepare_threshold"
MISSING = "26000"
"""invalid_sql_statement_name: `prepared statement ... does not exist`."""
GONE = frozenset({MISSING, "42P05"})
"""`MISSING` and duplicate_prepared_statement (`... already exists`): the server's prepared statements are not the
ones psycopg named on the connection (a DEALLOCATE ALL or DISCARD ALL it did not see: a pooler's, an operator's).
The statement did not run, and its transaction is aborted: worth a retry (`database`), once psycopg forgot what it
holds wrongly (`forget_if_gone`)."""


def threshold(value: str | tuple[str, ...]) -> int | None:
    """The driver's setting for the URL's `value` (a tuple: the key given twice); ValueError, naming the key,
    for anything but `none`, empty or a count >= 0."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{KEY} must be none or a count, not {value!r}")


def for_driver(params: dict[str, Any]) -> dict[str, Any]:
    """`params` for `psycopg.connect`, the URL's `prepare_threshold` (a string) turned into the driver's value."""
    if KEY in params:
        params[KEY] = threshold(params[KEY])
    return params


def forget_if_gone(driver: psycopg.Connection[Any], exc: BaseException) -> None:
    """After an error in `GONE` on `driver`, a warning: the retry would hide a pooler in transaction mode, where a
    name can also find another client's statement and run it (DEPLOYMENT.md). After `MISSING`, psycopg forgets every
    statement it named prepared there, and prepares each afresh under a new name (its count of names goes on: one
    the server still holds is never reused); it forgets them only at a ROLLBACK, never sent in autocommit, so a read's
    statement (on the loop's connection, or a pooled one) failed at every later run on that connection. A name the
    server held already was never taken (psycopg raises before it records it; a round trip forgets it: `round_trip`),
    and those psycopg holds are still the server's."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate not in GONE:
        return
    _log.warning(
        "the database's prepared statements are not the ones this connection made (%s); the work runs again. "
        "Behind a connection pooler in transaction mode, set ?%s=none in the database URL",
        str(exc).strip(),
        KEY,
    )
    if sqlstate == MISSING:
        driver._prepared._names.clear()


def forget_after(context: ExceptionContext) -> None:
    """`handle_error` listener: `forget_if_gone` for SQLAlchemy's own statements (`Statement`'s errors pass
    `statement._translated`)."""
    conn = context.connection
    # Checked before the driver's connection is reached: an invalidated one would reconnect (PendingRollbackError).
    if conn is not None and getattr(context.original_exception, "sqlstate", None) in GONE:
        forget_if_gone(conn.connection.dbapi_connection, context.original_exception)  # type: ignore[arg-type]


def unique_names(driver: psycopg.Connection[Any], _entry: object) -> None:
    """`connect` listener: this connection's prepared statements are named from a random point (`_pg3_<n>`), not from
    0 as on every psycopg connection. Behind a pooler in transaction mode without `?prepare_threshold=none`, a
    transaction may land on a server connection where another client prepared its own statement under a name this
    one gave too, and run that statement with this one's arguments (DEPLOYMENT.md: a `SELECT` ran as another's
    `INSERT`). With names no other connection gives, the statement is missing there instead (26000): nothing runs,
    and the work runs again (`forget_if_gone`)."""
    driver._prepared._prepared_idx = int.from_bytes(os.urandom(6), "big")
