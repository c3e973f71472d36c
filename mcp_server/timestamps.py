"""Timestamps as fixed-width ISO-8601 UTC text (`2024-05-01T09:30:00.123456Z`).

Fixed width makes the text sort chronologically in SQL on both backends, and text keeps
the schema portable (no timezone-type differences between SQLite and PostgreSQL).
"""

from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def now_text() -> str:
    """The current UTC time in the stored format."""
    return format_timestamp(utc_now())


def format_timestamp(moment: datetime) -> str:
    """An aware datetime in the stored format."""
    return moment.astimezone(UTC).strftime(_FORMAT)
