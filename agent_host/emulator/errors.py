"""Error bodies in the shapes the real service sends, so SDK exception mapping is exercised faithfully."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An HTTP error the emulator answers with instead of a result.

    The body follows the OpenAI error envelope (`message`/`type`/`param`/`code`), which both
    openai (`.code`/`.param`/`.body`) and azure-core (`ApiErrorResponse`) parse.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        """More members of the `error` object (Foundry adds `details` and `additionalInfo`)."""

    def body(self) -> dict[str, object]:
        """The JSON body; Foundry's auth errors carry only `code` and `message`."""
        error: dict[str, object] = {"message": self.message, "code": self.code}
        if self.type is not None:
            error |= {"type": self.type, "param": self.param}
        return {"error": error | self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid_request(message: str, param: str | None, code: str | None = None) -> ApiError:
    """A 400 `invalid_request_error`: what the service returns for any malformed or inconsistent body."""
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def not_found(message: str, param: str | None = None) -> ApiError:
    """A 404 for unknown agents, versions and responses.

    The real shape is not captured in the notes; the emulator uses the OpenAI envelope with
    `code: "not_found"`, which maps to openai `NotFoundError` and azure `ResourceNotFoundError`.
    """
    return ApiError(404, message, type="invalid_request_error", param=param, code="not_found")


def permission_denied(message: str) -> ApiError:
    """A 401 as Foundry's RBAC layer sends it: `{"error": {"code": "PermissionDenied", "message": ...}}`."""
    return ApiError(401, message, code="PermissionDenied")


def response_expired(response_id: str, lifetime: float) -> ApiError:
    """A 400 for continuing a response whose run expired while its function calls waited for outputs.

    No capture of the real body is public (see docs/foundry-wire-notes.md): it is modelled on the
    service's documented `previous_response_not_found` error, naming the same `param`.
    """
    return invalid_request(
        f"Response '{response_id}' has expired: its run ended {lifetime:g} seconds after it was created, "
        "before the outputs of its function calls arrived. Start a new response without 'previous_response_id'.",
        "previous_response_id",
        code="response_expired",
    )


def agent_owned(param: str) -> ApiError:
    """Foundry's 400 for a request field the referenced agent's definition owns (e.g. `tools`).

    As reported from the real service: `{"error": {"code": "invalid_payload", "message": "Not allowed
    when agent is specified.", "param": "tools", "type": "invalid_request_error", "details": [],
    "additionalInfo": {"request_id": ...}}}`.
    """
    return ApiError(
        400,
        "Not allowed when agent is specified.",
        type="invalid_request_error",
        param=param,
        code="invalid_payload",
        extra={"details": [], "additionalInfo": {"request_id": uuid.uuid4().hex}},
    )
