"""The signing keys an OAuth issuer publishes at its JWKS URL, as bankgate trusts them over time.

PyJWT's client, asked to cache keys, remembers each key id it resolved for the life of the process: a key the
issuer withdrew (rotated out, or leaked) kept verifying tokens until a restart. Here the published set is read
again once it is `KEYS_MAX_AGE` old, so a withdrawn key stops verifying by then; a new key id is looked up at once
(at most once per PyJWT's cooldown). A fetch that fails withdraws nothing: the keys last published stay trusted
for another `KEYS_MAX_AGE` before the next try (a token naming a key id they lack included), so an issuer outage
neither locks out every caller nor makes each wait for the fetch to time out. Before any set was read (a server
started during the outage) a failed fetch is not tried again for `FAILED_FETCH_PAUSE`: the tokens queued behind it
(PyJWT fetches one at a time) are refused at once, instead of each waiting out a fetch of its own.
"""

import logging
import time
from typing import Any

import jwt

KEYS_MAX_AGE = 300.0
"""Seconds the published keys are trusted before they are read again (PyJWT's default lifespan)."""
FETCH_TIMEOUT = 5.0
"""Seconds one fetch of the JWKS may take."""
FAILED_FETCH_PAUSE = 5.0
"""Seconds a failed first fetch is not tried again: tokens meanwhile are refused without waiting on the issuer."""

log = logging.getLogger(__name__)


class IssuerKeys(jwt.PyJWKClient):
    """PyJWT's JWKS client without its per-key cache, keeping the last published set through failed fetches."""

    def __init__(self, url: str) -> None:
        super().__init__(url, cache_keys=False, cache_jwk_set=True, lifespan=KEYS_MAX_AGE, timeout=FETCH_TIMEOUT)
        self._published: dict[str, Any] | None = None
        self._retry_at = 0.0
        """Monotonic time before which, the last fetch having failed, the issuer is not asked again."""

    def fetch_data(self) -> Any:
        if time.monotonic() < self._retry_at:  # also PyJWT's look-up of a key id it lacks, which skips the cache
            if self._published is None:
                raise jwt.PyJWKClientConnectionError("the issuer's keys could not be read a moment ago; not asked yet")
            return self._published
        try:
            self._published = super().fetch_data()
        # Unreachable, an error page, not JSON or not an object; or the connection reset or broken while the answer
        # is read (an OSError PyJWT lets through: it wraps only what opening the URL raises).
        except (jwt.PyJWKClientError, ValueError, OSError) as exc:
            if self._published is None:
                self._retry_at = time.monotonic() + FAILED_FETCH_PAUSE
                raise
            self._retry_at = time.monotonic() + KEYS_MAX_AGE
            log.warning("the issuer's keys could not be read again (%s); those last published stay trusted", exc)
            assert self.jwk_set_cache is not None
            self.jwk_set_cache.put(self._published)
        return self._published
