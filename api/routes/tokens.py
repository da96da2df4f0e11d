"""Admin management of API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.audit import append as audit_append
from core.db import transaction
from core.tokens import ApiToken, Principal, Role, issue_token, revoke_token

from ..context import ServiceContext
from ..security import get_context, require_roles

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    department_id: str | None = Field(default=None, max_length=64)
    holder_id: str | None = Field(default=None, max_length=128)


class TokenOut(BaseModel):
    id: int
    name: str
    role: Role
    department_id: str | None
    holder_id: str | None
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="明文令牌，仅返回一次 / The clear token, shown only once")


def _out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        department_id=row.department_id,
        holder_id=row.holder_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.post("", status_code=201, response_model=TokenCreated, summary="签发令牌 Issue a token")
def create_token(
    body: TokenCreate,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008
) -> TokenCreated:
    with transaction(ctx.sessions) as s:
        row, clear = issue_token(
            s, name=body.name, role=body.role, department_id=body.department_id, holder_id=body.holder_id
        )
        audit_append(
            s,
            actor=who.actor,
            action="token.issued",
            subject_type="token",
            subject_id=str(row.id),
            details={"name": row.name, "role": row.role, "department_id": row.department_id},
        )
        return TokenCreated(**_out(row).model_dump(), token=clear)


@router.get("", response_model=list[TokenOut], summary="令牌列表 List tokens")
def list_tokens(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(require_roles()),  # noqa: B008
) -> list[TokenOut]:
    with ctx.sessions() as s:
        return [_out(r) for r in s.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.delete("/{token_id}", response_model=TokenOut, summary="吊销令牌 Revoke a token")
def delete_token(
    token_id: int,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008
) -> TokenOut:
    with transaction(ctx.sessions) as s:
        row = revoke_token(s, token_id)
        audit_append(
            s,
            actor=who.actor,
            action="token.revoked",
            subject_type="token",
            subject_id=str(row.id),
            details={},
        )
        return _out(row)
