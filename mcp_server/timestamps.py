"""Timestamps as fixed-width ISO-8601 UTC text (``2024-05-01T09:30:00.123456Z``).

Fixed width makes the text sort chronologically in SQL on both backends, and text keeps
the schema portable (no timezone-type differences between SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_text() -> str:
    """The current UTC time in the stored format."""
    return format_timestamp(datetime.now(UTC))


def format_timestamp(moment: datetime) -> str:
    """An aware datetime in the stored format."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_timestamp(value: str) -> datetime:
    """A stored timestamp back as an aware UTC datetime."""
    return datetime.strptime(value, _FORMAT).replace(tzinfo=UTC)
