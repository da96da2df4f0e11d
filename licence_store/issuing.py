"""Issuing a licence in one transaction: validate → identifier → render → seal → store → audit.

:func:`issue_licence` runs every step inside the caller's session; the caller commits. The order
matters for what a crash can leave behind:

1. the metadata is checked against the core set and the type's schema (nothing written yet);
2. the serial is taken from a counter row, locked until commit;
3. the OFD is rendered from the type's template, with the QR code of the online check;
4. :func:`signer.ofd_sealing.seal_ofd` authorises the department's seal, signs and appends its
   ``signature.made`` audit entry — in this same transaction;
5. for a type with ``print_pdf`` (同步生成、同步签章), the same view is rendered as a print-ready PDF
   (:mod:`licence_store.print_rendering`) and sealed with the same seal at the same place through
   :func:`signer.pdf_sealing.seal_pdf` (SM2, GB/T 35275, visible seal) — authorised again and
   audited as a second ``signature.made``, still in this transaction;
6. the sealed files go to the blob store (content-addressed by SM3; written and fsynced before the
   record that names them can commit) only once every seal has been applied;
7. the licence row, its event and the ``licence.issued`` audit entry are written last.

If anything fails or the process dies before commit, the transaction rolls back as a whole: no
licence row, no serial used, no audit entries, no signature record. At most the blobs of the version
(OFD, PDF) remain without a record; being named by their content, they are harmless and never served
(every read goes through a licence row).

Changes and renewals (:mod:`licence_store.lifecycle`) make their new version with :func:`make_version`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.audit import canonical_json
from core.blobstore import BlobStore
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound, NotUsable
from hsm_adapters.keystore import KeyStore
from seal_registry.departments import get_department
from seal_registry.lifecycle import SealState
from seal_registry.models import Department, Seal
from seal_registry.seals import get_seal, list_seals
from signer.ofd_sealing import seal_ofd
from signer.pdf_sealing import KeyKind, seal_pdf
from signer.placement import AtPosition

from .catalogue import A4, DEFAULT_SEAL_BOX, check_issuer, get_type, type_template, validate_for_type
from .identifier import LicenceIdentifier, make_identifier
from .metadata import HOLDER_CODE_TYPES, LicenceMetadata, today_in_china
from .models import Licence, LicenceEvent, LicenceSerialCounter, LicenceType
from .print_rendering import render_licence_pdf
from .rendering import LicenceView, doc_id_for, render_licence
from .status import LicenceStatus

MAX_SEQUENCE: Final = 99_999_999
VERIFY_PATH: Final = "/v1/licences/check"


class PdfNotAvailable(NotFound):
    """The licence version has no print PDF (its type does not ask for one, or it predates the flag)."""

    code = "licence_pdf_not_available"
    title_zh, title_en = "无打印版 PDF", "No print PDF"


@dataclass(frozen=True)
class LicenceServices:
    """What issuing needs besides the session: the key store, the blob store, the public base URL."""

    keystore: KeyStore
    blobs: BlobStore
    public_base_url: str

    def verify_url(self, identifier: str) -> str:
        return f"{self.public_base_url.rstrip('/')}{VERIFY_PATH}?id={identifier}"


# --- pieces ---------------------------------------------------------------------------------------------
def allocate_serial(session: Session, type_code: str, issuer_code: str, area_code: str, year: int) -> str:
    """area (6) ‖ year (4) ‖ sequence (8); the counter row stays locked until the caller commits."""
    area = area_code[:6]
    prefix = f"{type_code}.{issuer_code}.{area}{year:04d}"
    values = {"prefix": prefix, "next_serial": 1}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(LicenceSerialCounter).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(LicenceSerialCounter).values(values).on_conflict_do_nothing())
    counter = session.scalar(
        select(LicenceSerialCounter)
        .where(LicenceSerialCounter.prefix == prefix)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if counter is None:  # pragma: no cover - inserted just above
        raise Conflict("无法分配证照序号", "could not allocate a licence serial")
    sequence = counter.next_serial
    if sequence > MAX_SEQUENCE:
        raise Conflict(f"序号段 {prefix} 已用尽", f"serials for {prefix} are exhausted")
    counter.next_serial = sequence + 1
    return f"{area}{year:04d}{sequence:08d}"


def choose_seal(
    session: Session, dept: Department, seal_type: str, es_id: str | None, at: dt.datetime
) -> str:
    """The seal to issue with: the one asked for (it must be of the type's seal type), else the
    department's newest issued seal of that type valid now. Whether it may sign is decided later by
    :func:`seal_registry.seals.authorize_use`."""
    if es_id:
        seal = get_seal(session, es_id)
        if seal.seal_type != seal_type:
            raise InvalidInput(
                f"印章 {seal.es_id} 的类型为 {seal.seal_type}，该类证照须使用 {seal_type} 类印章",
                f"seal {seal.es_id} is of type {seal.seal_type}; this licence type needs a {seal_type} seal",
            )
        return seal.es_id
    candidates: list[Seal] = [
        s
        for s in list_seals(session, department_id=dept.id, state=SealState.ISSUED)
        if s.seal_type == seal_type and s.valid_start <= at <= s.valid_end
    ]
    if not candidates:
        raise NotUsable(
            f"部门“{dept.name}”没有可用的 {seal_type} 类印章",
            f"department '{dept.name}' has no usable {seal_type} seal",
            seal_type=seal_type,
        )
    return max(candidates, key=lambda s: (s.valid_start, s.es_id)).es_id


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(_value_text(v) for v in value)
    if isinstance(value, dict):
        return canonical_json(value)
    return "" if value is None else str(value)


def seal_box(lt: LicenceType) -> tuple[float, float]:
    """Where the issuer's seal goes on page 1 (top-left corner, mm): the template's, or the default."""
    seal = type_template(lt).get("seal")
    return (float(seal["x"]), float(seal["y"])) if seal else DEFAULT_SEAL_BOX


def licence_view(
    lt: LicenceType, meta: LicenceMetadata, ident: LicenceIdentifier, issuer_name: str, verify_url: str
) -> LicenceView:
    """What the licence file shows, from the type's template and the metadata."""
    tpl = type_template(lt)
    code_label = HOLDER_CODE_TYPES.get(meta.holder_code_type, ("持证主体代码", ""))[0]
    rows: list[tuple[str, str]] = [
        ("证照编号", meta.licence_number),
        ("持证主体", meta.holder_name),
        (code_label, meta.holder_code),
    ]
    for item in tpl.get("fields", []):
        key = item["key"]
        if key in meta.fields:
            rows.append((item.get("label", key), _value_text(meta.fields[key])))
    until = "长期" if meta.valid_until is None else meta.valid_until.isoformat()
    rows.append(("有效期", f"{meta.valid_from.isoformat()} 至 {until}"))
    if meta.service_item:
        rows.append(("关联事项", meta.service_item))
    page = tpl.get("page")
    return LicenceView(
        identifier=str(ident),
        title=str(tpl.get("title") or lt.name),
        subtitle=meta.name if meta.name != (tpl.get("title") or lt.name) else tpl.get("subtitle"),
        rows=rows,
        issuer_name=issuer_name,
        issue_date=meta.issue_date,
        verify_url=verify_url,
        doc_id=doc_id_for(str(ident)),
        page_size=(float(page["width"]), float(page["height"])) if page else A4,
        seal_box=seal_box(lt),
        footer=tpl.get("footer"),
        custom_data=(
            ("licence.identifier", str(ident)),
            ("licence.number", meta.licence_number),
            ("licence.type_code", lt.type_code),
            ("licence.version", f"{ident.version:03d}"),
        ),
    )


def check_number_free(
    session: Session, lt: LicenceType, dept: Department, number: str, base: str | None
) -> None:
    clash = session.scalar(
        select(Licence.identifier).where(
            Licence.type_id == lt.id,
            Licence.issuer_department_id == dept.id,
            Licence.licence_number == number,
            Licence.superseded_by.is_(None),
            *([Licence.base_identifier != base] if base else []),
        )
    )
    if clash is not None:
        raise Conflict(
            f"证照编号 {number} 已被证照 {clash} 使用",
            f"licence number {number} is already used by {clash}",
            identifier=clash,
        )


def make_version(
    session: Session,
    services: LicenceServices,
    *,
    lt: LicenceType,
    dept: Department,
    meta: LicenceMetadata,
    ident: LicenceIdentifier,
    es_id: str,
    actor: str,
    now: dt.datetime,
    previous: Licence | None = None,
    client_key: str | None = None,
    seal_time: dt.datetime | None = None,
) -> Licence:
    """Render, seal and store one version (the OFD, and the print PDF when the type asks for it);
    the row is added (not yet audited) and returned."""
    view = licence_view(lt, meta, ident, dept.name, services.verify_url(str(ident)))
    unsealed = render_licence(view, when=now)
    sealed = seal_ofd(
        session,
        services.keystore,
        unsealed,
        es_id=es_id,
        department_id=dept.id,
        placement=AtPosition(1, *view.seal_box),
        actor=actor,
        now=seal_time,
        document_name=f"{ident}.ofd",
    )
    pdf: bytes | None = None
    if lt.print_pdf:
        pdf = seal_print_pdf(session, services, view, es_id=es_id, dept=dept, actor=actor, now=now)
    # Stored only now that every seal is on: a failure above leaves no blob at all.
    blob_id = services.blobs.put(sealed)
    pdf_id = services.blobs.put(pdf) if pdf is not None else None
    row = licence_row(
        lt,
        meta,
        dept,
        ident,
        es_id=es_id,
        ofd_sm3=blob_id,
        ofd_size=len(sealed),
        pdf_sm3=pdf_id,
        pdf_size=len(pdf) if pdf is not None else None,
        previous_identifier=previous.identifier if previous is not None else None,
        client_key=client_key,
        at=now,
        actor=actor,
    )
    session.add(row)
    return row


def licence_row(
    lt: LicenceType,
    meta: LicenceMetadata,
    dept: Department,
    ident: LicenceIdentifier,
    *,
    es_id: str,
    ofd_sm3: str,
    ofd_size: int,
    client_key: str | None,
    at: dt.datetime,
    actor: str,
    pdf_sm3: str | None = None,
    pdf_size: int | None = None,
    previous_identifier: str | None = None,
) -> Licence:
    """A valid (01) licence version's row from its validated metadata and its sealed file(s); one
    place for issuing, changes and stock imports alike. Not added to a session."""
    return Licence(
        id=str(uuid.uuid4()),
        identifier=str(ident),
        base_identifier=ident.base,
        version=ident.version,
        type_id=lt.id,
        type_code=lt.type_code,
        type_name=lt.name,
        licence_number=meta.licence_number,
        name=meta.name,
        issuer_department_id=dept.id,
        issuer_name=dept.name,
        issuer_code=dept.uscc,
        issue_date=meta.issue_date,
        valid_from=meta.valid_from,
        valid_until=meta.valid_until,
        holder_name=meta.holder_name,
        holder_code=meta.holder_code,
        holder_code_type=meta.holder_code_type,
        area_code=meta.area_code,
        service_item=meta.service_item,
        status=LicenceStatus.VALID.value,
        previous_identifier=previous_identifier,
        superseded_by=None,
        fields_json=canonical_json(dict(meta.fields)),
        es_id=es_id,
        ofd_sm3=ofd_sm3,
        ofd_size=ofd_size,
        pdf_sm3=pdf_sm3,
        pdf_size=pdf_size,
        client_key=client_key,
        issued_at=at,
        status_changed_at=at,
        created_by=actor,
    )


def seal_print_pdf(
    session: Session,
    services: LicenceServices,
    view: LicenceView,
    *,
    es_id: str,
    dept: Department,
    actor: str,
    now: dt.datetime,
) -> bytes:
    """The print PDF of ``view`` sealed like the OFD: same seal, same place on page 1. SM2 with the
    seal's own certificate (GB/T 35275 SignedData), so eseal's verifier checks it against the same
    region root as the OFD; the seal is authorised again, so a seal that stopped being usable stops
    the whole issue."""
    unsealed = render_licence_pdf(view, when=now)
    x_mm, y_mm = view.seal_box
    return seal_pdf(
        session,
        services.keystore,
        unsealed,
        es_id=es_id,
        department_id=dept.id,
        page=1,
        x_mm=x_mm,
        y_mm=y_mm,
        key_kind=KeyKind.SM2,
        actor=actor,
    )


def add_event(
    session: Session,
    row: Licence,
    action: str,
    from_status: str | None,
    actor: str,
    reason: str,
    at: dt.datetime,
) -> None:
    session.add(
        LicenceEvent(
            licence_id=row.id,
            action=action,
            from_status=from_status,
            to_status=row.status,
            actor=actor,
            reason=reason,
            at=at,
        )
    )


def issue_licence(
    session: Session,
    services: LicenceServices,
    *,
    type_ref: str,
    department_id: str,
    metadata: Mapping[str, Any],
    actor: str,
    es_id: str | None = None,
    client_key: str | None = None,
    now: dt.datetime | None = None,
) -> Licence:
    """Issue a new licence (version 001) in the caller's transaction; see the module docstring.

    Raises MetadataInvalid (field-level errors), PermissionDenied (the department may not issue the
    type, or the seal is not its own), NotUsable (no usable seal), Conflict (licence number in use,
    or ``client_key`` already issued — the existing identifier is in the details).
    """
    now = (now or utcnow()).replace(microsecond=0)
    lt = get_type(session, type_ref)
    dept = get_department(session, department_id)
    check_issuer(lt, dept)
    meta = validate_for_type(lt, metadata, dept, today=today_in_china(now))
    if client_key is not None:
        existing = find_by_client_key(session, dept.id, client_key)
        if existing is not None:
            raise Conflict(
                f"客户端键 {client_key} 已签发为 {existing.identifier}",
                f"client key {client_key} was already issued as {existing.identifier}",
                identifier=existing.identifier,
            )
    check_number_free(session, lt, dept, meta.licence_number, None)
    seal = choose_seal(session, dept, lt.seal_type, es_id, now)
    serial = allocate_serial(session, lt.type_code, dept.uscc, meta.area_code, today_in_china(now).year)
    ident = make_identifier(lt.type_code, dept.uscc, serial, 1)
    row = make_version(
        session,
        services,
        lt=lt,
        dept=dept,
        meta=meta,
        ident=ident,
        es_id=seal,
        actor=actor,
        now=now,
        client_key=client_key,
    )
    session.flush()
    add_event(session, row, "issue", None, actor, "", now)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.issued",
        subject_type="licence",
        subject_id=row.base_identifier,
        details={
            "identifier": row.identifier,
            "version": row.version,
            "type_code": lt.type_code,
            "licence_number": row.licence_number,
            "department_id": dept.id,
            "es_id": seal,
            "file_sm3": row.ofd_sm3,
            **({"pdf_sm3": row.pdf_sm3} if row.pdf_sm3 is not None else {}),
            **({"client_key": client_key} if client_key is not None else {}),
        },
    )
    return row


