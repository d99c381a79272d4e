"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

`type` is the stable code from the area's `ErrorCode` (e.g. `insufficient_points`), `title` the HTTP
phrase, `detail` a message for people; extra members carry the error's details. A request that
fails validation gets `validation_error` with one entry per field in `errors`, named by location
(`body.lines.0.amount`, `query.limit`, `header.idempotency-key`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from kizuna.core.errors import KizunaError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("kizuna.api")


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem; members beyond these depend on the `type`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON of a problem."""
    return {"type": code, "title": _title(status), "status": status, "detail": detail, **extra}


def problem_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem as a response."""
    return JSONResponse(
        problem_body(status, code, detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def from_error_dict(stored: dict[str, Any]) -> JSONResponse:
    """A problem response from `KizunaError.to_dict()` (live or replayed from idempotency)."""
    data = dict(stored)
    status = int(data.pop("status", 400))
    code = str(data.pop("code", "error"))
    detail = str(data.pop("message", ""))
    headers = None
    if "retry_after" in data:
        headers = {"Retry-After": str(max(1, int(float(data["retry_after"]) + 0.999)))}
    elif code == "idempotency_in_progress":
        headers = {"Retry-After": "1"}  # the first attempt is a short transaction
    return problem_response(status, code, detail, headers=headers, **data)


def _field(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "request"


async def _kizuna_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, KizunaError)
    return from_error_dict(error.to_dict())


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"field": _field(tuple(item.get("loc", ()))), "message": str(item.get("msg", "invalid"))}
        for item in error.errors()
    ]
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors)
    return problem_response(422, "validation_error", detail or "invalid request", errors=errors)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}
    return problem_response(
        error.status_code,
        codes.get(error.status_code, "http_error"),
        str(error.detail),
        headers=dict(error.headers or {}),
    )


async def _data_error(request: Request, error: Exception) -> JSONResponse:
    # PostgreSQL refuses text it cannot store (a NUL character, \u0000, in a JSON or text field):
    # that is bad input, refused whole — the write transaction has already rolled back.
    assert isinstance(error, DBAPIError)
    if "Unicode escape" in str(error.orig) or "0x00" in str(error.orig):
        return problem_response(422, "invalid_text", "text must not contain NUL characters")
    return await _unexpected(request, error)


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=error)
    return problem_response(500, "internal_error", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    """Register the problem handlers on `app`."""
    app.add_exception_handler(KizunaError, _kizuna_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _data_error)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_CONTENT: dict[str, Any] = {
    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
}

# Documented on every /v1 route so that clients (and schemathesis) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": _title(status), "content": PROBLEM_CONTENT}
    for status in (400, 401, 403, 404, 409, 422, 429)
}
