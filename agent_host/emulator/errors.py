"""Error bodies in the shapes the real service sends, so SDK exception mapping is exercised faithfully."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An HTTP error the emulator answers with instead of a result.

    The body follows the OpenAI error envelope (``message``/``type``/``param``/``code``), which both
    openai (``.code``/``.param``/``.body``) and azure-core (``ApiErrorResponse``) parse.
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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        """The JSON body; Foundry's auth errors carry only ``code`` and ``message``."""
        error: dict[str, object] = {"message": self.message, "code": self.code}
        if self.type is not None:
            error |= {"type": self.type, "param": self.param}
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid_request(message: str, param: str | None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``: what the service returns for any malformed or inconsistent body."""
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def not_found(message: str, param: str | None = None) -> ApiError:
    """A 404 for unknown agents, versions and responses.

    The real shape is not captured in the notes; the emulator uses the OpenAI envelope with
    ``code: "not_found"``, which maps to openai ``NotFoundError`` and azure ``ResourceNotFoundError``.
    """
    return ApiError(404, message, type="invalid_request_error", param=param, code="not_found")


def permission_denied(message: str) -> ApiError:
    """A 401 as Foundry's RBAC layer sends it: ``{"error": {"code": "PermissionDenied", "message": ...}}``."""
    return ApiError(401, message, code="PermissionDenied")


def response_expired(response_id: str, lifetime: float) -> ApiError:
    """A 400 for continuing a response whose run expired while its function calls waited for outputs.

    No capture of the real body is public (see docs/foundry-wire-notes.md): it is modelled on the
    service's documented ``previous_response_not_found`` error, naming the same ``param``.
    """
    return invalid_request(
        f"Response '{response_id}' has expired: its run ended {lifetime:g} seconds after it was created, "
        "before the outputs of its function calls arrived. Start a new response without 'previous_response_id'.",
        "previous_response_id",
        code="response_expired",
    )
