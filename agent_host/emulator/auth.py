"""The emulator's dev-token scheme.

A token is the emulator's secret, optionally tagged with the audience it was issued for:
``<secret>`` or ``<secret>@<audience>``. A bare secret counts as issued for ``https://ai.azure.com``,
so ``curl -H "Authorization: Bearer $EMULATOR_TOKEN"`` just works; the tagged form lets tests
reproduce the real service's wrong-audience 401 without real Entra ID tokens.
"""

from __future__ import annotations

import hmac

from .errors import permission_denied

DEV_TOKEN = "bankgate-emulator-dev-token"
"""Default secret: the emulator only listens on loopback, so a well-known token is good enough."""

AUDIENCE = "https://ai.azure.com"
"""The audience Foundry project endpoints accept (scope ``https://ai.azure.com/.default``)."""


def token_for_scope(secret: str, scope: str) -> str:
    """The token a credential would obtain for ``scope``: tagged with its audience unless it is Foundry's."""
    audience = scope.removesuffix("/.default").rstrip("/")
    return secret if audience == AUDIENCE else f"{secret}@{audience}"


def authenticate(authorization: str | None, secret: str) -> None:
    """Raise the 401 the service would send unless ``authorization`` is a bearer token for this emulator."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise permission_denied(
            "Missing bearer token: send 'Authorization: Bearer <token>' with a token for " + AUDIENCE + "."
        )
    presented, _, audience = token.partition("@")
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        raise permission_denied("The bearer token is not valid for this project.")
    if audience and audience.rstrip("/") != AUDIENCE:
        raise permission_denied(
            f"The token's audience '{audience}' is incorrect; request a token for {AUDIENCE} "
            f"(scope {AUDIENCE}/.default)."
        )
