"""Integers the store wrote itself, read back and checked, never converted.

SQLite keeps whatever a database writer gives a column (text in a BIGINT one, say), where PostgreSQL refuses it: only
an edit behind the server's back stores anything but an integer there. `int()` would name nothing when it refuses
(`invalid literal for int() with base 10: 'x'`), and would hide the edit when it accepts (`int(3.5)`, `int('7')`).
"""

import reprlib

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 100
"""Values as short Python literals: whole for a key the store wrote (a hash has 64 characters), cut short past that."""


class Mistyped(ValueError):
    """A stored value that is not of its column's type, named by its table, row and column."""


def stored_int(value: object, table: str, key: tuple[str, object], column: str) -> int:
    """`value` if it is an integer, as `table`'s `column` declares. `key` names the row it came from (a key column
    and its value); each value is shown as a short Python literal, so the message carries no terminal control."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    name, held = key
    raise Mistyped(f"{table} row {name} {_SHOWN.repr(held)}: {column} holds {_SHOWN.repr(value)}, not an integer")
