"""Liveness, readiness and metrics (plus nsfwoid's `GET /v1/` and `GET /v1/metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from mediaguard.api.deps import get_service
from mediaguard.service import Service

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Never touches the database or the model."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database down or model not loaded"}})
def readyz(service: Service = Depends(get_service)) -> dict[str, str]:
    """Readiness: 200 once the database answers (migrated) and the model is loaded, else 503."""
    return {"status": "ready", **service.check_ready()}


@router.get("/v1/", response_class=PlainTextResponse, include_in_schema=True)
async def nsfwoid_health() -> str:
    """nsfwoid's health check."""
    return "ok"


@router.get("/metrics", response_class=Response)
@router.get("/v1/metrics", response_class=Response, include_in_schema=False)
def metrics(service: Service = Depends(get_service)) -> Response:
    """Prometheus exposition."""
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
