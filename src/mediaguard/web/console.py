"""The reviewers' console: sign-in, the queue, one item with its history, decisions, the audit
log.

The reviewer's token is kept in an HttpOnly, SameSite=Strict cookie scoped to ``/review``; every
form post is also refused when its ``Origin`` is another site. Images are blurred and grey until
the reviewer reveals them (their ``mg_blur`` cookie sets the default), and an item that matched a
bank never has its image fetched at all.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mediaguard.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from mediaguard.store.items import ItemInfo, MatchRecord
from mediaguard.store.review import DECISION_ACTIONS
from mediaguard.web import PageRoute, Redirect, local_path, render, same_origin, service_of
from mediaguard.web.images import thumbnail_response

router = APIRouter(prefix="/review", route_class=PageRoute, include_in_schema=False)

SESSION_COOKIE = "mg_review"
BLUR_COOKIE = "mg_blur"
QUEUE_PAGE = 50
AUDIT_PAGE = 50
_LABELS = {
    "marked_sensitive": "Mark sensitive",
    "deindexed_sensitive": "Deindex: sensitive",
    "deindexed_copyright": "Deindex: copyright",
    "rejected_reports": "Reject reports",
    "deduplicated_reports": "Reports are duplicates",
    "reversed_mark_sensitive": "Undo mark sensitive",
    "reversed_deindex": "Undo deindex",
}
ACTION_LABELS: dict[str, str] = {action: _LABELS.get(action, action) for action in DECISION_ACTIONS}


def current_reviewer(request: Request) -> str:
    """The signed-in reviewer's name; anyone else is sent to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            return service_of(request).authorize(token, ("reviewer",)).name
        except (AuthenticationError, PermissionDeniedError):
            pass
    wanted = _address(request) if request.method == "GET" else "/review"
    raise Redirect(
        "/review/login?" + urlencode({"return_to": wanted}),
        clear_cookie=SESSION_COOKIE if token else None,
    )


