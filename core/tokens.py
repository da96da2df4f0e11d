"""API bearer tokens: stored hashed, each bound to one role and optionally one department.

Tokens are 256-bit random strings; only SM3(token) is stored, so a database leak reveals no usable
credential and lookup by hash needs no constant-time comparison.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gmpki.sm3 import sm3_hex

from .db import Base, UtcDateTime, utcnow
from .errors import InvalidInput, NotFound, Unauthenticated

TOKEN_PREFIX = "es_"


class Role(enum.StrEnum):
    ADMIN = "admin"
    SEAL_OFFICER = "seal_officer"
    DEPARTMENT_SIGNER = "department_signer"
    AUDITOR = "auditor"
    HOLDER = "holder"
    PUBLIC = "public"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(32))
    department_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    holder_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the result of authenticating a bearer token."""

    token_id: int | None
    name: str
    role: Role
    department_id: str | None = None
    holder_id: str | None = None

    @property
    def actor(self) -> str:
        """How this principal is named in the audit chain."""
        return f"{self.role.value}:{self.name}" if self.token_id is not None else "public"


ANONYMOUS = Principal(token_id=None, name="anonymous", role=Role.PUBLIC)


def _hash(token: str) -> str:
    return sm3_hex(token.encode("utf-8"))


def issue_token(
    session: Session,
    *,
    name: str,
    role: Role,
    department_id: str | None = None,
    holder_id: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the clear token, which is shown once and never stored."""
    if role is Role.DEPARTMENT_SIGNER and not department_id:
        raise InvalidInput("业务部门令牌必须指定部门", "A department_signer token needs a department")
    if role is Role.HOLDER and not holder_id:
        raise InvalidInput("持证主体令牌必须指定持证主体", "A holder token needs a holder id")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=_hash(clear),
        role=role.value,
        department_id=department_id,
        holder_id=holder_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, clear


def authenticate(session: Session, token: str) -> Principal:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise Unauthenticated("令牌格式无效", "Malformed bearer token")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("令牌无效或已吊销", "Unknown or revoked token")
    return Principal(
        token_id=row.id,
        name=row.name,
        role=Role(row.role),
        department_id=row.department_id,
        holder_id=row.holder_id,
    )


def revoke_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"令牌 {token_id} 不存在", f"Token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def has_admin(session: Session) -> bool:
    return (
        session.scalar(
            select(ApiToken.id)
            .where(ApiToken.role == Role.ADMIN.value, ApiToken.revoked_at.is_(None))
            .limit(1)
        )
        is not None
    )
