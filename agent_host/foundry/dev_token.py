"""Signing in to a loopback project (the emulator) with the real azure SDKs: the dev-token credential.

A dev token is a shared secret, tagged with the audience it was requested for unless that is
Foundry's: `<secret>` or `<secret>@<audience>` (the emulator checks both parts, so tests can
reproduce the service's wrong-audience 401). azure-core refuses bearer tokens over plain `http://`;
the emulator serves plain HTTP on loopback, so `LoopbackBearerTokenPolicy` (and its async twin)
lifts that check for loopback URLs only and keeps it for every other host.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, BearerTokenCredentialPolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest, HttpResponse

from agent_host.foundry.audience import AUDIENCE, SCOPE
from agent_host.loopback import is_loopback_url

DEV_TOKEN = "bankgate-emulator-dev-token"
"""Default secret: the emulator only listens on loopback, so a well-known token is good enough."""

_LIFETIME_S = 3600


def token_for_scope(secret: str, scope: str) -> str:
    """The token a credential would obtain for `scope`: tagged with its audience unless it is Foundry's."""
    audience = scope.removesuffix("/.default").rstrip("/")
    return secret if audience == AUDIENCE else f"{secret}@{audience}"


class DevTokenCredential:
    """A token credential issuing emulator dev tokens (azure-core `TokenCredential` and `SupportsTokenInfo`).

    No static credential ships with azure-identity; this one lets `AIProjectClient` and
    `get_openai_client()` run unchanged against the emulator.
    """

    def __init__(self, secret: str = DEV_TOKEN) -> None:
        self._secret = secret

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        info = self.get_token_info(*scopes)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        if len(scopes) != 1:
            raise ValueError(f"exactly one scope is required, got {scopes!r}")
        return AccessTokenInfo(token_for_scope(self._secret, scopes[0]), int(time.time()) + _LIFETIME_S)


class AsyncDevTokenCredential:
    """The async twin of `DevTokenCredential`, for `azure.ai.projects.aio.AIProjectClient`."""

    def __init__(self, secret: str = DEV_TOKEN) -> None:
        self._tokens = DevTokenCredential(secret)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return self._tokens.get_token(*scopes)

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return self._tokens.get_token_info(*scopes)

    async def close(self) -> None:
        """Nothing to release; present because the async credential protocols require it."""

    async def __aenter__(self) -> AsyncDevTokenCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _allow_plain_http_to_loopback(request: PipelineRequest[HttpRequest]) -> None:
    if is_loopback_url(request.http_request.url):
        request.context["enforce_https"] = False


class LoopbackBearerTokenPolicy(BearerTokenCredentialPolicy[HttpRequest, HttpResponse]):
    """Bearer-token policy that allows plain HTTP to loopback hosts and nowhere else.

    Pass it as `AIProjectClient(..., authentication_policy=LoopbackBearerTokenPolicy(credential))`.
    """

    def __init__(self, credential: Any, *scopes: str, **kwargs: Any) -> None:
        super().__init__(credential, *(scopes or (SCOPE,)), **kwargs)

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        _allow_plain_http_to_loopback(request)
        super().on_request(request)


class AsyncLoopbackBearerTokenPolicy(AsyncBearerTokenCredentialPolicy[HttpRequest, AsyncHttpResponse]):
    """The async twin of `LoopbackBearerTokenPolicy`."""

    def __init__(self, credential: Any, *scopes: str, **kwargs: Any) -> None:
        super().__init__(credential, *(scopes or (SCOPE,)), **kwargs)

    async def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        _allow_plain_http_to_loopback(request)
        await super().on_request(request)