def find_by_client_key(session: Session, department_id: str, client_key: str) -> Licence | None:
    return session.scalar(
        select(Licence).where(Licence.issuer_department_id == department_id, Licence.client_key == client_key)
    )


def licence_file(services: LicenceServices, row: Licence) -> bytes:
    """The sealed OFD of a version, checked against its SM3 name by the blob store."""
    return services.blobs.get(row.ofd_sm3)


def licence_pdf(services: LicenceServices, row: Licence) -> bytes:
    """The sealed print PDF of a version; PdfNotAvailable (404) when it has none."""
    if row.pdf_sm3 is None:
        raise PdfNotAvailable(
            f"证照 {row.identifier} 没有打印版 PDF（其证照类型未要求同步生成 PDF）",
            f"licence {row.identifier} has no print PDF (its type does not ask for one)",
            identifier=row.identifier,
        )
    return services.blobs.get(row.pdf_sm3)


def fields_of(row: Licence) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row.fields_json)
    return value


__all__ = [
    "VERIFY_PATH",
    "LicenceServices",
    "PdfNotAvailable",
    "add_event",
    "allocate_serial",
    "choose_seal",
    "find_by_client_key",
    "issue_licence",
    "licence_file",
    "licence_pdf",
    "licence_row",
    "licence_view",
    "make_version",
    "seal_box",
    "seal_print_pdf",
]
