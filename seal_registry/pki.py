"""The region's PKI records: root CA, seal maker, TSA, service key, department signers, anchors.

Keys live in the key store (``hsm_adapters``); this module keeps the certificates and which key each
belongs to, and is the one place that issues, revokes and lists them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import pem
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput, KeyStoreError, NotFound, NotUsable
from core.settings import Settings
from gmpki import ca
from gmpki.crl import REASONS, CertificateRevocationList, RevokedCertificate, build_crl
from gmpki.crl_interop import build_interop_crl
from gmpki.sm3 import sm3_hex
from gmpki.x509 import Certificate, build_name, load_certificate_der
from gmpki.x509_interop import (
    InteropKeyType,
    interop_key_type,
    issue_interop_root,
    issue_interop_signer,
    issue_interop_tsa,
    load_interop_certificate,
)
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
    # The PAdES interop hierarchy (ECDSA/RSA, for PDF readers that cannot verify SM2): its root, its
    # TSA and the departments' PDF signing certificates. Not SM2: read them with
    # gmpki.x509_interop.load_interop_certificate, never with certificate_of.
    PADES_ROOT = "pades_root"
    PADES_TSA = "pades_tsa"
    PADES_DEPARTMENT = "pades_department"


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


def certificate_pem(row: PkiCertificate) -> str:
    """PEM of any stored certificate (SM2 or the ECDSA/RSA PAdES ones, which gmpki.x509 does not load)."""
    armored: bytes = pem.armor("CERTIFICATE", row.der)
    return armored.decode("ascii")


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
    if row.role in (CertRole.ROOT.value, CertRole.PADES_ROOT.value):
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


@dataclass(frozen=True)
class CrlMaterial:
    """What the region CRL says, read from the database: the root, its key and what it revoked."""

    issuer: Certificate
    key_id: str
    revoked: tuple[RevokedCertificate, ...]


def crl_material(session: Session) -> CrlMaterial:
    """The root and every certificate it issued and revoked (no signing: see :func:`sign_crl`)."""
    root_row = current_certificate(session, CertRole.ROOT)
    if root_row.key_id is None:
        raise InvalidInput(f"证书 {root_row.id} 没有本地密钥", f"Certificate {root_row.id} has no local key")
    revoked = session.scalars(
        select(PkiCertificate).where(
            PkiCertificate.revoked_at.is_not(None), PkiCertificate.issuer == root_row.subject
        )
    ).all()
    return CrlMaterial(
        certificate_of(root_row),
        root_row.key_id,
        tuple(
            RevokedCertificate(int(r.serial_hex, 16), r.revoked_at, r.revocation_reason)
            for r in revoked
            if r.revoked_at is not None
        ),
    )


def sign_crl(material: CrlMaterial, keystore: KeyStore) -> CertificateRevocationList:
    """A fresh, short-lived CRL of ``material`` signed by the root key. Needs no session of the
    caller's: a soft key store reads its key through a connection of its own, so a caller holding
    one while it waits for this could exhaust a small pool."""
    now = utcnow()
    return build_crl(
        signer=KeyStoreSigner(keystore, material.key_id),
        issuer=material.issuer,
        this_update=now,
        next_update=now + CRL_VALIDITY,
        revoked=list(material.revoked),
        # Monotonic across calls without extra state: seconds since the epoch.
        crl_number=int(now.timestamp()),
    )


def current_crl(session: Session, keystore: KeyStore) -> CertificateRevocationList:
    """A fresh CRL of every certificate the root issued and revoked (issued on demand, short-lived)."""
    return sign_crl(crl_material(session), keystore)


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


# --- the PAdES interop hierarchy (ECDSA P-256 / RSA) -------------------------------------------------
_PADES_ALGORITHMS = {KeyAlgorithm.EC_P256: InteropKeyType.EC_P256, KeyAlgorithm.RSA_3072: InteropKeyType.RSA}


def _record_interop(
    session: Session, der: bytes, role: CertRole, *, key_id: str, department_id: str | None = None
) -> PkiCertificate:
    view = load_interop_certificate(der)
    row = PkiCertificate(
        role=role.value,
        subject=view.subject[:500],
        issuer=view.issuer[:500],
        serial_hex=f"{view.serial:x}",
        not_before=view.not_before,
        not_after=view.not_after,
        der=der,
        sm3=sm3_hex(der),
        key_id=key_id,
        department_id=department_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _interop_key(keystore: KeyStore, label: str, algorithm: KeyAlgorithm) -> str:
    """Reuse a key left by an earlier, interrupted call (its certificate was rolled back)."""
    existing = keystore.find(label)
    if existing is not None:
        if existing.algorithm is not algorithm:
            raise KeyStoreError(
                f"密钥标签 {label} 已被 {existing.algorithm.value} 密钥占用",
                f"Key label {label} is taken by an {existing.algorithm.value} key",
            )
        return existing.id
    return keystore.generate(algorithm, label).id


def _store_sign(keystore: KeyStore, key_id: str) -> Callable[[bytes], bytes]:
    def sign(message: bytes) -> bytes:
        return keystore.sign(key_id, message)

    return sign


@dataclass(frozen=True)
class PadesSummary:
    created: bool
    root: PkiCertificate
    tsa: PkiCertificate


def init_pades(session: Session, keystore: KeyStore, settings: Settings, *, actor: str) -> PadesSummary:
    """Create the region's PAdES interop root and TSA (ECDSA P-256) once; later calls return them.

    Call it before any other write of the caller's transaction: on SQLite the soft key store writes
    new keys through its own connection and would wait on this session's write lock.
    """
    existing = session.scalar(
        select(func.count())
        .select_from(PkiCertificate)
        .where(PkiCertificate.role == CertRole.PADES_ROOT.value)
    )
    if existing:
        return PadesSummary(
            False,
            current_certificate(session, CertRole.PADES_ROOT),
            current_certificate(session, CertRole.PADES_TSA),
        )
    region, org = settings.region_code, settings.region_name
    root_key = _interop_key(keystore, f"region-{region}-pades-root", KeyAlgorithm.EC_P256)
    tsa_key = _interop_key(keystore, f"region-{region}-pades-tsa", KeyAlgorithm.EC_P256)
    root_der = issue_interop_root(
        _store_sign(keystore, root_key),
        keystore.public_key(root_key).public_key_der,
        build_name(f"{org} PAdES 互通根CA Interop Root", organization=org),
    )
    tsa_der = issue_interop_tsa(
        _store_sign(keystore, root_key),
        root_der,
        keystore.public_key(tsa_key).public_key_der,
        build_name(f"{org} PAdES 时间戳服务 TSA", organization=org),
    )
    root_row = _record_interop(session, root_der, CertRole.PADES_ROOT, key_id=root_key)
    tsa_row = _record_interop(session, tsa_der, CertRole.PADES_TSA, key_id=tsa_key)
    audit_append(
        session,
        actor=actor,
        action="pades.initialised",
        subject_type="region",
        subject_id=region,
        details={"root_sm3": root_row.sm3, "tsa_sm3": tsa_row.sm3},
    )
    return PadesSummary(True, root_row, tsa_row)


def issue_pades_certificate(
    session: Session,
    keystore: KeyStore,
    department: Department,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    actor: str,
) -> PkiCertificate:
    """A new ECDSA P-256 or RSA key in the key store and its PDF signing certificate for
    ``department``, issued by the region's PAdES interop root (:func:`init_pades` first).

    Call it before any other write of the caller's transaction: on SQLite the soft key store writes
    the new key through its own connection and would wait on this session's write lock.
    """
    if algorithm not in _PADES_ALGORITHMS:
        raise InvalidInput(
            f"PDF 互通证书仅支持 EC_P256 与 RSA_3072（实际 {algorithm}）",
            f"PAdES certificates use EC_P256 or RSA_3072 keys, not {algorithm}",
        )
    root_row = current_certificate(session, CertRole.PADES_ROOT)
    if root_row.key_id is None:
        raise InvalidInput(f"证书 {root_row.id} 没有本地密钥", f"Certificate {root_row.id} has no local key")
    n = session.scalar(
        select(func.count())
        .select_from(PkiCertificate)
        .where(
            PkiCertificate.department_id == department.id,
            PkiCertificate.role == CertRole.PADES_DEPARTMENT.value,
        )
    )
    key_id = _interop_key(keystore, f"pades-{department.id}-{(n or 0) + 1}", algorithm)
    der = issue_interop_signer(
        _store_sign(keystore, root_row.key_id),
        root_row.der,
        keystore.public_key(key_id).public_key_der,
        build_name(department.name, organization=department.name, social_credit_code=department.uscc),
    )
    row = _record_interop(session, der, CertRole.PADES_DEPARTMENT, key_id=key_id, department_id=department.id)
    audit_append(
        session,
        actor=actor,
        action="certificate.issued",
        subject_type="certificate",
        subject_id=str(row.id),
        details={
            "role": row.role,
            "department_id": department.id,
            "algorithm": algorithm.value,
            "serial": row.serial_hex,
            "sm3": row.sm3,
        },
    )
    return row


def pades_certificate_for(
    session: Session, department_id: str, algorithm: KeyAlgorithm, at: datetime | None = None
) -> PkiCertificate:
    """The department's newest unrevoked, in-date PAdES certificate with an ``algorithm`` key."""
    wanted = _PADES_ALGORITHMS.get(algorithm)
    at = utcnow() if at is None else at
    rows = session.scalars(
        select(PkiCertificate)
        .where(
            PkiCertificate.department_id == department_id,
            PkiCertificate.role == CertRole.PADES_DEPARTMENT.value,
            PkiCertificate.revoked_at.is_(None),
        )
        .order_by(PkiCertificate.id.desc())
    )
    for row in rows:
        if row.key_id is None or not row.not_before <= at <= row.not_after:
            continue
        spki = load_interop_certificate(row.der).asn1.public_key.dump()
        if wanted is not None and interop_key_type(spki) is wanted:
            return row
    raise NotUsable(
        f"部门没有可用的 {algorithm.value} PDF 签名证书（请先签发 PAdES 证书）",
        f"The department has no usable {algorithm.value} PDF signing certificate "
        "(issue a PAdES certificate first)",
        department_id=department_id,
    )


