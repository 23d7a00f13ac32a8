"""The public pages: search, one result behind its safety wall, reports, and thumbnails.

Sensitive results are shown only to whoever opts in, blurred unless they turn blurring off. A
blurred card carries no title or creator in the page: they wait in a ``<template>`` (inert,
unread by screen readers) until the visitor reveals that one card.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mediaguard.errors import InvalidInputError, RateLimitedError
from mediaguard.store.items import ItemInfo
from mediaguard.web import (
    PageRoute,
    client_address,
    local_path,
    render,
    same_origin,
    service_of,
)
from mediaguard.web.images import thumbnail_response

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 20
REPORT_REASONS = {
    "sensitive": "It contains sensitive content",
    "copyright": "It infringes copyright",
    "other": "Something else (describe it below)",
}


@dataclass(frozen=True)
class Browse:
    """What the visitor searched for, and their sensitive-content choices."""

    query: str
    include_sensitive: bool
    blur: bool

    def url(self, page: int = 1) -> str:
        params: dict[str, str | int] = {"q": self.query}
        if self.include_sensitive:
            params["include_sensitive"] = "on"
            if not self.blur:
                params["blur"] = "off"
        if page > 1:
            params["page"] = page
        return "/search?" + urlencode(params)

    def item_url(self, item_id: int, page: int) -> str:
        params = {"back": self.url(page)}
        if self.include_sensitive and not self.blur:
            params["blur"] = "off"
        return f"/media/{item_id}?" + urlencode(params)


def _page_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError("the page must be a number") from None


@router.get("/", response_class=HTMLResponse)
@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request, q: str = "", page: str = "1", include_sensitive: str = ""
) -> HTMLResponse:
    # The form sends a hidden blur=off before the checkbox's blur=on: checked wins.
    blur_values = request.query_params.getlist("blur")
    browse = Browse(
        query=q,
        include_sensitive=include_sensitive == "on",
        blur="on" in blur_values or "off" not in blur_values,
    )
    context = {"browse": browse, "query": q, "error": None, "found": None, "cards": []}
    try:
        number = _page_number(page)
        service = service_of(request)
        found = service.catalogue.search(
            q,
            page=number,
            page_size=min(PAGE_SIZE, service.settings.search_max_page_size),
            include_sensitive=browse.include_sensitive,
        )
    except InvalidInputError as exc:
        return render(request, "search.html", {**context, "error": exc.message}, status=400)
    cards = [
        {
            "item": item,
            "url": browse.item_url(item.id, number),
            "sensitive": bool(item.sensitivity),
            "blurred": bool(item.sensitivity) and browse.blur,
        }
        for item in found.results
    ]
    pages = {
        "previous": browse.url(number - 1) if number > 1 else None,
        "next": browse.url(number + 1) if number < found.page_count else None,
    }
    return render(
        request, "search.html", {**context, "found": found, "cards": cards, "pages": pages}
    )


@router.get("/media/{item_id}", response_class=HTMLResponse)
def media_page(
    request: Request,
    item_id: int,
    show: str = "",
    back: str = "",
    blur: str = "",
    reported: str = "",
) -> HTMLResponse:
    item = service_of(request).catalogue.item(item_id)
    return _media_page(
        request,
        item,
        back=local_path(back, "/"),
        revealed=show == "1" or blur == "off",
        reported=reported == "1",
    )


@router.post("/media/{item_id}/report", dependencies=[Depends(same_origin)])
def report(
    request: Request,
    item_id: int,
    reason: str = Form(""),
    description: str = Form(""),
    back: str = Form(""),
) -> Response:
    service = service_of(request)
    item = service.catalogue.item(item_id)  # only what the public can see can be reported here
    back = local_path(back, "/")
    form = {"reason": reason, "description": description}
    try:
        service.review.report(
            item_id, reason, description, reporter=f"ip:{client_address(request)}"
        )
    except (InvalidInputError, RateLimitedError) as exc:
        headers = {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after)
        return _media_page(
            request,
            item,
            back=back,
            revealed=False,
            form=form,
            error=exc.message,
            status=exc.status,
            headers=headers,
        )
    query = urlencode({"reported": "1", "back": back})
    return RedirectResponse(f"/media/{item_id}?{query}", status_code=303)


@router.get("/media/{item_id}/image")
def media_image(request: Request, item_id: int) -> Response:
    service = service_of(request)
    item = service.catalogue.item(item_id)
    return thumbnail_response(service, item, cache="private, max-age=300")


def _media_page(
    request: Request,
    item: ItemInfo,
    *,
    back: str,
    revealed: bool,
    reported: bool = False,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    sensitive = bool(item.sensitivity)
    here = {"back": back} if back != "/" else {}
    return render(
        request,
        "media.html",
        {
            "item": item,
            "back": back,
            "sensitive": sensitive,
            "walled": sensitive and not revealed,
            "show_url": f"/media/{item.id}?" + urlencode({**here, "show": "1"}),
            "hide_url": f"/media/{item.id}" + (f"?{urlencode(here)}" if here else ""),
            "reported": reported,
            "reasons": REPORT_REASONS,
            "form": form or {"reason": "", "description": ""},
            "report_error": error,
        },
        status=status,
        headers=headers,
    )
