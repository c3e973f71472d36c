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


def span_text(seconds: float) -> str:
    """A duration as a person reads it at a glance (`45 s`, `4 min 05 s`, `2 h 30 min`), whole seconds, never
    negative: how long a question has waited, has left, or is overdue by."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