def _address(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _blur_default(request: Request) -> bool:
    return request.cookies.get(BLUR_COOKIE) != "off"


def _as_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def _console(
    request: Request, name: str, reviewer: str, context: dict[str, Any], **kw: Any
) -> HTMLResponse:
    # A page rendered by a post has no address to come back to.
    here = _address(request) if request.method == "GET" else "/review"
    values = {
        "reviewer": reviewer,
        "blur_default": _blur_default(request),
        "here": local_path(here, "/review", prefix="/review"),
        "actions": ACTION_LABELS,
        "withheld": withheld,
        "as_json": _as_json,
        "notice": None,
        "error": None,
        **context,
    }
    return render(request, name, values, **kw)


# -- sign-in -------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, return_to: str = "") -> HTMLResponse:
    return render(
        request,
        "review_login.html",
        {"return_to": local_path(return_to, "/review", prefix="/review"), "error": None},
    )


@router.post("/login", dependencies=[Depends(same_origin)])
def login(request: Request, token: str = Form(""), return_to: str = Form("")) -> Response:
    return_to = local_path(return_to, "/review", prefix="/review")
    token = token.strip()
    try:
        service_of(request).authorize(token, ("reviewer",))
    except (AuthenticationError, PermissionDeniedError) as exc:
        message = "That token is not valid."
        if isinstance(exc, PermissionDeniedError):
            message = "That token does not have the reviewer role."
        context = {"return_to": return_to, "error": message}
        return render(request, "review_login.html", context, status=exc.status)
    response = _redirect(return_to)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", dependencies=[Depends(same_origin)])
def logout(request: Request) -> Response:
    response = _redirect("/review/login")
    response.delete_cookie(
        SESSION_COOKIE,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/preferences", dependencies=[Depends(same_origin)])
def preferences(
    request: Request,
    reviewer: str = Depends(current_reviewer),
    blur: str = Form(""),
    return_to: str = Form(""),
) -> Response:
    response = _redirect(local_path(return_to, "/review", prefix="/review"))
    response.set_cookie(
        BLUR_COOKIE,
        "on" if blur == "on" else "off",
        max_age=365 * 24 * 3600,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


# -- the queue -----------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def queue_page(
    request: Request,
    reviewer: str = Depends(current_reviewer),
    offset: int = 0,
    done: int | None = None,
    empty: str = "",
) -> HTMLResponse:
    notice = None
    if done is not None:
        notice = _decision_notice(request, done)
    elif empty == "1":
        notice = "Nothing else is free to review: any item left is being reviewed."
    return _queue_page(request, reviewer, offset=max(offset, 0), notice=notice)


def _queue_page(
    request: Request,
    reviewer: str,
    *,
    offset: int = 0,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    found = service_of(request).review.queue(
        reviewer, limit=QUEUE_PAGE, offset=offset, include_locked=True
    )
    pages = {
        "previous": f"/review?offset={max(offset - QUEUE_PAGE, 0)}" if offset > 0 else None,
        "next": f"/review?offset={offset + QUEUE_PAGE}"
        if offset + QUEUE_PAGE < found.total
        else None,
    }
    context = {"found": found, "notice": notice, "error": error, "pages": pages}
    return _console(request, "review_queue.html", reviewer, context, status=status)


def _decision_notice(request: Request, decision_id: int) -> str | None:
    found = service_of(request).review.decisions(before_id=decision_id + 1, limit=1)
    if not found or found[0].id != decision_id:
        return None
    decision = found[0]
    items = ", ".join(f"#{item_id}" for item_id in decision.item_ids)
    label = ACTION_LABELS.get(decision.action, decision.action)
    return f"Decision {decision.id} recorded: “{label}” for item {items}."


@router.post("/next", dependencies=[Depends(same_origin)])
def review_next(request: Request, reviewer: str = Depends(current_reviewer)) -> Response:
    claimed = service_of(request).review.claim_next(reviewer)
    if not claimed:
        return _redirect("/review?empty=1")
    return _redirect(f"/review/media/{claimed[0].item.id}")


@router.post("/decisions", dependencies=[Depends(same_origin)])
def decide(
    request: Request,
    reviewer: str = Depends(current_reviewer),
    media_ids: list[str] = Form(default_factory=list),
    action: str = Form(""),
    notes: str = Form(""),
    page: str = Form("queue"),
) -> Response:
    try:
        ids = [int(value) for value in media_ids]
    except ValueError:
        ids = []
    try:
        if not ids:
            raise InvalidInputError("Select at least one item.")
        decision = service_of(request).review.decide(ids, action, reviewer=reviewer, notes=notes)
    except (InvalidInputError, ConflictError, NotFoundError) as exc:
        if page == "item" and len(ids) == 1 and not isinstance(exc, NotFoundError):
            return _item_page(request, reviewer, ids[0], error=exc.message, status=exc.status)
        return _queue_page(request, reviewer, error=exc.message, status=exc.status)
    return _redirect(f"/review?done={decision.id}")


# -- one item ------------------------------------------------------------------------------


@router.get("/media/{item_id}", response_class=HTMLResponse)
def item_page(
    request: Request, item_id: int, reviewer: str = Depends(current_reviewer)
) -> HTMLResponse:
    review = service_of(request).review
    # Held by another reviewer: the page says who, and disables the decisions.
    with contextlib.suppress(ConflictError):
        review.lock(item_id, reviewer)
    return _item_page(request, reviewer, item_id)


def _item_page(
    request: Request,
    reviewer: str,
    item_id: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    found = service_of(request).review.item(item_id)
    item = found.item
    held_by_other = found.lock is not None and found.lock.reviewer != reviewer
    disabled = {
        "reversed_mark_sensitive": not item.reported_sensitive,
        "reversed_deindex": item.deindexed is None,
    }
    context = {
        "found": found,
        "item": item,
        "held_by_other": held_by_other,
        "disabled": disabled,
        "visibility": _visibility(item, service_of(request).catalogue.is_public(item.id)),
        "entries": found.audit,
        "error": error,
    }
    return _console(request, "review_item.html", reviewer, context, status=status)


def _visibility(item: ItemInfo, public: bool) -> str:
    if public:
        if item.sensitivity:
            return "Yes, as a sensitive result (only to those who opt in)"
        return "Yes"
    if item.deindexed:
        return f"No: deindexed ({item.deindexed})"
    if item.match_status == "match":
        return "No: it matched a bank"
    if item.state == "done" and item.terms_version is None:
        return "No: its new metadata waits for the sensitive-term labels"
    return f"No: its processing is not done ({item.state})"


@router.post("/media/{item_id}/release", dependencies=[Depends(same_origin)])
def release(request: Request, item_id: int, reviewer: str = Depends(current_reviewer)) -> Response:
    service_of(request).review.release(item_id, reviewer)
    return _redirect("/review")


def withheld(item: ItemInfo, matches: list[MatchRecord]) -> str | None:
    """Why the image is not shown, if it is not: reviewers see an image only once the banks
    were checked and none matched."""
    if matches:
        banks = ", ".join(f"{match.bank_name} ({match.category})" for match in matches)
        return f"Image withheld: it matched bank {banks}."
    if item.match_status == "match":
        return "Image withheld: it matched a bank."
    if item.match_status != "no_match":
        return "Image withheld until the item is checked against the banks."
    if not item.media_url:
        return "No preview: the item has no image address."
    return None


@router.get("/media/{item_id}/image")
def item_image(
    request: Request, item_id: int, reviewer: str = Depends(current_reviewer)
) -> Response:
    service = service_of(request)
    item = service.store.items.get(item_id)
    if withheld(item, service.store.items.matches(item_id)) or not item.media_url:
        raise NotFoundError(f"no image is shown for media item {item_id}")
    # Not kept in the browser's cache: a shared machine keeps nothing after signing out.
    return thumbnail_response(service, item, cache="no-store")


# -- audit ---------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, reviewer: str = Depends(current_reviewer), before_id: int | None = None
) -> HTMLResponse:
    entries = service_of(request).store.audit.list(before_id=before_id, limit=AUDIT_PAGE)
    older = None
    if len(entries) == AUDIT_PAGE:
        older = f"/review/audit?before_id={entries[-1].id}"
    context = {
        "entries": entries,
        "older": older,
        "newest": before_id is not None,
    }
    return _console(request, "review_audit.html", reviewer, context)
