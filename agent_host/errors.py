"""Failures a user can act on: each is printed as a message and a hint, never as a traceback.

The three wire clients (azure-core for agents, openai for the SDK path, httpx2 for the raw REST
path) report HTTP failures differently; `http_failure` turns the status, body and headers any
of them saw into the same `HostError`, so every path explains a 401 or a 429 the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent_host.foundry.audience import SCOPE
from agent_host.foundry.retries import server_delay
from agent_host.loopback import is_loopback_url

ENDPOINT_SHAPE = "https://<account>.services.ai.azure.com/api/projects/<project>"
_PROJECT_PATH = re.compile(r"/api/projects/[^/]+")


class HostError(Exception):
    """An expected failure: what went wrong, and what the user can do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class ConfigurationError(HostError):
    """Settings or options that cannot work together."""

    exit_code = 2


class AuthenticationFailed(HostError):
    """No token could be obtained, or the project refused it."""


class NotFound(HostError):
    """An unknown agent, agent version or response."""


class RateLimited(HostError):
    """Still throttled after the retries."""


class ServiceUnreachable(HostError):
    """The project endpoint (service or emulator) could not be reached at all."""


class ServiceFailed(HostError):
    """Any other error answer from the service."""


class ServiceSlow(HostError):
    """The project was reached but did not answer within the timeout (distinct from unreachable)."""


class ChainExpired(ServiceFailed):
    """The response a request continues from (`previous_response_id`) expired or is gone.

    The service gives no single code for it (see docs/foundry-wire-notes.md): any 400/404/410 naming
    `previous_response_id` counts, so a conversation can start a new chain instead of failing on.
    """


class McpUnavailable(HostError):
    """The MCP server did not start, refused the connection, or stopped."""


class Interrupted(HostError):
    """The person pressed Ctrl-C; what was in flight has been settled."""

    exit_code = 130


def http_failure(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str,
    identity: str,
    retries: int | None = None,
) -> HostError:
    """The `HostError` for an HTTP error answer from the Foundry project at `endpoint`.

    `identity` says who the token was for (see `agent_host.foundry.access.describe_token`), because
    "which identity, which audience" is what a 401 needs answering; `retries` is how many
    retries were made, when the caller knows.
    """
    code, message = _error_fields(body)
    detail = f"HTTP {status}{f' {code}' if code else ''}: {message}" if message else f"HTTP {status}"
    if status in (400, 404, 410) and (_param(body) == "previous_response_id" or code in _CHAIN_CODES):
        return ChainExpired(f"The Foundry project at {endpoint} cannot continue the response ({detail}).")
    if status in (401, 403):
        return AuthenticationFailed(
            f"The Foundry project at {endpoint} refused the host's token ({detail}).",
            f"The token was requested for scope {SCOPE} as {identity}. " + _token_advice(endpoint),
        )
    if status == 404:
        return not_found(endpoint, detail)
    if 300 <= status < 400:
        location = headers.get("location") or headers.get("Location")
        return ServiceFailed(
            f"The Foundry project at {endpoint} answered HTTP {status}, a redirect"
            + (f" to {location}." if location else " without a location."),
            "The host does not follow redirects (its token would go along): set PROJECT_ENDPOINT to the project's "
            f"endpoint itself, {ENDPOINT_SHAPE}.",
        )
    if status == 429:
        wait = server_delay(headers)
        when = f"in {math.ceil(wait)} s" if wait is not None and 0 < wait <= MAX_TOLD_WAIT_S else "later"
        after = "its retries" if retries is None else f"{retries} retries"
        return RateLimited(
            f"The Foundry project is rate limiting requests ({detail}); still throttled after {after}.",
            f"Try again {when}, or raise the model deployment's quota.",
        )
    return ServiceFailed(f"The Foundry project at {endpoint} answered {detail}.")


