"""psycopg's server-side prepared statements, set from the database URL (`?prepare_threshold=none`).

psycopg prepares a statement on the server once it ran `prepare_threshold` (5) times on a connection, then
runs it by name. Behind PgBouncer in transaction pooling mode (1.18, without 1.21's `max_prepared_statements`)
the next transaction may run on another server connection, which has no such name: every gated call failed
within seconds (26000 `prepared statement "_pg3_1" does not exist`, 42P05 `... already exists`). It is a
keyword of psycopg's `connect`, not a libpq parameter (libpq refuses unknown ones), so it is taken off the
URL's query here and handed to psycopg: `none` (or empty) never prepares, a number replaces 5.
"""

from typing import Any

KEY = "prepare_threshold"


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
