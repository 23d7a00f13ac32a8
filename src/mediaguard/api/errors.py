"""Errors become responses here and only here: JSON bodies, plain text on nsfwoid's routes."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mediaguard.errors import MediaguardError, RateLimitedError, http_status
from mediaguard.logs import get_logger

log = get_logger("mediaguard.api")

# nsfwoid answered in plain text; its clients parse the body as a float or an error line.
PLAIN_TEXT_ROUTES = frozenset({"/", "/v1/score"})


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


# HMA's clients read an error's text from `message`.
HMA_PREFIXES = ("/h/", "/m/", "/c/")


def error_response(request: Request, status: int, code: str, detail: object) -> Response:
    if request.url.path in PLAIN_TEXT_ROUTES and not wants_json(request):
        return PlainTextResponse(f"{status} {code}: {detail}\n", status_code=status)
    body: dict[str, object] = {"error": code, "detail": detail}
    if request.url.path.startswith(HMA_PREFIXES):
        body["message"] = detail if isinstance(detail, str) else str(detail)
    return JSONResponse(body, status_code=status)


async def _mediaguard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MediaguardError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after)}
    response = error_response(request, http_status(exc), exc.code, exc.message)
    if headers:
        response.headers.update(headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return error_response(request, 400, "invalid_input", problems)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, exc.detail)


async def _out_of_range(request: Request, exc: Exception) -> Response:
    """A number the database cannot hold (an id past its integer type): no such thing."""
    return error_response(request, 400, "invalid_input", "a number in the request is out of range")


async def _database_error(request: Request, exc: Exception) -> Response:
    log.warning("database_unavailable", path=request.url.path, error=str(exc).splitlines()[0])
    return error_response(
        request, 503, "unavailable", "the database is unavailable; nothing was stored, retry"
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(request, 500, "internal", "internal error; see the service log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MediaguardError, _mediaguard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(sa.exc.DataError, _out_of_range)  # PostgreSQL
    app.add_exception_handler(OverflowError, _out_of_range)  # SQLite
    app.add_exception_handler(sa.exc.DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
