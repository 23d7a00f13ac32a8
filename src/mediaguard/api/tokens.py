"""API tokens (admin only), and `whoami` for any token."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service, require
from mediaguard.service import Service
from mediaguard.store import ROLES, Role, TokenInfo

router = APIRouter(tags=["tokens"])
admin_only = Depends(require("admin"))


class TokenOut(BaseModel):
    name: str
    role: Role
    prefix: str = Field(description="the first characters after `mg_`, to recognise a token")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            name=info.name,
            role=info.role,
            prefix=info.prefix,
            created_at=info.created_at,
            last_used_at=info.last_used_at,
            revoked_at=info.revoked_at,
        )


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["commons-upload-hook"])
    role: Role = Field(examples=list(ROLES))


@router.post("/v1/tokens", status_code=201, response_model=TokenCreated)
async def create_token(
    body: TokenRequest, _: TokenInfo = admin_only, service: Service = Depends(get_service)
) -> TokenCreated:
    token, info = await run_in_threadpool(service.create_token, body.name, body.role)
    return TokenCreated(token=token, **TokenOut.of(info).model_dump())


@router.get("/v1/tokens", response_model=list[TokenOut])
def list_tokens(
    _: TokenInfo = admin_only, service: Service = Depends(get_service)
) -> list[TokenOut]:
    return [TokenOut.of(info) for info in service.list_tokens()]


@router.delete("/v1/tokens/{name}", response_model=TokenOut)
def revoke_token(
    name: str, _: TokenInfo = admin_only, service: Service = Depends(get_service)
) -> TokenOut:
    return TokenOut.of(service.revoke_token(name))


@router.get("/v1/whoami", response_model=TokenOut)
def whoami(caller: TokenInfo = Depends(require("admin", "reviewer", "client"))) -> TokenOut:
    return TokenOut.of(caller)
