"""The FastAPI application around one Service."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mediaguard import __version__
from mediaguard.api import actions, banks, health, hma, kserve, matching, scores, tokens
from mediaguard.api import score as score_routes
from mediaguard.api.docs import install_docs
from mediaguard.api.errors import install_error_handlers
from mediaguard.api.middleware import RequestContextMiddleware
from mediaguard.logs import get_logger
from mediaguard.service import Service

log = get_logger("mediaguard.api")

DESCRIPTION = """\
Content safety for open media platforms: open_nsfw scores (0.0 safe .. 1.0 NSFW) from a URL or
the image bytes, stored by content digest for millisecond lookups.

Hash banks: PDQ, MD5, SHA-1 and SHA-256 matching with per-bank thresholds and per-category
actions (e-mail, signed takedown webhook, review queue), every action audited.

Compatible surfaces: nsfwoid (`POST /`, `POST /v1/score`, text/plain), KServe v1
(`/v1/models/open-nsfw:predict`) and Hasher-Matcher-Actioner (`/h/`, `/m/`, `/c/`, `/status`).
Errors are JSON `{"error": code, "detail": ...}`.
Authenticate with `Authorization: Bearer <token>` (`mediaguard tokens create`).
"""


def create_app(service: Service, *, load_model: bool = True) -> FastAPI:
    """The app; the model loads in the background so `/healthz` answers at once and `/readyz`
    says 503 until it is in."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_model:
            threading.Thread(target=_load_model, args=(service,), daemon=True).start()
        service.start_index()
        yield

    app = FastAPI(
        title="mediaguard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    install_error_handlers(app)
    install_docs(app)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    # The lookup route is platform code's hot path: matched first.
    for module in (scores, score_routes, kserve, health, tokens, matching, banks, actions, hma):
        app.include_router(module.router)
    return app


def _load_model(service: Service) -> None:
    try:
        version = service.nsfw().version
    except Exception:
        log.exception("model_load_failed")
    else:
        log.info("model_loaded", model_version=version)