def pades_ready(session: Session) -> bool:
    """Whether :func:`init_pades` has run (a PAdES interop root exists)."""
    return bool(
        session.scalar(
            select(func.count())
            .select_from(PkiCertificate)
            .where(PkiCertificate.role == CertRole.PADES_ROOT.value)
        )
    )


def pades_trust_anchors(session: Session) -> list[bytes]:
    """DER of the region's unrevoked PAdES interop roots: what PDF verification trusts besides SM2."""
    rows = session.scalars(
        select(PkiCertificate).where(
            PkiCertificate.role == CertRole.PADES_ROOT.value, PkiCertificate.revoked_at.is_(None)
        )
    ).all()
    return [r.der for r in rows]


@dataclass(frozen=True)
class InteropCrlMaterial:
    """What the PAdES interop CRL says: the interop root (DER), its key and what it revoked."""

    issuer_der: bytes
    key_id: str
    revoked: tuple[RevokedCertificate, ...]


def _pades_revoked_filter(root: PkiCertificate) -> tuple[ColumnElement[bool], ...]:
    return (
        PkiCertificate.revoked_at.is_not(None),
        PkiCertificate.issuer == root.subject,
        PkiCertificate.role.in_([CertRole.PADES_DEPARTMENT.value, CertRole.PADES_TSA.value]),
    )


