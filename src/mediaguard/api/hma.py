"""Hasher-Matcher-Actioner's routes and shapes, so HMA's clients can point here unchanged.

Differences, all additions: bank changes need an `admin` token; a bank also has a category, its
own PDQ threshold and an action policy; lookups add each match's stored `metadata`; disabled
banks and content never match, on `raw_lookup` too.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mediaguard.api.deps import get_service, require, scoring_access
from mediaguard.api.intake import MediaInput, read_media
from mediaguard.banks.hashes import SIGNAL_TYPES, normalize_hash
from mediaguard.banks.matcher import BankMatch
from mediaguard.errors import InvalidInputError, MissingInputError
from mediaguard.service import Service
from mediaguard.signals.hashes import MediaHashes
from mediaguard.signals.pdq import DEFAULT_THRESHOLD, hamming_distance
from mediaguard.store import TokenInfo
from mediaguard.store.banks import BankInfo

router = APIRouter(tags=["HMA compatible"])
_FILE_FIELDS = ("photo", "file")
_admin = require("admin")
_curator = require("admin", "reviewer")


def bank_json(bank: BankInfo) -> dict[str, Any]:
    return {
        "name": bank.name,
        "matching_enabled_ratio": 1.0 if bank.enabled else 0.0,
        "enabled": bank.enabled,
        "category": bank.category,
        "pdq_threshold": bank.pdq_threshold,
        "actions": list(bank.actions) if bank.actions is not None else None,
    }


def _by_bank(matches: list[BankMatch]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for match in matches:
        grouped.setdefault(match.bank, []).append(
            {
                "bank_content_id": match.content_id,
                "distance": str(match.distance),
                "metadata": match.metadata,
            }
        )
    return grouped


def _banks_param(request: Request) -> set[str] | None:
    raw = request.query_params.get("banks")
    return {name.strip() for name in raw.split(",") if name.strip()} if raw else None


def _signal(request: Request) -> tuple[str, str]:
    signal_type = request.query_params.get("signal_type")
    signal = request.query_params.get("signal")
    if not signal_type or not signal:
        raise MissingInputError("either url, or both signal_type and signal, are required")
    return signal_type, normalize_hash(signal_type, signal)


async def _hash_request(request: Request, service: Service, *, get: bool) -> MediaHashes:
    if get:
        url = request.query_params.get("url")
        if not url:
            raise MissingInputError("url is required")
        media = MediaInput(url=url)
    else:
        media = await read_media(
            request, service.settings.max_image_bytes, file_fields=_FILE_FIELDS
        )
    if media.content is not None:
        return await run_in_threadpool(service.hash_bytes, media.content)
    assert media.url is not None
    return await run_in_threadpool(service.hash_url, media.url)


async def _lookup_all(request: Request, service: Service, hashes: MediaHashes) -> Response:
    quality = hashes.pdq.quality if hashes.pdq else None
    matches = await run_in_threadpool(
        service.match, hashes.signals(), pdq_quality=quality, banks=_banks_param(request)
    )
    answer: dict[str, Any] = {
        signal_type: _by_bank([m for m in matches if m.signal_type == signal_type])
        for signal_type in hashes.signals()
    }
    selected = request.query_params.get("signal_type")
    if selected:
        return JSONResponse(answer.get(selected, {}))
    return JSONResponse(answer)


# hashing


@router.get("/h/hash", dependencies=[Depends(scoring_access)], summary="Hash a URL's image")
async def hash_get(request: Request, service: Service = Depends(get_service)) -> Response:
    return JSONResponse((await _hash_request(request, service, get=True)).signals())


@router.post("/h/hash", dependencies=[Depends(scoring_access)], summary="Hash an uploaded image")
async def hash_post(request: Request, service: Service = Depends(get_service)) -> Response:
    return JSONResponse((await _hash_request(request, service, get=False)).signals())


# matching


@router.get("/m/lookup", dependencies=[Depends(scoring_access)], summary="Match a URL or a hash")
async def lookup_get(request: Request, service: Service = Depends(get_service)) -> Response:
    if request.query_params.get("url"):
        return await _lookup_all(request, service, await _hash_request(request, service, get=True))
    signal_type, value = _signal(request)
    matches = await run_in_threadpool(
        service.match, {signal_type: value}, banks=_banks_param(request)
    )
    return JSONResponse(_by_bank(matches))


@router.post("/m/lookup", dependencies=[Depends(scoring_access)], summary="Match an upload")
async def lookup_post(request: Request, service: Service = Depends(get_service)) -> Response:
    return await _lookup_all(request, service, await _hash_request(request, service, get=False))


@router.get("/m/raw_lookup", dependencies=[Depends(scoring_access)], summary="Match one hash")
async def raw_lookup(request: Request, service: Service = Depends(get_service)) -> Response:
    signal_type, value = _signal(request)
    matches = await run_in_threadpool(
        service.match, {signal_type: value}, banks=_banks_param(request)
    )
    if request.query_params.get("include_distance", "false").lower() in ("1", "true", "yes"):
        found: list[Any] = [
            {"bank_content_id": m.content_id, "distance": str(m.distance)} for m in matches
        ]
    else:
        found = [m.content_id for m in matches]
    return JSONResponse({"matches": found})


@router.post("/m/compare", dependencies=[Depends(scoring_access)], summary="Compare hash pairs")
async def compare(request: Request) -> Response:
    body = await _json_object(request)
    answer: dict[str, Any] = {}
    for signal_type, pair in body.items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidInputError(f"{signal_type}: expected a list of exactly 2 hashes")
        left, right = (normalize_hash(signal_type, str(value)) for value in pair)
        if signal_type == "pdq":
            distance = hamming_distance(left, right)
            answer[signal_type] = [distance <= DEFAULT_THRESHOLD, {"distance": distance}]
        else:
            answer[signal_type] = [left == right, {"distance": 0 if left == right else 1}]
    return JSONResponse(answer)


# curation


@router.get("/c/banks", summary="List banks")
async def banks_list(
    _: TokenInfo = Depends(_curator), service: Service = Depends(get_service)
) -> Response:
    banks = await run_in_threadpool(service.banks.all)
    return JSONResponse([bank_json(bank) for bank in banks])


@router.post("/c/banks", summary="Create a bank")
async def bank_create(
    request: Request, token: TokenInfo = Depends(_admin), service: Service = Depends(get_service)
) -> Response:
    body = await _json_object(request)
    name = body.get("name")
    if not isinstance(name, str):
        raise MissingInputError("name is required")
    enabled = _enabled(body, default=True)
    bank = await run_in_threadpool(
        lambda: service.banks.create(
            name,
            category=body.get("category", "other"),
            pdq_threshold=int(body.get("pdq_threshold", DEFAULT_THRESHOLD)),
            enabled=enabled,
            actions=body.get("actions"),
            actor=token.name,
        )
    )
    return JSONResponse(bank_json(bank), status_code=201)


@router.get("/c/bank/{name}", summary="Show a bank")
async def bank_show(
    name: str, _: TokenInfo = Depends(_curator), service: Service = Depends(get_service)
) -> Response:
    return JSONResponse(bank_json(await run_in_threadpool(service.banks.get, name)))


@router.put("/c/bank/{name}", summary="Change a bank")
async def bank_update(
    name: str,
    request: Request,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> Response:
    body = await _json_object(request)
    changes: dict[str, Any] = {
        key: body[key]
        for key in ("name", "category", "pdq_threshold", "actions", "description")
        if key in body
    }
    if "enabled" in body or "enabled_ratio" in body:
        changes["enabled"] = _enabled(body, default=True)
    bank = await run_in_threadpool(service.banks.update, name, changes, actor=token.name)
    return JSONResponse(bank_json(bank))


@router.delete("/c/bank/{name}", summary="Delete a bank")
async def bank_delete(
    name: str, token: TokenInfo = Depends(_admin), service: Service = Depends(get_service)
) -> Response:
    await run_in_threadpool(service.banks.delete, name, actor=token.name)
    return JSONResponse({"message": "Done"})


@router.post("/c/bank/{name}/content", summary="Add an image to a bank")
async def bank_add_content(
    name: str,
    request: Request,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> Response:
    await run_in_threadpool(service.banks.get, name)  # 404 before any fetch
    url = request.query_params.get("url")
    hashes = await _hash_request(request, service, get=bool(url))
    metadata = _metadata_param(request)
    content, _ = await run_in_threadpool(
        lambda: service.banks.add_image(
            name,
            hashes,
            metadata=metadata,
            media_url=metadata.get("content_uri") or url,
            actor=token.name,
        )
    )
    return _added(content.id if content else None, hashes.signals())


@router.post("/c/bank/{name}/signal", summary="Add hashes to a bank")
async def bank_add_signal(
    name: str,
    request: Request,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> Response:
    body = await _json_object(request)
    signals = {str(kind): str(value) for kind, value in body.items()}
    unknown = set(signals) - set(SIGNAL_TYPES)
    if unknown:
        raise InvalidInputError(f"No such signal type {sorted(unknown)[0]}")
    content, _ = await run_in_threadpool(
        lambda: service.banks.add_content(name, signals, actor=token.name)
    )
    normalised = {kind: normalize_hash(kind, value) for kind, value in signals.items()}
    return _added(content.id if content else None, normalised)


@router.delete("/c/bank/{name}/content/{content_id}", summary="Remove content from a bank")
async def bank_remove_content(
    name: str,
    content_id: int,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> Response:
    removed = await run_in_threadpool(
        service.banks.remove_content, name, content_id, actor=token.name
    )
    return JSONResponse({"deleted": removed})


# status


@router.get(
    "/status", summary="Liveness and index readiness (HMA)", response_class=PlainTextResponse
)
async def status(service: Service = Depends(get_service)) -> Response:
    index = service.index_status()
    if not index.ready:
        return PlainTextResponse("INDEX-NOT-LOADED", status_code=503)
    if index.stale:
        return PlainTextResponse("INDEX-STALE", status_code=503)
    return PlainTextResponse("I-AM-ALIVE")


@router.get("/status/live", summary="Liveness only (HMA)", response_class=PlainTextResponse)
async def status_live() -> Response:
    return PlainTextResponse("I-AM-ALIVE")


# helpers


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("the body must be a JSON object")
    return body


def _enabled(body: dict[str, Any], *, default: bool) -> bool:
    if "enabled_ratio" in body:
        try:
            return float(body["enabled_ratio"]) > 0
        except (TypeError, ValueError):
            raise InvalidInputError("enabled_ratio must be a number") from None
    value = body.get("enabled", default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _metadata_param(request: Request) -> dict[str, Any]:
    raw = request.query_params.get("metadata")
    if not raw:
        return {}
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise InvalidInputError("metadata should be a json object")
    unexpected = set(metadata) - {"content_id", "content_uri", "json"}
    if unexpected:
        raise InvalidInputError(
            f"metadata contains unexpected keys: {', '.join(sorted(unexpected))}"
        )
    return metadata


def _added(content_id: int | None, signals: dict[str, str]) -> Response:
    if content_id is None:
        return JSONResponse(
            {"error": "conflict", "message": "every hash is in the bank already"},
            status_code=409,
        )
    return JSONResponse({"id": content_id, "signals": signals})
