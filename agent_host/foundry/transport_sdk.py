"""The SDK wire path: `AIProjectClient.get_openai_client().responses.create`.

openai handles tokens (through azure-identity's bearer-token provider), timeouts and retries itself
(408/409/429/5xx, timeouts and refused connections, honouring `Retry-After`); this module only
shapes the request and turns openai's exceptions into the host's errors, a timeout waiting for the
answer as a slow service rather than an unreachable one. openai hands over, unchecked, what it cannot
read as a response (a page as a string, a JSON array, a `JSONDecodeError`): those are reported as the
REST path reports them, not left to end the chat as a crash. openai reports a body that broke off as it
reports a connection refused; an event hook notes that the answer had begun, so it is told as cut off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import httpx2
import openai
from azure.ai.projects.aio import AIProjectClient
from azure.core.exceptions import ClientAuthenticationError
from pydantic import BaseModel

from agent_host.errors import ServiceFailed, cut_off, http_failure, not_a_response, slow, unreachable
from agent_host.foundry.access import ProjectAccess, sign_in_failure
from agent_host.foundry.retries import TIMEOUT, paced
from agent_host.foundry.sse import not_an_object, not_json, require_event_stream

_NAMED = ("input", "previous_response_id", "tool_choice")
"""Request fields openai takes as arguments; the rest (`agent_reference`) goes in `extra_body`."""

_ANSWERED: ContextVar[bool] = ContextVar("bankgate_sdk_answered", default=False)
"""Whether the latest attempt of the request in flight (in this task) had an answer begin: its status came."""


async def _note_attempt(request: httpx2.Request) -> None:
    _ANSWERED.set(False)


async def _note_answer(response: httpx2.Response) -> None:
    _ANSWERED.set(True)


_HOOKS: dict[str, list[Callable[..., Awaitable[None]]]] = {"request": [_note_attempt], "response": [_note_answer]}


class SdkTransport:
    name = "sdk"

    def __init__(
        self, project: AIProjectClient, access: ProjectAccess, max_retries: int, *, timeout: httpx2.Timeout = TIMEOUT
    ) -> None:
        self._project = project
        self._access = access
        self._max_retries = max_retries
        self._timeout = timeout
        self._client = self._new_client()

    def _new_client(self) -> openai.AsyncOpenAI:
        """openai's client, except that it does not follow redirects (as the REST path does not): its request
        body cannot be sent again, and a redirect is an answer to report (see `agent_host.errors.http_failure`)."""
        http = openai.DefaultAsyncHttpxClient(follow_redirects=False, event_hooks=_HOOKS)
        return self._project.get_openai_client(max_retries=self._max_retries, timeout=self._timeout, http_client=http)

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        async with self._errors():
            response: object = await self._client.responses.create(**_arguments(request))
        if not isinstance(response, BaseModel):
            raise not_a_response(self._access.endpoint)
        return response.model_dump(mode="json")

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self._errors():
            events = await self._client.responses.create(**_arguments(request), stream=True)
            try:
                async with events:
                    require_event_stream(events.response.headers.get("content-type"), self._access.endpoint)
                    async for event in paced(aiter(events), self._timeout.read):
                        if not isinstance(event, BaseModel):
                            raise not_an_object(json.dumps(event))
                        yield event.model_dump(mode="json")
            except json.JSONDecodeError as error:
                raise not_json(error.doc) from None
            except (openai.APITimeoutError, TimeoutError):  # after the stream started: it stalled
                raise slow(self._access.endpoint, self._timeout.read, streaming=True) from None
            except openai.APIConnectionError as error:
                cause = error.__cause__ or error
                raise ServiceFailed(f"The response stream from {self._access.endpoint} broke off: {cause}.") from None

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """openai's exceptions as `HostError`s naming the endpoint and the identity."""
        try:
            yield
        except openai.APIStatusError as error:
            if isinstance(error, openai.AuthenticationError):
                # openai keeps its cached token after a 401: start over with a fresh client.
                await self._client.close()
                self._client = self._new_client()
            raise http_failure(
                error.status_code,
                error.body,
                error.response.headers,
                endpoint=self._access.endpoint,
                identity=await self._access.identity(),
                retries=self._max_retries,
            ) from None
        except openai.APITimeoutError as error:
            if isinstance(error.__cause__, httpx2.ConnectTimeout):
                raise unreachable(self._access.endpoint, error.__cause__) from None
            raise slow(self._access.endpoint, self._timeout.read, retries=self._max_retries) from None
        except openai.APIConnectionError as error:
            if _ANSWERED.get():
                raise cut_off(self._access.endpoint, error.__cause__ or error) from None
            raise unreachable(self._access.endpoint, error.__cause__ or error) from None
        except ClientAuthenticationError as error:  # from the bearer-token provider, before any request
            raise sign_in_failure(error) from None
        except json.JSONDecodeError:  # a body declared JSON that is not
            raise not_a_response(self._access.endpoint) from None
        except openai.APIError as error:  # an answer openai could not read
            raise ServiceFailed(
                f"The Foundry project at {self._access.endpoint} sent an unreadable answer: {error}"
            ) from None

    async def aclose(self) -> None:
        await self._client.close()


def _arguments(request: Mapping[str, Any]) -> dict[str, Any]:
    named = {key: request[key] for key in _NAMED if key in request}
    extra = {key: value for key, value in request.items() if key not in _NAMED}
    return {**named, "extra_body": extra}
