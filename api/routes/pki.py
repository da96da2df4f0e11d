"""The region's certificates and CRLs (public), certificate management (admin), keys (admin)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from core.db import transaction
from core.tokens import Principal, Role
from seal_registry import departments, pki
from seal_registry.models import PkiCertificate

from ..context import ServiceContext
from ..security import get_context, require_roles

router = APIRouter(prefix="/v1", tags=["pki"])
PEM = "application/x-pem-file"


class CertificateOut(BaseModel):
    id: int
    role: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sm3: str
    department_id: str | None
    revoked_at: datetime | None
    revocation_reason: str | None


def _cert_out(r: PkiCertificate) -> CertificateOut:
    return CertificateOut(
        id=r.id,
        role=r.role,
        subject=r.subject,
        issuer=r.issuer,
        serial=r.serial_hex,
        not_before=r.not_before,
        not_after=r.not_after,
        sm3=r.sm3,
        department_id=r.department_id,
        revoked_at=r.revoked_at,
        revocation_reason=r.revocation_reason,
    )


@router.get(
    "/ca/certificates", response_model=list[CertificateOut], summary="地区证书列表 Region certificates"
)
def list_certificates(ctx: ServiceContext = Depends(get_context)) -> list[CertificateOut]:  # noqa: B008
    with ctx.sessions() as s:
        return [_cert_out(r) for r in pki.list_certificates(s)]


@router.get(
    "/ca/certificates/{cert_id}.pem",
    response_class=Response,
    responses={200: {"content": {PEM: {}}}},
    summary="下载证书 Download a certificate (PEM)",
)
def certificate_pem(cert_id: int, ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with ctx.sessions() as s:
        pem = pki.certificate_pem(pki.get_certificate(s, cert_id))
    return Response(pem, media_type=PEM)


@router.get(
    "/ca/crl",
    response_class=Response,
    responses={200: {"content": {"application/pkix-crl": {}}}},
    summary="当前证书吊销列表 Current CRL (DER)",
)
def crl(ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with ctx.sessions() as s:
        der = pki.current_crl(s, ctx.keystore).der
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=300"})


@router.get(
    "/ca/crl/interop",
    response_class=Response,
    responses={200: {"content": {"application/pkix-crl": {}}}},
    summary="PAdES 互通 CA 当前证书吊销列表 Current CRL of the PAdES interop CA (DER, ECDSA)",
)
def interop_crl(ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with ctx.sessions() as s:
        material = pki.interop_crl_material(s)
    # Signed with the session closed: a soft key store reads the key through a connection of its own.
    der = pki.sign_interop_crl(material, ctx.keystore)
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=300"})


class RevokeBody(BaseModel):
    reason: str = Field(default="key_compromise", description="RFC 5280 reason name, e.g. key_compromise")


@router.post("/ca/certificates/{cert_id}/revoke", response_model=CertificateOut, summary="吊销证书 Revoke")
def revoke(
    cert_id: int,
    body: RevokeBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.SEAL_OFFICER)),  # noqa: B008
) -> CertificateOut:
    with transaction(ctx.sessions) as s:
        return _cert_out(pki.revoke_certificate(s, cert_id, reason=body.reason, actor=who.actor))


@router.post(
    "/ca/anchors",
    response_model=list[CertificateOut],
    status_code=201,
    summary="导入信任锚 Import trust anchors (PEM or DER body)",
    openapi_extra={"requestBody": {"content": {PEM: {}, "application/pkix-cert": {}}, "required": True}},
)
async def import_anchors(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008
) -> list[CertificateOut]:
    data = await request.body()
    with transaction(ctx.sessions) as s:
        return [_cert_out(r) for r in pki.import_anchors(s, data, actor=who.actor)]


@router.post(
    "/departments/{department_id}/certificates",
    response_model=CertificateOut,
    status_code=201,
    summary="签发部门签章证书 Issue a department signing certificate",
)
def issue_department_cert(
    department_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.SEAL_OFFICER)),  # noqa: B008
) -> CertificateOut:
    with transaction(ctx.sessions) as s:
        dept = departments.get_department(s, department_id)
        return _cert_out(pki.issue_department_certificate(s, ctx.keystore, dept, actor=who.actor))


class KeyOut(BaseModel):
    id: str
    label: str
    algorithm: str
    created_at: datetime | None


@router.get("/keys", response_model=list[KeyOut], summary="密钥列表 Keys (public facts only)")
def list_keys(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(require_roles()),  # noqa: B008
) -> list[KeyOut]:
    return [
        KeyOut(id=k.id, label=k.label, algorithm=k.algorithm.value, created_at=k.created_at)
        for k in ctx.keystore.list()
    ]
