"""The emulator's side of the dev-token scheme (`agent_host.foundry.dev_token` issues the tokens).

A token is the emulator's secret, optionally tagged with the audience it was issued for:
`<secret>` or `<secret>@<audience>`. A bare secret counts as issued for `https://ai.azure.com`,
so `curl -H "Authorization: Bearer $EMULATOR_TOKEN"` just works; the tagged form lets tests
reproduce the real service's wrong-audience 401 without real Entra ID tokens.
"""

from __future__ import annotations

import hmac

from agent_host.emulator.errors import permission_denied
from agent_host.foundry.audience import AUDIENCE


def authenticate(authorization: str | None, secret: str) -> None:
    """Raise the 401 the service would send unless `authorization` is a bearer token for this emulator."""
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
