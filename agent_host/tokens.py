"""Bearer tokens for the raw REST path: fetched from an azure credential, cached, refreshed early.

The SDK path gets this from ``get_bearer_token_provider``; the REST path has no SDK, so it keeps
its own cache. A token is reused until its ``refresh_on`` time (or five minutes before it expires),
so a long chat never sends a token that expires in flight, and a 401 can force one fresh fetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import anyio
from azure.core.credentials import AccessTokenInfo

from .errors import SCOPE

REFRESH_MARGIN_S = 300.0


class TokenSource(Protocol):
    """What the cache needs from a credential: azure-core's async ``SupportsTokenInfo``."""

    async def get_token_info(self, *scopes: str) -> AccessTokenInfo: ...


class TokenCache:
    """One scope's token from ``credential``, shared by concurrent requests."""

    def __init__(self, credential: TokenSource, scope: str = SCOPE, clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._lock = anyio.Lock()
        self._info: AccessTokenInfo | None = None
        self.fetches = 0
        """How many tokens were obtained from the credential (for tests and diagnostics)."""

    async def token(self, *, fresh: bool = False) -> str:
        """A valid token; ``fresh=True`` discards the cached one (after the service refused it)."""
        async with self._lock:
            if fresh or self._info is None or self._due(self._info):
                self._info = await self._credential.get_token_info(self._scope)
                self.fetches += 1
            return self._info.token

    def _due(self, info: AccessTokenInfo) -> bool:
        deadline = info.expires_on - REFRESH_MARGIN_S
        if info.refresh_on is not None:
            deadline = min(deadline, info.refresh_on)
        return self._clock() >= deadline
