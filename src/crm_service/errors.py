"""The CRMError hierarchy and the one handler that renders every error as RFC 9457 problem+json.

Problem details never carry a stack trace, SQL text or a submitted value: validation errors
name the field and the rule that failed, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_service.db.diagnosis import missing_table, unreachable_reason

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "tag:crm-service,2026:problems/"

logger = structlog.get_logger("crm_service.errors")


# Bounds of what a problem carries, so clients can rely on them (and longer input is cut).
MAX_FIELD_PROBLEMS = 50
MAX_LOCATION = 200
MAX_MESSAGE = 500
MAX_INSTANCE = 2048


class FieldProblem(BaseModel):
    """One failed rule on one input field."""

    field: str = Field(
        max_length=MAX_LOCATION, description="Dotted location of the field, e.g. `body.email`."
    )
    rule: str = Field(
        max_length=64, description="Machine-readable rule that failed, e.g. `string_too_long`."
    )
    message: str = Field(
        max_length=MAX_MESSAGE, description="What the rule requires, without the submitted value."
    )


class Problem(BaseModel):
    """RFC 9457 problem details. Absent members are left out, never sent as null."""

    type: str = Field(max_length=200, description="URI identifying the problem type.")
    title: str = Field(max_length=100)
    status: int = Field(ge=400, le=599, json_schema_extra={"format": "int32"})
    detail: str | None = Field(default=None, max_length=500)
    instance: str | None = Field(
        default=None,
        max_length=MAX_INSTANCE,
        description="The request path (no query string); left out when longer than "
        f"{MAX_INSTANCE} characters.",
    )
    errors: list[FieldProblem] | None = Field(
        default=None,
        max_length=MAX_FIELD_PROBLEMS,
        description=f"For validation problems: each field and the rule it broke (the first "
        f"{MAX_FIELD_PROBLEMS}).",
    )


class CRMError(Exception):
    """Base of every domain error. Subclasses fix status, slug and title."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"
    # True for errors whose request must still commit (e.g. a failed sign-in's throttling).
    keeps_changes: bool = False
    # For refusals that must leave a trace but nothing else: the request's changes are rolled
    # back, then this notes what to keep (an audit event) and that alone is committed.
    after_rollback: Callable[[AsyncSession], None] | None = None
    # Answered no sooner than this many seconds after the route began (a failed sign-in:
    # how long the work took must not tell which failure it was).
    min_seconds: float = 0.0

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(CRMError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(CRMError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None):
        super().__init__(
            detail or "Send `Authorization: Bearer <access token>`.",
            headers={"WWW-Authenticate": 'Bearer realm="crm-service"'},
        )


class InvalidToken(Unauthorized):
    slug, title = "invalid-token", "Invalid or expired token"

    def __init__(self, detail: str | None = None):
        CRMError.__init__(
            self,
            detail or "The access token is unknown, expired or revoked; sign in again.",
            headers={"WWW-Authenticate": 'Bearer realm="crm-service", error="invalid_token"'},
        )


class Forbidden(CRMError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(CRMError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(CRMError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"

    def __init__(self, allowed: Sequence[str]):
        # RFC 9110 §15.5.6: a 405 lists every method the path answers.
        listed = ", ".join(allowed)
        super().__init__(f"This path answers {listed}.", headers={"Allow": listed})


class Conflict(CRMError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(CRMError):
    status, slug, title = 410, "erased", "Erased"


class Blocklisted(CRMError):
    """An email or phone number of an erased data subject (the blocklist); never says which."""

    status, slug, title = 409, "blocklisted", "Blocklisted"


class PreconditionFailed(CRMError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PayloadTooLarge(CRMError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class ValidationFailed(CRMError):
    status, slug, title = 422, "validation-failed", "Validation failed"

    def __init__(self, detail: str | None = None, *, errors: list[FieldProblem] | None = None):
        super().__init__(detail)
        self.errors = errors


class Locked(CRMError):
    status, slug, title = 423, "locked", "Locked"


class ProcessingLocked(Locked):
    """The record's data subject has not answered a consent request."""

    slug, title = "processing-locked", "Processing locked"


class ProcessingRestricted(Locked):
    """The record's data subject restricted processing (GDPR Art. 18)."""

    slug, title = "processing-restricted", "Processing restricted"


class TooManyRequests(CRMError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(CRMError):
    status, slug, title = 503, "unavailable", "Service unavailable"


_STATUS_ERRORS: dict[int, type[CRMError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        Gone,
        PreconditionFailed,
        PayloadTooLarge,
        ValidationFailed,
        Locked,
        TooManyRequests,
        ServiceUnavailable,
    )
}


def problem_response(
    request_path: str | None,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE_PREFIX + slug,
        title=title,
        status=status,
        detail=detail[:500] if detail else detail,
        instance=request_path if request_path and len(request_path) <= MAX_INSTANCE else None,
        errors=errors[:MAX_FIELD_PROBLEMS] if errors else errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def render(request_path: str | None, error: CRMError) -> JSONResponse:
    return problem_response(
        request_path,
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        errors=getattr(error, "errors", None),
        headers=error.headers,
    )


def _field_problems(raw_errors: list[dict[str, Any]]) -> list[FieldProblem]:
    problems = []
    for err in raw_errors:
        location = ".".join(str(part) for part in err.get("loc", ()))
        # A location can name an unknown key the client sent; it is cut, never echoed whole.
        if len(location) > MAX_LOCATION:
            location = location[: MAX_LOCATION - 1] + "…"
        rule = str(err.get("type", "invalid"))
        # pydantic messages describe the rule ("String should have at most 100 characters");
        # the input itself (`err["input"]`) is dropped. Parsing messages append what they
        # found ("invalid character: found `n` at 0"), so only their first clause is kept.
        message = str(err.get("msg", "invalid value"))
        if rule.endswith("_parsing"):
            message = message.split(",", 1)[0].split(":", 1)[0]
        # An enum's message lists every allowed value; past the bound it is cut.
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        problems.append(FieldProblem(field=location, rule=rule, message=message))
    return problems


async def _crm_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CRMError)
    return render(request.url.path, exc)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = ValidationFailed(
        "The request does not match the schema; see `errors`.",
        errors=_field_problems(list(exc.errors())),
    )
    return render(request.url.path, error)


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_class = _STATUS_ERRORS.get(exc.status_code)
    if error_class is not None:
        slug, title = error_class.slug, error_class.title
    else:
        slug, title = "http-error", "HTTP error"
    # Starlette fills `detail` with the status phrase when none is given; only ours are kept.
    detail = exc.detail if exc.detail and exc.detail != title else None
    return problem_response(
        request.url.path,
        status=exc.status_code,
        slug=slug,
        title=title,
        detail=detail,
        headers=dict(exc.headers or {}),
    )


async def _integrity_handler(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message names the column values involved; it is never shown or logged.
    logger.warning("integrity_conflict", error_type=type(exc).__name__)
    return render(request.url.path, Conflict("The change conflicts with existing data."))


async def _stale_handler(request: Request, exc: Exception) -> JSONResponse:
    return render(
        request.url.path,
        PreconditionFailed("The record was changed by someone else; fetch it and retry."),
    )


async def _database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached (or has no schema yet) is a 503 the client may retry,
    not a 500; the log says why. Any other database error goes on to the last-resort 500."""
    reason = unreachable_reason(exc)
    if reason is None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        # No pre-ping (a round trip per checkout): a connection the server dropped is found
        # by the request that meets it; the pool discards it and the next request is served.
        reason = "the server closed a pooled connection; it was replaced"
    if reason is None and (table := missing_table(exc)) is not None:
        reason = f"table {table} is missing: run `crm-service migrate`"
    if reason is None:
        raise exc
    logger.error("database_unavailable", reason=reason)
    return render(
        request.url.path,
        ServiceUnavailable(
            "The database is unavailable; try again shortly.", headers={"Retry-After": "5"}
        ),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Domain, validation, HTTP and database errors. Anything else is answered (500, logged
    without its message, never re-raised) by `log.RequestContextMiddleware`."""
    app.add_exception_handler(CRMError, _crm_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(IntegrityError, _integrity_handler)
    app.add_exception_handler(StaleDataError, _stale_handler)
    for unavailable in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(unavailable, _database_unavailable_handler)


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be decoded as the declared media type",
    401: "Missing, invalid or expired credentials",
    403: "Authenticated but not allowed (scope, right, or an IP allowlist)",
    404: "Not found (or not visible to the caller)",
    405: "The path does not support this method; `Allow` lists those it does",
    409: "Conflict with existing data or state",
    410: "The record's data subject was erased; its values are gone",
    412: "If-Match did not match the current ETag",
    413: "Request body too large",
    422: "Invalid input; `errors` names each field and rule",
    423: "The record's data subject is locked for processing (`processing-locked`: a "
    "consent request is unanswered) or restricted (`processing-restricted`, GDPR Art. 18)",
    429: "Rate limited",
    500: "An unexpected error; details are logged under the request id, never answered",
    503: "A dependency is unavailable",
}


def problem_response_doc(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json error (its only media type)."""
    return {
        "description": PROBLEM_DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json errors for a route."""
    return {status: problem_response_doc(status) for status in statuses}