def interop_crl_state(session: Session) -> tuple[int, int, datetime | None] | None:
    """(interop root id, number and latest time of its revocations), or None before :func:`init_pades`:
    what the interop CRL depends on, so a cache keyed by it is rebuilt on every revocation."""
    if not pades_ready(session):
        return None
    root = current_certificate(session, CertRole.PADES_ROOT)
    count, latest = session.execute(
        select(func.count(), func.max(PkiCertificate.revoked_at)).where(*_pades_revoked_filter(root))
    ).one()
    return root.id, int(count or 0), latest


def interop_crl_material(session: Session) -> InteropCrlMaterial:
    """The PAdES interop root and every certificate it issued and revoked (no signing: see
    :func:`sign_interop_crl`). NotFound before :func:`init_pades`."""
    root = current_certificate(session, CertRole.PADES_ROOT)
    if root.key_id is None:
        raise InvalidInput(f"证书 {root.id} 没有本地密钥", f"Certificate {root.id} has no local key")
    revoked = session.scalars(select(PkiCertificate).where(*_pades_revoked_filter(root))).all()
    return InteropCrlMaterial(
        root.der,
        root.key_id,
        tuple(
            RevokedCertificate(int(r.serial_hex, 16), r.revoked_at, r.revocation_reason)
            for r in revoked
            if r.revoked_at is not None
        ),
    )


def sign_interop_crl(material: InteropCrlMaterial, keystore: KeyStore) -> bytes:
    """A fresh, short-lived RFC 5280 CRL (DER, ECDSA P-256 with SHA-256) of ``material``, signed in
    the key store by the interop root's key. Needs no session of the caller's (see :func:`sign_crl`)."""
    now = utcnow()
    return build_interop_crl(
        sign=_store_sign(keystore, material.key_id),
        issuer_certificate=material.issuer_der,
        this_update=now,
        next_update=now + CRL_VALIDITY,
        revoked=material.revoked,
        crl_number=int(now.timestamp()),
    )


def current_interop_crl(session: Session, keystore: KeyStore) -> bytes:
    """A fresh CRL (DER) of every certificate the PAdES interop root issued and revoked."""
    return sign_interop_crl(interop_crl_material(session), keystore)
