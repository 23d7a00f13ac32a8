"""API tokens: random secrets shown once, stored as hashes, checked on every request."""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import sqlalchemy as sa

from mediaguard.errors import InvalidInputError, NotFoundError
from mediaguard.store.db import reader
from mediaguard.store.models import API_TOKENS

Role = Literal["admin", "reviewer", "client"]
ROLES: tuple[Role, ...] = get_args(Role)

TOKEN_PREFIX = "mg_"
_PREFIX_CHARS = 8
_MAX_NAME = 100
_MAX_TOKEN = 256  # a real token is 46 characters; anything much longer is not one
# last_used_at is informational: refreshing it at most this often avoids a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_COLUMNS = (
    API_TOKENS.c.id,
    API_TOKENS.c.name,
    API_TOKENS.c.role,
    API_TOKENS.c.prefix,
    API_TOKENS.c.created_at,
    API_TOKENS.c.last_used_at,
    API_TOKENS.c.revoked_at,
)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_token(plaintext: str) -> str:
    """SHA-256 hex of a token.

    A fast unsalted hash is right here, unlike for passwords: tokens carry 256 random bits, so
    there is nothing to brute-force, and verification must stay cheap on every request.
    """
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _from_row(row: Sequence[Any]) -> TokenInfo:
    return TokenInfo(*row)


class TokenRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._by_hash = sa.select(*_COLUMNS).where(
            API_TOKENS.c.token_hash == sa.bindparam("token_hash")
        )
        self._touch = (
            sa.update(API_TOKENS)
            .where(
                API_TOKENS.c.id == sa.bindparam("token_id"),
                sa.or_(
                    API_TOKENS.c.last_used_at.is_(None),
                    API_TOKENS.c.last_used_at < sa.bindparam("stale_before"),
                ),
            )
            .values(last_used_at=sa.bindparam("now"))
        )

    def create(self, name: str, role: Role) -> tuple[str, TokenInfo]:
        """Create a token; the plaintext is returned here and never again."""
        name = name.strip()
        if not name or len(name) > _MAX_NAME:
            raise InvalidInputError(f"token name must be 1 to {_MAX_NAME} characters")
        if role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        values = {
            "name": name,
            "role": role,
            "token_hash": hash_token(plaintext),
            "prefix": plaintext[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _PREFIX_CHARS],
            "created_at": datetime.now(UTC),
        }
        try:
            with self._engine.begin() as connection:
                row = connection.execute(
                    sa.insert(API_TOKENS).values(values).returning(*_COLUMNS)
                ).one()
        except sa.exc.IntegrityError as exc:
            # The partial unique index on active names; the hash is random and cannot collide.
            raise InvalidInputError(f"an active token named {name!r} already exists") from exc
        return plaintext, _from_row(row)

    def verify(self, plaintext: str) -> TokenInfo | None:
        """The active token with this plaintext, or None.

        Looking up the hash by equality leaks nothing useful through timing: an attacker would
        learn about hashes of guesses, not about the secret.
        """
        if len(plaintext) > _MAX_TOKEN or not plaintext.startswith(TOKEN_PREFIX):
            return None
        with self._reader.connect() as connection:
            row = connection.execute(self._by_hash, {"token_hash": hash_token(plaintext)}).first()
        if row is None:
            return None
        info = _from_row(row)
        if info.revoked_at is not None:
            return None
        now = datetime.now(UTC)
        if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION:
            with self._engine.begin() as connection:
                connection.execute(
                    self._touch,
                    {"token_id": info.id, "stale_before": now - LAST_USED_RESOLUTION, "now": now},
                )
            info = replace(info, last_used_at=now)
        return info

    def list(self) -> builtins.list[TokenInfo]:
        """Every token, revoked ones included, oldest first."""
        with self._reader.connect() as connection:
            rows = connection.execute(sa.select(*_COLUMNS).order_by(API_TOKENS.c.id))
            return [_from_row(row) for row in rows]

    def revoke(self, name: str) -> TokenInfo:
        """Revoke the active token named ``name``. Revoking again returns the revoked token."""
        name = name.strip()
        now = datetime.now(UTC)
        with self._engine.begin() as connection:
            row = connection.execute(
                sa.update(API_TOKENS)
                .where(API_TOKENS.c.name == name, API_TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(*_COLUMNS)
            ).first()
            if row is None:
                row = connection.execute(
                    sa.select(*_COLUMNS)
                    .where(API_TOKENS.c.name == name)
                    .order_by(API_TOKENS.c.revoked_at.desc())
                    .limit(1)
                ).first()
        if row is None:
            raise NotFoundError(f"no token named {name!r}")
        return _from_row(row)
