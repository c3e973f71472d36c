"""Hot-path SQL: compiled once per dialect, executed on the driver cursor of a SQLAlchemy connection.

SQLAlchemy's per-execute machinery (result metadata, events, parameter processing) costs
several times what SQLite spends running a small indexed statement, and a transfer runs
four of them. A `Statement` keeps SQLAlchemy for what it is good at here (turning one
portable `:name` SQL text into each driver's parameter style) and then talks to the
driver directly, inside the same transaction as any ordinary `conn.execute`.

Driver errors are re-raised as SQLAlchemy's `DBAPIError` family (and a dropped connection
is invalidated), so `Database` classifies, retries and reports them exactly like errors
from `conn.execute`.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

_Compiled = tuple[str, tuple[str, ...] | None]  # driver SQL, parameter names in order if positional
_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})


class Statement:
    """One SQL text with `:name` parameters, portable across the ledger's backends."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self._compiled: dict[str, _Compiled] = {}

    def one(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> tuple[Any, ...] | None:
        """The first row, or `None`."""
        row: tuple[Any, ...] | None = self._execute(conn, params).fetchone()
        return row

    def all(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._execute(conn, params).fetchall()
        return rows

    def run(self, conn: Connection, params: Mapping[str, Any] = _NO_PARAMETERS) -> int:
        """Execute a write; return the number of rows it touched."""
        count: int = self._execute(conn, params).rowcount
        return count

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _compile(self.sql, conn)
        sql, positions = compiled
        arguments: Sequence[Any] | Mapping[str, Any] = (
            params if positions is None else [params[name] for name in positions]
        )
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None, "a checked-out connection has a driver connection"
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql, arguments)
        except dialect.loaded_dbapi.Error as exc:
            disconnected = dialect.is_disconnect(exc, dbapi_connection, cursor)
            if disconnected:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql,
                arguments,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=disconnected,
                dialect=dialect,
            ) from exc
        return cursor


def _compile(sql: str, conn: Connection) -> _Compiled:
    compiled = text(sql).compile(dialect=conn.dialect)
    positions = compiled.positiontup
    return str(compiled), None if positions is None else tuple(positions)
