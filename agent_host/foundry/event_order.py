"""Whether a streamed response's events arrived as the service sent them, by their `sequence_number`.

The service numbers a stream's events from 0, one by one (docs/foundry-wire-notes.md). An event repeated
under its number (a proxy or a resumed connection sending it again) is the same event: it is dropped, not
read twice. A number skipped, one arriving late, one reused for another event, or an event without a
number means the stream is not what the service sent: what only the order of the events carries (a call's
arguments joined from their deltas) cannot be trusted then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EventOrder:
    """The sequence numbers of one stream's events, as they arrive."""

    def __init__(self) -> None:
        self._seen: dict[int, Mapping[str, Any]] = {}
        self._highest = -1
        self._faults: list[str] = []
        """How the stream went out of step, apart from numbers that never arrived (known only at its end)."""

    def admit(self, event: Mapping[str, Any]) -> bool:
        """Whether to read `event`: not when it repeats one already read under its number."""
        number = event.get("sequence_number")
        if not isinstance(number, int) or isinstance(number, bool):
            self._faults.append(f"a {event.get('type')} event came without a sequence_number")
            return True
        earlier = self._seen.get(number)
        if earlier == event:
            return False
        if earlier is not None:
            self._faults.append(f"event {number} arrived twice, different the second time")
        elif number < self._highest:
            self._faults.append(f"event {number} arrived after event {self._highest}")
        self._seen.setdefault(number, event)
        self._highest = max(self._highest, number)
        return True

    @property
    def fault(self) -> str | None:
        """How the events so far are out of step, if they are."""
        if self._faults:
            return self._faults[0]
        missing = [number for number in range(self._highest) if number not in self._seen]
        if not missing:
            return None
        if len(missing) == 1:
            return f"event {missing[0]} never arrived"
        return f"{len(missing)} events never arrived (the first: {missing[0]})"
