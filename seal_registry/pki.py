"""The region's PKI records: root CA, seal maker, TSA, service key, department signers, anchors.

Keys live in the key store (``hsm_adapters``); this module keeps the certificates and which key each
belongs to, and is the one place that issues, revokes and lists them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.settings import Settings
from gmpki import ca
from gmpki.crl import REASONS, CertificateRevocationList, RevokedCertificate, build_crl
from gmpki.x509 import Certificate, build_name, load_certificate_der
from hsm_adapters.keystore import KeyAlgorithm, KeyStore, KeyStoreSigner

from .models import Department, PkiCertificate

CRL_VALIDITY = timedelta(days=7)


class CertRole(enum.StrEnum):
    ROOT = "root"
    SEAL_MAKER = "seal_maker"
    TSA = "tsa"
    SERVICE = "service"
    DEPARTMENT = "department"
    ANCHOR = "anchor"  # an external CA configured as a trust anchor


def record_certificate(
    session: Session,
    cert: Certificate,
    role: CertRole,
    *,
    key_id: str | None = None,
    department_id: str | None = None,
) -> PkiCertificate:
    row = PkiCertificate(
        role=role.value,
        subject=cert.subject[:500],
        issuer=cert.issuer[:500],
        serial_hex=f"{cert.serial:x}",
        not_before=cert.not_before,
        not_after=cert.not_after,
        der=cert.der,
        sm3=cert.fingerprint_sm3.hex(),
        key_id=key_id,
        department_id=department_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def certificate_of(row: PkiCertificate) -> Certificate:
    return load_certificate_der(row.der)


def current_certificate(session: Session, role: CertRole) -> PkiCertificate:
    """The newest unrevoked certificate of a region role (root, seal_maker, tsa, service)."""
    row = session.scalar(
        select(PkiCertificate)
        .where(PkiCertificate.role == role.value, PkiCertificate.revoked_at.is_(None))
        .order_by(PkiCertificate.id.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(
            f"地区尚未初始化：缺少 {role.value} 证书（请运行 eseal init）",
            f"Region not initialised: no {role.value} certificate (run `eseal init`)",
        )
    return row


def get_certificate(session: Session, cert_id: int) -> PkiCertificate:
    row = session.get(PkiCertificate, cert_id)
    if row is None:
        raise NotFound(f"证书 {cert_id} 不存在", f"Certificate {cert_id} not found")
    return row


def signer_for(keystore: KeyStore, row: PkiCertificate) -> KeyStoreSigner:
    if row.key_id is None:
        raise InvalidInput(f"证书 {row.id} 没有本地密钥", f"Certificate {row.id} has no local key")
    return KeyStoreSigner(keystore, row.key_id)


def _key(keystore: KeyStore, label: str) -> str:
    """Reuse a key left by an earlier, interrupted init (its certificate was rolled back)."""
    existing = keystore.find(label)
    if existing is not None:
        return existing.id
    return keystore.generate(KeyAlgorithm.SM2, label).id


@dataclass(frozen=True)
class RegionSummary:
    created: bool
    root: PkiCertificate
    seal_maker: PkiCertificate
    tsa: PkiCertificate
    service: PkiCertificate


def init_region(session: Session, keystore: KeyStore, settings: Settings, *, actor: str) -> RegionSummary:
    """Create the region's CA hierarchy once; later calls return what exists."""
    existing = session.scalar(
        select(func.count()).select_from(PkiCertificate).where(PkiCertificate.role == CertRole.ROOT.value)
    )
    if existing:
        return RegionSummary(
            created=False,
            root=current_certificate(session, CertRole.ROOT),
            seal_maker=current_certificate(session, CertRole.SEAL_MAKER),
            tsa=current_certificate(session, CertRole.TSA),
            service=current_certificate(session, CertRole.SERVICE),
        )
    region = settings.region_code
    org = settings.region_name
    # Keys first: on SQLite the soft key store writes through its own connection, which would wait
    # on this session's write lock once a row has been flushed here.
    keys = {
        label: _key(keystore, f"region-{region}-{label}")
        for label in ("root", "seal-maker", "tsa", "service")
    }
    root_signer = KeyStoreSigner(keystore, keys["root"])
    root = ca.issue_root_ca(root_signer, build_name(f"{org} 电子印章根CA", organization=org))
    root_row = record_certificate(session, root, CertRole.ROOT, key_id=root_signer.key_id)

    rows: dict[CertRole, PkiCertificate] = {}
    profiles = (
        (CertRole.SEAL_MAKER, "seal-maker", "电子印章制章者 Seal Maker", ca.issue_seal_maker_certificate),
        (CertRole.TSA, "tsa", "时间戳服务 TSA", ca.issue_tsa_certificate),
        (CertRole.SERVICE, "service", "eseal 服务签名 Service", ca.issue_service_certificate),
    )
    for role, label, cn, issue in profiles:
        key_id = keys[label]
        subject_key = keystore.public_key(key_id).sm2_public_key
        cert = issue(root_signer, root, subject_key, build_name(f"{org} {cn}", organization=org))
        rows[role] = record_certificate(session, cert, role, key_id=key_id)
    audit_append(
        session,
        actor=actor,
        action="region.initialised",
        subject_type="region",
        subject_id=region,
        details={"root_sm3": root_row.sm3, "region_name": org},
    )
    return RegionSummary(
        True, root_row, rows[CertRole.SEAL_MAKER], rows[CertRole.TSA], rows[CertRole.SERVICE]
    )


