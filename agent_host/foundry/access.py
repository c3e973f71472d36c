"""How the host reaches the Foundry project: the endpoint, a credential, and who that credential is.

Against a loopback endpoint (the emulator) the credential is the emulator's dev token and plain
`http://` is allowed; anywhere else it is `DefaultAzureCredential` and only `https://` is
accepted, so a bearer token never crosses a network in the clear.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy
from azure.identity.aio import DefaultAzureCredential

from agent_host.errors import AuthenticationFailed, ConfigurationError
from agent_host.foundry.audience import SCOPE
from agent_host.foundry.dev_token import AsyncDevTokenCredential, AsyncLoopbackBearerTokenPolicy
from agent_host.loopback import is_loopback_url
from agent_host.settings import DEFAULT_EMULATOR_MODEL, HostSettings


@dataclass
class ProjectAccess:
    """The project endpoint with the credential (and matching azure-core policy) to call it."""

    endpoint: str
    credential: AsyncDevTokenCredential | DefaultAzureCredential
    dev_token: bool
    token_fetches: int = field(default=0, init=False)
    """Tokens obtained through `get_token_info` (for tests and diagnostics)."""

    @property
    def default_model(self) -> str | None:
        """The model for new agent versions when CHAT_MODEL is unset: any name works on the emulator,
        while a real project's deployments are the user's to name (so there is none)."""
        return DEFAULT_EMULATOR_MODEL if self.dev_token else None

    def policy(self) -> AsyncBearerTokenCredentialPolicy[Any, Any]:
        """The bearer-token policy for azure-core clients (lifts the https check for loopback only)."""
        return AsyncLoopbackBearerTokenPolicy(self.credential, SCOPE)

    def client_options(self) -> dict[str, Any]:
        """azure-core options: against the local emulator a refused connection is not worth retrying."""
        return {"retry_connect": 0} if self.dev_token else {}

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """A token (the REST path's token source), with sign-in failures as an actionable error."""
        self.token_fetches += 1
        try:
            return await self.credential.get_token_info(*scopes, options=options)
        except ClientAuthenticationError as error:
            raise sign_in_failure(error) from None

    async def identity(self) -> str:
        """Who the host's tokens speak for, for error messages."""
        if self.dev_token:
            return "the emulator dev token (EMULATOR_TOKEN; use the value `bankgate-agent emulator` printed)"
        try:
            return describe_token((await self.get_token_info(SCOPE)).token)
        except AuthenticationFailed:
            return "an identity DefaultAzureCredential could not sign in"

    async def aclose(self) -> None:
        await self.credential.close()


def project_access(settings: HostSettings) -> ProjectAccess:
    """Check `PROJECT_ENDPOINT` and pick the credential for it."""
    endpoint = (settings.project_endpoint or "").rstrip("/")
    if not endpoint:
        raise ConfigurationError(
            "PROJECT_ENDPOINT is not set.",
            "Set it in the environment or in .env (https://<account>.services.ai.azure.com/api/projects/<project>), "
            "start the offline emulator with `bankgate-agent emulator` and use the endpoint it prints, or run "
            "`bankgate-agent demo`, which needs no configuration.",
        )
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"PROJECT_ENDPOINT {endpoint!r} is not an http(s) URL.")
    loopback = is_loopback_url(endpoint)
    if parts.scheme == "http" and not loopback:
        raise ConfigurationError(
            f"PROJECT_ENDPOINT {endpoint!r} uses plain http to a non-loopback host.",
            "Use https: bearer tokens are sent in clear over http, which is allowed for 127.0.0.1/localhost only.",
        )
    if loopback:
        return ProjectAccess(endpoint, AsyncDevTokenCredential(settings.emulator_token.get_secret_value()), True)
    return ProjectAccess(endpoint, DefaultAzureCredential(), False)


def sign_in_failure(error: ClientAuthenticationError) -> AuthenticationFailed:
    """No token at all: azure-identity found no signed-in identity (or it was refused)."""
    return AuthenticationFailed(
        f"Could not get a token for {SCOPE}: {error.message.splitlines()[0]}",
        "Sign in with `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or use a "
        "managed identity), then try again.",
    )


def describe_token(token: str) -> str:
    """The signed-in identity a JWT names (user, app or object id, and tenant), without verifying it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return "a token that is not a JWT"
    if not isinstance(claims, dict):
        return "a token that is not a JWT"
    who = next(
        (str(claims[k]) for k in ("upn", "unique_name", "preferred_username", "appid", "oid") if k in claims), "?"
    )
    audience = claims.get("aud", "?")
    return f"{who} (tenant {claims.get('tid', '?')}; token audience {audience})"
