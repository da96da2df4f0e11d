"""Using a licence: the original file or an annotated copy (加注件), for the issuer, the holder, or a
department holding the holder's grant — every use logged, every refusal logged too.

The annotated copy is a fresh rendering of the licence with a watermark on every page (user,
purpose, time, expiry), an annotation page saying the same, and the issuer-sealed original attached
byte for byte. The copy is sealed with the **service seal** (:func:`set_service_seal`: a seal of the
department that runs the licence service) through :func:`signer.ofd_sealing.seal_ofd`, in the same
transaction as the access-log entry; copies are made on demand and not stored (their SM3 is logged).

The sealed print PDF (types with ``print_pdf``) is delivered under exactly the rules of the original
OFD — issuer, holder, privileged readers, or a grant that allows the original — and logged as a
``download`` naming its SM3 and ``format: pdf``. Annotated copies exist only as OFD (a copy attaches
the sealed OFD original and is sealed by the service); there is no annotated PDF.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.orm import Session, sessionmaker

from core.audit import append as audit_append
from core.db import transaction, utcnow
from core.errors import EsealError, InvalidInput, NotUsable
from gmpki.ofd import OfdPackage, read_doc_bodies, read_document
from gmpki.sm3 import sm3
from seal_registry.departments import get_department
from seal_registry.lifecycle import SealState
from seal_registry.seals import get_seal
from signer.ofd_sealing import seal_ofd
from signer.placement import AtPosition

from .access_log import AccessAction, Accessor, record, record_refusal
from .grants import check_grant, check_purpose
from .identifier import parse_identifier
from .issuing import LicenceServices, licence_pdf, licence_view
from .models import Licence, LicenceGrant, LicenceServiceSeal, LicenceType
from .records import current_version, get_licence, licence_dict, metadata_of, status_of
from .rendering import Annotation, render_annotated_copy
from .status import LicenceStatus, label

SERVICE_SEAL_ROW: Final = 1
DEFAULT_COPY_DAYS: Final = 30
COPY_SEAL_BOX: Final = (130.0, 200.0)


class LicenceNotUsable(NotUsable):
    code = "licence_not_usable"
    title_zh, title_en = "证照不可使用", "Licence not usable"


# --- the service seal -----------------------------------------------------------------------------------
def set_service_seal(session: Session, *, department_id: str, es_id: str, actor: str) -> LicenceServiceSeal:
    """Name the seal that seals annotated copies; it must be an issued seal of ``department_id``."""
    dept = get_department(session, department_id)
    seal = get_seal(session, es_id)
    if seal.department_id != dept.id:
        raise InvalidInput(
            f"印章 {es_id} 不属于部门“{dept.name}”", f"seal {es_id} does not belong to '{dept.name}'"
        )
    if seal.state != SealState.ISSUED.value:
        raise NotUsable(f"印章 {es_id} 未处于已发放状态", f"seal {es_id} is not issued", es_id=es_id)
    row = session.get(LicenceServiceSeal, SERVICE_SEAL_ROW)
    if row is None:
        row = LicenceServiceSeal(
            id=SERVICE_SEAL_ROW, department_id=dept.id, es_id=seal.es_id, set_by=actor, set_at=utcnow()
        )
        session.add(row)
    else:
        row.department_id, row.es_id, row.set_by, row.set_at = dept.id, seal.es_id, actor, utcnow()
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.service_seal_set",
        subject_type="licence_service",
        subject_id="service_seal",
        details={"department_id": dept.id, "es_id": seal.es_id},
    )
    return row


def get_service_seal(session: Session) -> LicenceServiceSeal:
    row = session.get(LicenceServiceSeal, SERVICE_SEAL_ROW)
    if row is None:
        raise NotUsable(
            "尚未配置加注件服务印章（eseal licence service-seal）",
            "no service seal is configured for annotated copies (eseal licence service-seal)",
        )
    return row


# --- use ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivered:
    identifier: str
    kind: str  # original | copy
    data: bytes
    grant_id: str | None
    file_format: str = "ofd"  # ofd | pdf (the sealed print copy)

    @property
    def file_name(self) -> str:
        suffix = ".copy.ofd" if self.kind == "copy" else f".{self.file_format}"
        return f"{self.identifier}{suffix}"


@dataclass(frozen=True)
class _Refusal:
    error: EsealError
    reason: str
    licence_id: str | None
    base: str
    identifier: str


def make_annotated_copy(
    session: Session,
    services: LicenceServices,
    licence: Licence,
    *,
    user: str,
    purpose: str,
    valid_until: dt.datetime,
    grant_id: str,
    actor: str,
    now: dt.datetime,
) -> bytes:
    """Render the annotated copy of ``licence`` and seal it with the service seal (caller's transaction)."""
    lt = session.get(LicenceType, licence.type_id)
    assert lt is not None  # foreign key
    original = services.blobs.get(licence.ofd_sm3)
    ident = parse_identifier(licence.identifier)
    view = licence_view(
        lt, metadata_of(licence), ident, licence.issuer_name, services.verify_url(licence.identifier)
    )
    note = Annotation(
        user=user,
        purpose=purpose,
        made_at=now,
        valid_until=valid_until,
        grant_id=grant_id,
        original_sm3=licence.ofd_sm3,
    )
    unsealed = render_annotated_copy(view, note, original)
    service = get_service_seal(session)
    pkg = OfdPackage(unsealed)
    pages = len(read_document(pkg, read_doc_bodies(pkg)[0].doc_root or "").pages)
    return seal_ofd(
        session,
        services.keystore,
        unsealed,
        es_id=service.es_id,
        department_id=service.department_id,
        placement=AtPosition(pages, *COPY_SEAL_BOX),
        actor=actor,
        document_name=f"{licence.identifier}.copy.ofd",
    )


def _authorise(
    session: Session,
    licence: Licence,
    *,
    who: Accessor,
    holder_code: str | None,
    privileged: bool,
    grant_id: str | None,
    purpose: str | None,
    want_original: bool,
    now: dt.datetime,
) -> LicenceGrant | None:
    """None when ``who`` may use the licence without a grant (issuer, holder, privileged reader);
    else the grant that allows the use. Raises GrantRefused / InvalidInput / LicenceNotUsable."""
    own = (
        privileged
        or (who.department_id is not None and who.department_id == licence.issuer_department_id)
        or (holder_code is not None and holder_code == licence.holder_code)
    )
    if own:
        return None
    grant = check_grant(
        session,
        base_identifier=licence.base_identifier,
        department_id=who.department_id,
        grant_id=grant_id,
        want_original=want_original,
        now=now,
    )
    if purpose is not None and purpose.strip() and purpose.strip() != grant.purpose:
        raise InvalidInput(
            "用途与授权用途不一致",
            "the purpose differs from the purpose the holder granted",
            reason="purpose_mismatch",
        )
    status = status_of(licence)
    if status is not LicenceStatus.VALID:
        zh, en = label(status)
        raise LicenceNotUsable(
            f"证照当前状态为“{zh}”，不能使用", f"the licence is {en} and cannot be used", status=status.value
        )
    return grant


def _refuse(
    sessions: sessionmaker[Session],
    refusal: _Refusal,
    who: Accessor,
    purpose: str | None,
    grant_id: str | None,
) -> EsealError:
    record_refusal(
        sessions,
        identifier=refusal.identifier,
        base_identifier=refusal.base,
        who=who,
        reason_code=refusal.reason,
        licence_id=refusal.licence_id,
        purpose=purpose,
        grant_id=grant_id,
    )
    return refusal.error


def _refusal(exc: EsealError, licence: Licence) -> _Refusal:
    return _Refusal(
        exc, str(exc.details.get("reason", exc.code)), licence.id, licence.base_identifier, licence.identifier
    )


def read_licence(
    sessions: sessionmaker[Session],
    identifier: str,
    *,
    who: Accessor,
    holder_code: str | None = None,
    privileged: bool = False,
    grant_id: str | None = None,
    purpose: str | None = None,
) -> dict[str, Any]:
    """The record of one version (any version: the issuer, holder and privileged readers see history;
    a grantee sees the current version). Logged as ``read``; a refusal is logged and raised."""
    refusal: _Refusal | None = None
    with transaction(sessions) as s:
        row = get_licence(s, identifier)
        try:
            grant = _authorise(
                s,
                row if row.superseded_by is None else current_version(s, row.base_identifier),
                who=who,
                holder_code=holder_code,
                privileged=privileged,
                grant_id=grant_id,
                purpose=purpose,
                want_original=False,
                now=utcnow(),
            )
            if grant is not None and row.superseded_by is not None:
                row = current_version(s, row.base_identifier)
        except EsealError as exc:
            refusal = _refusal(exc, row)
        if refusal is None:
            record(
                s,
                action=AccessAction.READ,
                identifier=row.identifier,
                base_identifier=row.base_identifier,
                who=who,
                licence=row,
                purpose=grant.purpose if grant is not None else purpose,
                grant_id=grant.id if grant is not None else None,
            )
            return licence_dict(row)
    assert refusal is not None
    raise _refuse(sessions, refusal, who, purpose, grant_id)


def use_licence(
    sessions: sessionmaker[Session],
    services: LicenceServices,
    *,
    identifier: str,
    who: Accessor,
    holder_code: str | None = None,
    privileged: bool = False,
    grant_id: str | None = None,
    purpose: str | None = None,
    want_original: bool = False,
    copy_valid_until: dt.datetime | None = None,
    pdf: bool = False,
) -> Delivered:
    """The current version of the licence as the original file or an annotated copy; with ``pdf``,
    its sealed print PDF (only with ``want_original``: same rules as the OFD original; PdfNotAvailable,
    404 and not logged, when the version has none).

    Allowed without a grant: the issuing department (``who.department_id``), the holder
    (``holder_code``) and ``privileged`` readers (auditors, administrators). Anyone else needs a
    grant from the holder (:func:`grants.check_grant`); a refusal — no grant, expired, withdrawn,
    original not granted, other purpose, licence not valid — is logged in its own transaction and
    raised (403 / 400 / 409). A purpose is required for copies made without a grant.
    """
    if pdf and not want_original:
        raise InvalidInput(
            "加注件只提供 OFD 格式；打印版 PDF 只能按原件获取",
            "annotated copies are OFD only; the print PDF is fetched as an original",
        )
    base = parse_identifier(identifier).base
    refusal: _Refusal | None = None
    with transaction(sessions) as s:
        now = utcnow().replace(microsecond=0)
        licence = current_version(s, base)
        try:
            grant = _authorise(
                s,
                licence,
                who=who,
                holder_code=holder_code,
                privileged=privileged,
                grant_id=grant_id,
                purpose=purpose,
                want_original=want_original,
                now=now,
            )
        except EsealError as exc:
            refusal = _refusal(exc, licence)
        if refusal is None:
            use_purpose: str | None
            if grant is not None:
                use_purpose = grant.purpose
            elif want_original:
                use_purpose = (purpose or "").strip()[:500] or None
            else:
                use_purpose = check_purpose(purpose or "")
            details: dict[str, str] = {"file_sm3": licence.ofd_sm3}
            if pdf:
                data = licence_pdf(services, licence)
                details = {"file_sm3": licence.pdf_sm3 or "", "format": "pdf"}
                action = AccessAction.DOWNLOAD
            elif want_original:
                data = services.blobs.get(licence.ofd_sm3)
                action = AccessAction.DOWNLOAD
            else:
                until = grant.valid_until if grant is not None else None
                until = until or copy_valid_until or now + dt.timedelta(days=DEFAULT_COPY_DAYS)
                user = who.actor
                if who.department_id is not None:
                    user = f"{get_department(s, who.department_id).name}（{who.actor}）"
                data = make_annotated_copy(
                    s,
                    services,
                    licence,
                    user=user,
                    purpose=use_purpose or "",
                    valid_until=until,
                    grant_id=grant.id if grant is not None else "-",
                    actor=who.actor,
                    now=now,
                )
                action = AccessAction.COPY
                details["copy_sm3"] = sm3(data).hex()
            record(
                s,
                action=action,
                identifier=licence.identifier,
                base_identifier=base,
                who=who,
                licence=licence,
                purpose=use_purpose,
                grant_id=grant.id if grant is not None else None,
                details=details,
            )
            kind = "original" if want_original else "copy"
            return Delivered(
                licence.identifier,
                kind,
                data,
                grant.id if grant is not None else None,
                "pdf" if pdf else "ofd",
            )
    assert refusal is not None
    raise _refuse(sessions, refusal, who, purpose, grant_id)


__all__ = [
    "Delivered",
    "LicenceNotUsable",
    "get_service_seal",
    "make_annotated_copy",
    "read_licence",
    "set_service_seal",
    "use_licence",
]
