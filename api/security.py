"""Bearer-token authentication and role checks as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.errors import PermissionDenied, Unauthenticated
from core.tokens import ANONYMOUS, Principal, Role, authenticate

from .context import ServiceContext

_bearer = HTTPBearer(auto_error=False, description="eseal API token (es_…)")


def context_of(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> ServiceContext:
    """The service context as a dependency. ``async`` although it awaits nothing: FastAPI runs a
    plain ``def`` dependency in its thread pool, a thread hop per request (the public verification
    route paid for it on every call)."""
    return context_of(request)


def current_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008 - FastAPI idiom
) -> Principal:
    """The caller; anonymous callers are the ``public`` role. A bad token is an error, not anonymity."""
    if creds is None:
        return ANONYMOUS
    ctx = context_of(request)
    with ctx.sessions() as session:
        return authenticate(session, creds.credentials)


def require_roles(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    allowed = {*roles, Role.ADMIN}

    # async: a pure check, run on the event loop rather than in a thread (see get_context).
    async def _check(principal: Principal = Depends(current_principal)) -> Principal:  # noqa: B008
        if principal.role not in allowed:
            if principal.token_id is None:
                raise Unauthenticated("需要令牌（Authorization: Bearer）", "A bearer token is required")
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDenied(f"需要以下角色之一：{names}", f"Requires one of the roles: {names}")
        return principal

    return _check


def check_department_scope(principal: Principal, department_id: str) -> None:
    """A department_signer may act only for its own department."""
    if principal.role is Role.DEPARTMENT_SIGNER and principal.department_id != department_id:
        raise PermissionDenied("只能使用本部门的资源", "A department may only use its own resources")
