"""A spinner while the host waits on Foundry, so `ask` and `chat` are never silent for seconds.

`BusyTransport` wraps a wire path: the spinner runs while a response is created, and for a
stream until its first event (then the text itself shows progress). It is only put in place when
stderr is a terminal (see `agent_host.display.Display.busy`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, cast

from agent_host.conversation import ResponsesTransport
from agent_host.display import Display

THINKING = "Waiting for the Foundry agent…"


class BusyTransport:
    def __init__(self, inner: ResponsesTransport, display: Display) -> None:
        self._inner = inner
        self._display = display
        self.name = inner.name

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        with self._display.busy(THINKING):
            return await self._inner.create(request)

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        # Both wire paths stream from async generators, which must be closed when left early.
        inner = cast(AsyncGenerator[dict[str, Any], None], self._inner.stream(request))
        async with aclosing(inner) as events:
            with self._display.busy(THINKING):
                first = await anext(events, None)
            if first is None:
                return
            yield first
            async for event in events:
                yield event

    async def aclose(self) -> None:
        await self._inner.aclose()
