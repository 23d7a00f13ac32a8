"""Server-rendered pages: the public catalogue (``public``) and the reviewers' console
(``console``). Jinja2 templates, one CSS and one JS file, no build step.

Page routes use :class:`PageRoute`, so errors become HTML pages with their status instead of the
API's JSON bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mediaguard import __version__
from mediaguard.errors import MediaguardError, PermissionDeniedError, RateLimitedError
from mediaguard.service import Service

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

SENSITIVITY_REASONS = {
    "sensitive_text": "Its title, description or tags contain sensitive words.",
    "sensitive_image": "An automatic check found the image may be sensitive.",
    "user_reported_sensitivity": "Users reported it and a reviewer confirmed it.",
}

# Each page sets what the browser may load: only this origin, no inline script or style.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# The store hands back timezone-aware UTC datetimes on every backend (UTCDateTime).
def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = _when
templates.filters["iso"] = _iso
templates.globals["version"] = __version__
templates.globals["sensitivity_reasons"] = SENSITIVITY_REASONS


class Redirect(Exception):
    """Raised by a dependency to answer with a 303 to ``location``."""

    def __init__(self, location: str, *, clear_cookie: str | None = None) -> None:
        super().__init__(location)
        self.location = location
        self.clear_cookie = clear_cookie


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    values = {"request": request, "reviewer": None, **(context or {})}
    html = templates.get_template(name).render(values)
    response = HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS})
    if request.url.path.startswith("/review"):
        response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers or {})
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {
        400: "Something is wrong with the request",
        401: "Sign-in needed",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        429: "Too many requests",
    }
    return render(
        request,
        "error.html",
        {"status": status, "title": titles.get(status, "Something went wrong"), "message": message},
        status=status,
    )


class PageRoute(APIRoute):
    """Turns mediaguard's errors, bad parameters and :class:`Redirect` into pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Redirect as redirect:
                response = RedirectResponse(redirect.location, status_code=303)
                if redirect.clear_cookie:
                    response.delete_cookie(redirect.clear_cookie, path="/review")
                return response
            except MediaguardError as exc:
                page = error_page(request, exc.status, exc.message)
                if isinstance(exc, RateLimitedError):
                    page.headers["Retry-After"] = str(exc.retry_after)
                return page
            except RequestValidationError as exc:
                # A path that is not a number names no page; anything else is a bad request.
                if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
                    return error_page(request, 404, "There is no such page.")
                return error_page(request, 400, "Some of the request's fields are not valid.")

        return page_handler


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _endpoint(netloc: str, scheme: str) -> tuple[str | None, int | None]:
    parts = urlsplit("//" + netloc)
    return parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme)


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site: its ``Origin`` names another host or port."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    try:
        same = bool(parts.netloc) and _endpoint(parts.netloc, parts.scheme) == _endpoint(
            host, parts.scheme
        )
    except ValueError:  # a port that is not a number
        same = False
    if not same:
        raise PermissionDeniedError("forms posted from another site are refused")


def local_path(value: str | None, default: str, *, prefix: str = "/") -> str:
    """``value`` when it is a path on this site under ``prefix``, else ``default``: never an
    address elsewhere (``//host``, ``/\\host`` or a scheme)."""
    if not value or not value.startswith(prefix) or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    return value


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
