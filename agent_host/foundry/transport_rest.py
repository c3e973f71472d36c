"""The raw REST wire path: `POST {endpoint}/openai/v1/responses` over httpx2, no Foundry or OpenAI SDK.

It does by hand what the SDK path gets for free: a bearer token for `https://ai.azure.com/.default`
from azure-identity's bearer-token provider (a new provider after a 401, in case the token went
stale), the SDK's timeouts and retries (`agent_host.foundry.retries`: 408/409/429/5xx answers, timeouts
and refused connections, honouring `retry-after-ms`/`Retry-After`; a stream only before it
starts), and Server-Sent Events when streaming. A read timeout is reported as a slow service, not an
unreachable one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import httpx2
from azure.core.credentials_async import AsyncSupportsTokenInfo
from azure.identity.aio import get_bearer_token_provider

from agent_host.errors import HostError, ServiceFailed, cut_off, http_failure, not_a_response, slow, unreachable
from agent_host.foundry.access import ProjectAccess
from agent_host.foundry.audience import SCOPE
from agent_host.foundry.retries import TIMEOUT, paced, retry_delay, should_retry
from agent_host.foundry.sse import parse_sse, require_event_stream


class RestTransport:
    name = "rest"

    def __init__(self, access: ProjectAccess, max_retries: int, *, timeout: httpx2.Timeout = TIMEOUT) -> None:
        self._access = access
        self._token = _token_provider(access)
        self._max_retries = max_retries
        self._timeout = timeout
        self._url = f"{access.endpoint}/openai/v1/responses"
        self._http = httpx2.AsyncClient(timeout=timeout)

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        async with self._post(request) as response:
            body = _json_or_text(response)
        if not isinstance(body, dict):
            raise not_a_response(self._access.endpoint)
        return body

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self._post({**request, "stream": True}) as response:
            require_event_stream(response.headers.get("content-type"), self._access.endpoint)
            try:
                async for event in paced(parse_sse(response.aiter_lines()), self._timeout.read):
                    yield event
            except (httpx2.ReadTimeout, TimeoutError):
                raise slow(self._access.endpoint, self._timeout.read, streaming=True) from None
            except httpx2.TransportError as error:
                raise ServiceFailed(f"The response stream from {self._access.endpoint} broke off: {error}.") from None

    @asynccontextmanager
    async def _post(self, request: Mapping[str, Any]) -> AsyncIterator[httpx2.Response]:
        """The successful response (body not yet read), after the retries; errors as `HostError`."""
        streaming = bool(request.get("stream"))
        fresh = refreshed = False
        attempt = 0
        while True:
            try:
                response = await self._send(request, streaming, fresh_token=fresh)
            except httpx2.TransportError as error:
                if attempt < self._max_retries:
                    await anyio.sleep(retry_delay({}, attempt))
                    attempt += 1
                    continue
                raise self._failure(error, attempt) from None
            fresh = False
            try:
                if response.status_code == 401 and not refreshed:
                    fresh = refreshed = True
                    continue
                retry = response.status_code >= 400 and should_retry(response.status_code, response.headers)
                if retry and attempt < self._max_retries:
                    await anyio.sleep(retry_delay(response.headers, attempt))
                    attempt += 1
                    continue
                if not response.is_success:  # a redirect too: not followed, so the token stays here
                    await response.aread()
                    raise http_failure(
                        response.status_code,
                        _json_or_text(response),
                        response.headers,
                        endpoint=self._access.endpoint,
                        identity=await self._access.identity(),
                        retries=attempt,
                    )
                if not streaming:
                    try:
                        await response.aread()
                    except httpx2.TransportError as error:  # the answer began, then stalled or broke
                        raise self._failure(error, attempt, answered=True) from None
                yield response
                return
            finally:
                await response.aclose()

    async def _send(self, request: Mapping[str, Any], streaming: bool, *, fresh_token: bool) -> httpx2.Response:
        if fresh_token:  # the provider keeps its token until near expiry: a new one fetches anew
            self._token = _token_provider(self._access)
        token = await self._token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream" if streaming else "application/json",
            "User-Agent": "bankgate-agent (raw REST)",
        }
        outgoing = self._http.build_request("POST", self._url, json=request, headers=headers)
        return await self._http.send(outgoing, stream=True)

    def _failure(self, error: httpx2.TransportError, retries: int, *, answered: bool = False) -> HostError:
        """A timeout waiting for the answer is a slow service; anything else did not reach it, unless the
        service had `answered` (its status came) and the answer broke off."""
        if isinstance(error, httpx2.TimeoutException) and not isinstance(error, httpx2.ConnectTimeout):
            return slow(self._access.endpoint, self._timeout.read, retries=retries)
        return cut_off(self._access.endpoint, error) if answered else unreachable(self._access.endpoint, error)

    async def aclose(self) -> None:
        await self._http.aclose()


def _token_provider(access: ProjectAccess) -> Callable[[], Awaitable[str]]:
    """Tokens cached and refreshed before they expire; the provider only ever calls `get_token_info`."""
    return get_bearer_token_provider(cast(AsyncSupportsTokenInfo, access), SCOPE)


def _json_or_text(response: httpx2.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
