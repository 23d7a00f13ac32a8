"""Dependencies shared by the routers: the service, and who is calling.

They are `async` because FastAPI runs a sync dependency in the threadpool, a hop that costs more
than the dependency itself; the token check, which queries the database, goes to a thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from mediaguard.service import Service
from mediaguard.store import Role, TokenInfo

P = ParamSpec("P")
T = TypeVar("T")


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def require(*roles: Role) -> Callable[..., Awaitable[TokenInfo]]:
    """A dependency that lets through a token with one of `roles` (or `admin`)."""

    async def dependency(request: Request, service: Service = Depends(get_service)) -> TokenInfo:
        return await run_in_threadpool(service.authorize, bearer_token(request), roles)

    return dependency


async def scoring_access(request: Request, service: Service = Depends(get_service)) -> None:
    """Scoring and lookups are open unless `scoring_requires_token` closes them to any role."""
    if service.settings.scoring_requires_token:
        await run_in_threadpool(service.authenticate, bearer_token(request))


async def run_read(service: Service, read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a short indexed read of the store.

    On the embedded SQLite file it runs inline: the read takes tens of microseconds, a hop to the
    threadpool several times that. A networked database can stall, and a stalled event loop
    fails even `/healthz`, so there it goes to a thread.
    """
    if service.store.is_embedded:
        return read(*args, **kwargs)
    return await run_in_threadpool(read, *args, **kwargs)
