"""OAuth errors, answered as RFC 6749 §5.2 says (JSON `error` and `error_description`), not as
problem+json: OAuth client libraries read these."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crm_service.errors import CRMError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(CRMError):
    status = 400
    error = "invalid_request"

    def __init__(self, description: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description, headers=headers)


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed. 401 with a Basic challenge (RFC 6749 §5.2). Its audit
    event and throttling count are kept."""

    status, error = 401, "invalid_client"
    keeps_changes = True

    def __init__(self, description: str = "Client authentication failed.") -> None:
        super().__init__(
            description, headers={"WWW-Authenticate": 'Basic realm="crm-service", charset="UTF-8"'}
        )


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    keeps_changes = True  # the refusal's audit event


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class ClientThrottled(OAuthError):
    """Too many failed client authentications from this address (like password sign-ins)."""

    status, error = 429, "temporarily_unavailable"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed client authentications from this address; try again later.",
            headers={"Retry-After": str(retry_after)},
        )


async def _render(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OAuthError)
    body = {"error": exc.error, "error_description": exc.detail}
    return JSONResponse(body, status_code=exc.status, headers={**NO_STORE, **exc.headers})


def install_oauth_errors(app: FastAPI) -> None:
    app.add_exception_handler(OAuthError, _render)
