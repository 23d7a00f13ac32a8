"""Roles: `admin` may do everything; other roles only what names them."""

from __future__ import annotations

from collections.abc import Iterable

from mediaguard.errors import PermissionDeniedError
from mediaguard.store import Role, TokenInfo


def authorize(token: TokenInfo, roles: Iterable[Role]) -> TokenInfo:
    allowed = set(roles)
    if token.role == "admin" or token.role in allowed:
        return token
    raise PermissionDeniedError(
        f"the {token.role!r} role may not do this; it needs one of: "
        + ", ".join(sorted(allowed | {"admin"}))
    )
