"""The FastAPI application around one Service."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from mediaguard import __version__
from mediaguard.api import (
    actions,
    banks,
    health,
    hma,
    kserve,
    matching,
    media,
    reports,
    review,
    scores,
    search,
    terms,
    tokens,
)
from mediaguard.api import score as score_routes
from mediaguard.api.docs import install_docs
from mediaguard.api.errors import install_error_handlers
from mediaguard.api.middleware import RequestContextMiddleware
from mediaguard.jobs.queue import attach_queue
from mediaguard.jobs.worker import InProcessWorker
from mediaguard.logs import get_logger
from mediaguard.service import Service
from mediaguard.web import STATIC_DIR, console, public

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


def create_app(service: Service, *, load_model: bool = True, jobs: bool = False) -> FastAPI:
    """The app; the model loads in the background so `/healthz` answers at once and `/readyz`
    says 503 until it is in. With ``jobs``, uploads are queued, and processed in-process by
    ``serve_workers`` threads (by default on the SQLite queue only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_model:
            threading.Thread(target=_load_model, args=(service,), daemon=True).start()
        service.start_index()
        worker = _start_jobs(service) if jobs else None
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

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
    routers = (
        scores,
        score_routes,
        kserve,
        health,
        tokens,
        media,
        reports,
        search,
        terms,
        review,
        matching,
        banks,
        actions,
        hma,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(public.router)
    app.include_router(console.router)
    # After the docs' own /static/swagger-ui mount, which must stay the first match.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _start_jobs(service: Service) -> InProcessWorker | None:
    queue = attach_queue(service)
    settings = service.settings
    workers = settings.serve_workers
    if workers is None:
        workers = 0 if settings.redis_url else 2
    if not workers:
        return None
    worker = InProcessWorker(service, queue, workers=workers)
    worker.start(wait=False)
    return worker


def _load_model(service: Service) -> None:
    try:
        version = service.warm_up()
    except Exception:
        log.exception("model_load_failed")
    else:
        log.info("model_loaded", model_version=version)