MAX_TOLD_WAIT_S = 86_400.0
"""The longest wait a 429's hint (`retry-after-ms`, `Retry-After` in seconds or as a date) is passed on as: a
negative, past, unreadable or larger one is no advice, and the person is told "later"."""


def cut_off(endpoint: str, reason: object) -> ServiceFailed:
    """A success answer that broke off before its end: the service had the request, so it is no unreachable
    endpoint; the host read nothing of the answer, so none of its calls ran."""
    return ServiceFailed(
        f"The Foundry project at {endpoint} answered, but the answer was cut off ({reason}): nothing of it was run.",
        "Send the message again; if this keeps happening, check the proxy or network between the host and Azure.",
    )


def not_a_response(endpoint: str) -> ServiceFailed:
    """A success answer whose body is no JSON object (a proxy's page, a cut-off body): nothing to read a reply from."""
    return ServiceFailed(f"The Foundry project at {endpoint} answered with no JSON object.")


def not_found(endpoint: str, detail: str) -> NotFound:
    """A 404: most often a PROJECT_ENDPOINT with the wrong path, else an unknown agent or version."""
    if not _PROJECT_PATH.fullmatch(urlsplit(endpoint).path):
        hint = f"Check PROJECT_ENDPOINT's path: a project endpoint looks like {ENDPOINT_SHAPE}."
    else:
        hint = (
            f"Check the project name in PROJECT_ENDPOINT ({ENDPOINT_SHAPE}), the agent name "
            "(AGENT_NAME / --agent) and --agent-version."
        )
    return NotFound(f"Not found at {endpoint} ({detail}).", hint)


def _token_advice(endpoint: str) -> str:
    """Azure wants a role and a sign-in; the emulator wants nothing but its own token."""
    if is_loopback_url(endpoint):
        return "The emulator accepts only the token it printed; Azure roles and `az login` play no part here."
    return "Check that this identity has the 'Azure AI User' role on the project, or sign in as another one (az login)."


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside (possibly nested) groups, or the group itself when there are several."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def unreachable(endpoint: str, reason: object) -> ServiceUnreachable:
    return ServiceUnreachable(
        f"Cannot reach the Foundry project at {endpoint} ({reason}).",
        "Check PROJECT_ENDPOINT and your network; for the offline emulator run `bankgate-agent emulator` "
        "and use the PROJECT_ENDPOINT it prints.",
    )


_CHAIN_CODES = frozenset({"previous_response_not_found", "response_expired"})


def slow(endpoint: str, seconds: float | None, *, retries: int | None = None, streaming: bool = False) -> ServiceSlow:
    """The project at `endpoint` took longer than `seconds` to answer (or to send the next event)."""
    waited = f"{seconds:g} s" if seconds is not None else "the timeout"
    what = "sent nothing more of its streamed answer" if streaming else "did not answer"
    tries = f" ({retries} retries)" if retries else ""
    return ServiceSlow(
        f"The Foundry project at {endpoint} {what} within {waited}{tries}: the service is reachable but slow.",
        "Try again; if it keeps happening, check the model deployment's load and quota in the Foundry portal.",
    )


def _param(body: object) -> str | None:
    """The `param` an OpenAI-style error names (openai hands over the inner `error` object)."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    return str(error["param"]) if isinstance(error, Mapping) and error.get("param") else None


def _error_fields(body: object) -> tuple[str | None, str | None]:
    """`(code, message)` from an OpenAI-style `{"error": {...}}` body, or the body itself (a proxy's HTML
    page, say), each cut to its first line and `QUOTED_CHARACTERS`: a message, not a page."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
        return (_quoted(code) if code else None), (_quoted(message) if message else None)
    return None, (_quoted(error) if error else None)


QUOTED_CHARACTERS = 200


def _quoted(value: object) -> str:
    lines = str(value).strip().splitlines() or [""]
    line = lines[0]
    return line if len(line) <= QUOTED_CHARACTERS and len(lines) == 1 else f"{line[:QUOTED_CHARACTERS]}…"
