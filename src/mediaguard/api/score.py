"""nsfwoid's scoring routes: `POST /` and `POST /v1/score`, the score as text/plain by default."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mediaguard.api.deps import get_service, scoring_access
from mediaguard.api.errors import wants_json
from mediaguard.api.intake import MEDIA_REQUEST_BODY, read_media
from mediaguard.config import NsfwMode
from mediaguard.service import ScoreResult, Service

router = APIRouter(tags=["scoring"], dependencies=[Depends(scoring_access)])

_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "model": ScoreResult,
        "description": "The score as text/plain (nsfwoid); JSON with `Accept: application/json`.",
        "content": {"text/plain": {"example": "0.006064464803785086"}},
    },
    400: {"description": "missing url/file, or a refused URL"},
    413: {"description": "image over the byte or pixel limit"},
    415: {"description": "not an image"},
    502: {"description": "the URL could not be fetched"},
    504: {"description": "the URL's host was too slow"},
}


async def score(
    request: Request, mode: NsfwMode | None = None, service: Service = Depends(get_service)
) -> Response:
    """Score an image given by `url`, multipart `file`, or as the raw body (image/*).

    `mode=exact|fast` overrides the configured model mode for this request."""
    media = await read_media(request, service.settings.max_image_bytes)
    if media.content is not None:
        result = await run_in_threadpool(service.score_bytes, media.content, mode=mode)
    else:
        assert media.url is not None
        result = await run_in_threadpool(service.score_url, media.url, mode=mode)
    if wants_json(request):
        return JSONResponse(result.model_dump(mode="json"))
    return PlainTextResponse(str(result.score))


for _path, _name in (("/", "score_root"), ("/v1/score", "score")):
    router.add_api_route(
        _path,
        score,
        methods=["POST"],
        name=_name,
        summary="Score one image (nsfwoid-compatible)",
        openapi_extra={"requestBody": MEDIA_REQUEST_BODY},
        responses=_RESPONSES,
        response_model=None,
    )
