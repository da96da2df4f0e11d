"""Audit chain verification for auditors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from core.audit import verify_chain
from core.errors import NotFound
from core.tokens import Principal, Role
from seal_registry.pki import CertRole, certificate_of, current_certificate

from ..context import ServiceContext
from ..security import get_context, require_roles

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/verify", summary="校验审计链 Verify the audit chain")
def audit_verify(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(require_roles(Role.AUDITOR)),  # noqa: B008
) -> dict[str, Any]:
    with ctx.sessions() as s:
        try:
            pub = certificate_of(current_certificate(s, CertRole.SERVICE)).public_key
        except NotFound:
            pub = None
        return verify_chain(s, public_key=pub).to_dict()
