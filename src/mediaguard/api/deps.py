"""Dependencies shared by the routers: the service, and who is calling."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

from mediaguard.service import Service
from mediaguard.store import Role, TokenInfo


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def require(*roles: Role) -> Callable[..., TokenInfo]:
    """A dependency that lets through a token with one of `roles` (or `admin`)."""

    def dependency(request: Request, service: Service = Depends(get_service)) -> TokenInfo:
        return service.authorize(bearer_token(request), roles)

    return dependency


def scoring_access(request: Request, service: Service = Depends(get_service)) -> None:
    """Scoring and lookups are open unless `scoring_requires_token` closes them to any role."""
    if service.settings.scoring_requires_token:
        service.authenticate(bearer_token(request))
