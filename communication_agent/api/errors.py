"""The one place where domain errors become HTTP responses.

Every error body has the same shape, `{"error": {"code", "message", "details"}}`, so a client
needs one error path, and every message says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from communication_agent.adapters.mail_provider import ProviderError
from communication_agent.api.console import error_page, is_console_request, login_redirect
from communication_agent.core.logging import get_logger
from communication_agent.services.assistant import ModelFailedError
from communication_agent.services.errors import (
    AuthenticationError,
    ConflictError,
    DomainError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TooManyAttemptsError,
)
from communication_agent.services.sync import SyncFailedError

log = get_logger(__name__)

STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (NotFoundError, 404),
    (InvalidInputError, 422),
    (ConflictError, 409),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (TooManyAttemptsError, 429),
    (SyncFailedError, 502),
    (ModelFailedError, 502),
]


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def _status_for(exc: DomainError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 400


def _describe_validation_error(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", "invalid value"))
    return f"{location}: {message}" if location else message


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        status = _status_for(exc)
        if is_console_request(request):
            if status == 401:
                return login_redirect(request)
            return error_page(request, status, exc.message)
        headers: dict[str, str] | None = None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooManyAttemptsError):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(status, exc.code, exc.message, exc.details, headers=headers)

    @app.exception_handler(ProviderError)
    async def provider_error(_request: Request, exc: ProviderError) -> JSONResponse:
        """A mail provider is unusable (not configured, or failing): say so and why."""
        return error_response(503, "provider_unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        raw = exc.errors()
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in raw
        ]
        message = "; ".join(_describe_validation_error(e) for e in raw)
        if is_console_request(request):
            return error_page(request, 422, f"That request was not valid: {message}.")
        return error_response(
            422, "validation_error", f"Invalid request: {message}.", {"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_console_request(request) and exc.status_code in {404, 405}:
            message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
            return error_page(request, exc.status_code, message)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        """Log the failure with its context and answer without internals; never swallow it."""
        request_id = request.headers.get("x-request-id", "")
        log.error("unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
        return error_response(
            500,
            "internal_error",
            "Something went wrong on our side; it has been logged. Try again, and report the "
            "request id if it keeps happening.",
            {"request_id": request_id},
        )