def issue_department_certificate(
    session: Session, keystore: KeyStore, department: Department, *, actor: str
) -> PkiCertificate:
    """A new signing key in the key store and its 签章者 certificate for ``department``.

    Call it before any other write of the caller's transaction: on SQLite the soft key store writes
    the new key through its own connection and would wait on this session's write lock.
    """
    root_row = current_certificate(session, CertRole.ROOT)
    root = certificate_of(root_row)
    n = session.scalar(
        select(func.count()).select_from(PkiCertificate).where(PkiCertificate.department_id == department.id)
    )
    key_id = _key(keystore, f"dept-{department.id}-{(n or 0) + 1}")
    cert = ca.issue_department_certificate(
        signer_for(keystore, root_row),
        root,
        keystore.public_key(key_id).sm2_public_key,
        build_name(department.name, organization=department.name, social_credit_code=department.uscc),
    )
    row = record_certificate(session, cert, CertRole.DEPARTMENT, key_id=key_id, department_id=department.id)
    audit_append(
        session,
        actor=actor,
        action="certificate.issued",
        subject_type="certificate",
        subject_id=str(row.id),
        details={"role": row.role, "department_id": department.id, "serial": row.serial_hex, "sm3": row.sm3},
    )
    return row


def revoke_certificate(session: Session, cert_id: int, *, reason: str, actor: str) -> PkiCertificate:
    if reason not in REASONS:
        names = ", ".join(sorted(REASONS))
        raise InvalidInput(
            f"未知的撤销原因 {reason!r}（可选：{names}）", f"Unknown revocation reason {reason!r} ({names})"
        )
    row = session.scalar(select(PkiCertificate).where(PkiCertificate.id == cert_id).with_for_update())
    if row is None:
        raise NotFound(f"证书 {cert_id} 不存在", f"Certificate {cert_id} not found")
    if row.role == CertRole.ROOT.value:
        raise Conflict("不能吊销根证书", "The root certificate cannot be revoked here")
    if row.revoked_at is not None:
        raise Conflict(f"证书 {cert_id} 已吊销", f"Certificate {cert_id} is already revoked")
    row.revoked_at = utcnow()
    row.revocation_reason = reason
    audit_append(
        session,
        actor=actor,
        action="certificate.revoked",
        subject_type="certificate",
        subject_id=str(row.id),
        details={"reason": reason, "serial": row.serial_hex},
    )
    return row


def current_crl(session: Session, keystore: KeyStore) -> CertificateRevocationList:
    """A fresh CRL of every certificate the root issued and revoked (issued on demand, short-lived)."""
    root_row = current_certificate(session, CertRole.ROOT)
    revoked = session.scalars(
        select(PkiCertificate).where(
            PkiCertificate.revoked_at.is_not(None), PkiCertificate.issuer == root_row.subject
        )
    ).all()
    now = utcnow()
    return build_crl(
        signer=signer_for(keystore, root_row),
        issuer=certificate_of(root_row),
        this_update=now,
        next_update=now + CRL_VALIDITY,
        revoked=[
            RevokedCertificate(int(r.serial_hex, 16), r.revoked_at, r.revocation_reason)
            for r in revoked
            if r.revoked_at is not None
        ],
        # Monotonic across calls without extra state: seconds since the epoch.
        crl_number=int(now.timestamp()),
    )


def import_anchors(session: Session, data: bytes, *, actor: str) -> list[PkiCertificate]:
    """Configure external CA certificates (PEM bundle or DER) as trust anchors."""
    rows: list[PkiCertificate] = []
    for cert in ca.import_ca_certificates(data):
        sm3 = cert.fingerprint_sm3.hex()
        if session.scalar(select(PkiCertificate.id).where(PkiCertificate.sm3 == sm3)) is not None:
            continue
        rows.append(record_certificate(session, cert, CertRole.ANCHOR))
    for row in rows:
        audit_append(
            session,
            actor=actor,
            action="anchor.imported",
            subject_type="certificate",
            subject_id=str(row.id),
            details={"subject": row.subject, "sm3": row.sm3},
        )
    return rows


def trust_anchors(session: Session) -> list[Certificate]:
    """The region root plus imported anchors: what local verification trusts."""
    rows = session.scalars(
        select(PkiCertificate).where(
            PkiCertificate.role.in_([CertRole.ROOT.value, CertRole.ANCHOR.value]),
            PkiCertificate.revoked_at.is_(None),
        )
    ).all()
    return [certificate_of(r) for r in rows]


def list_certificates(session: Session, role: CertRole | None = None) -> list[PkiCertificate]:
    stmt = select(PkiCertificate).order_by(PkiCertificate.id)
    if role is not None:
        stmt = stmt.where(PkiCertificate.role == role.value)
    return list(session.scalars(stmt))


def service_signer(session: Session, keystore: KeyStore) -> KeyStoreSigner:
    return signer_for(keystore, current_certificate(session, CertRole.SERVICE))
