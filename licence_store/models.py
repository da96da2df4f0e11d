"""ORM models of the licence store: the catalogue, licences (one row per version), their history,
holder grants, the access log, objections, the service seal and stock imports.

Facts that must be tamper-evident also go to the audit chain (``core.audit``) in the same
transaction; these tables are what the service queries.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UtcDateTime


class LicenceType(Base):
    """A catalogue entry (GB/T 36902): what a licence of this type holds and how it is made."""

    __tablename__ = "licence_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type_code: Mapped[str] = mapped_column(String(21), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    defining_authority_name: Mapped[str] = mapped_column(String(200))
    defining_authority_code: Mapped[str] = mapped_column(String(18))
    # JSON list of the issuing authorities' unified social credit codes; empty: any department.
    issuing_authorities: Mapped[str] = mapped_column(Text)
    metadata_schema: Mapped[str] = mapped_column(Text)  # JSON Schema of the type's own fields
    template: Mapped[str] = mapped_column(Text)  # JSON rendering template
    seal_type: Mapped[str] = mapped_column(String(32))
    default_valid_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: long-term
    # 同步生成、同步签章: issuing also renders a print PDF and seals it with the same seal.
    print_pdf: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Licence(Base):
    """One version of a licence. A change or renewal adds a row and marks this one superseded."""

    __tablename__ = "licences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(128), unique=True)
    base_identifier: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    type_id: Mapped[str] = mapped_column(ForeignKey("licence_types.id"), index=True)
    type_code: Mapped[str] = mapped_column(String(21), index=True)
    type_name: Mapped[str] = mapped_column(String(200))
    licence_number: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    issuer_department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    issuer_name: Mapped[str] = mapped_column(String(200))
    issuer_code: Mapped[str] = mapped_column(String(18), index=True)
    issue_date: Mapped[date] = mapped_column(Date, index=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date, nullable=True)  # None: long-term (长期)
    holder_name: Mapped[str] = mapped_column(String(200))
    holder_code: Mapped[str] = mapped_column(String(64), index=True)
    holder_code_type: Mapped[str] = mapped_column(String(32))
    area_code: Mapped[str] = mapped_column(String(12))
    service_item: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(2), index=True)
    previous_identifier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    superseded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fields_json: Mapped[str] = mapped_column(Text)  # the type's own fields, canonical JSON
    es_id: Mapped[str] = mapped_column(String(64))
    ofd_sm3: Mapped[str] = mapped_column(String(64))
    ofd_size: Mapped[int] = mapped_column(Integer)
    # The sealed print PDF of this version (types with ``print_pdf``); the OFD stays the legal copy.
    pdf_sm3: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdf_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(255))

    licence_type: Mapped[LicenceType] = relationship()
    events: Mapped[list[LicenceEvent]] = relationship(order_by="LicenceEvent.id", back_populates="licence")

    __table_args__ = (
        UniqueConstraint("issuer_department_id", "client_key", name="uq_licences_issuer_client_key"),
    )


class LicenceEvent(Base):
    """One step in a licence version's life: issued, changed, withheld, returned, revoked…"""

    __tablename__ = "licence_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(2), nullable=True)
    to_status: Mapped[str] = mapped_column(String(2))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    licence: Mapped[Licence] = relationship(back_populates="events")


class LicenceSerialCounter(Base):
    """Next sequence number per serial prefix (type, issuer, area, year)."""

    __tablename__ = "licence_serial_counters"

    prefix: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_serial: Mapped[int] = mapped_column(Integer)


class LicenceGrant(Base):
    """A holder's authorisation (精准授权): a department may use a licence for a purpose until a time."""

    __tablename__ = "licence_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    base_identifier: Mapped[str] = mapped_column(String(128), index=True)
    holder_code: Mapped[str] = mapped_column(String(64), index=True)
    grantee_department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(500))
    allow_original: Mapped[bool] = mapped_column(Boolean)
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class LicenceAccess(Base):
    """One use of a licence (read, download, copy, verification, refusal); mirrors an audit entry."""

    __tablename__ = "licence_access"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_seq: Mapped[int] = mapped_column(BigInteger, index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    identifier: Mapped[str] = mapped_column(String(128))
    base_identifier: Mapped[str] = mapped_column(String(128), index=True)
    holder_code: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    issuer_department_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    actor_department_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    purpose: Mapped[str | None] = mapped_column(String(500), nullable=True)
    grant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LicenceObjection(Base):
    """An objection (异议) on a licence and its handling (accepted with a correction, or rejected)."""

    __tablename__ = "licence_objections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(128))
    issuer_department_id: Mapped[str] = mapped_column(String(36), index=True)
    filed_by: Mapped[str] = mapped_column(String(255))
    filer_kind: Mapped[str] = mapped_column(String(16))  # holder | department
    filer_ref: Mapped[str] = mapped_column(String(64))  # holder code or department id
    field: Mapped[str] = mapped_column(String(100))
    claim: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    corrected_identifier: Mapped[str | None] = mapped_column(String(128), nullable=True)


class LicenceServiceSeal(Base):
    """The seal the service applies to annotated copies (加注件); a single row."""

    __tablename__ = "licence_service_seal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"))
    es_id: Mapped[str] = mapped_column(String(64))
    set_by: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LicenceImport(Base):
    """A stock import: rows validated up front, then rendered, sealed through a batch job
    (``signer.batch``) and recorded — each step resumable and idempotent per row."""

    __tablename__ = "licence_imports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type_id: Mapped[str] = mapped_column(ForeignKey("licence_types.id"))
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    es_id: Mapped[str] = mapped_column(String(64))
    batch_job_id: Mapped[str] = mapped_column(String(36))
    source_sm3: Mapped[str] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("department_id", "source_sm3", name="uq_licence_imports_department_source"),
    )


class LicenceImportRow(Base):
    """One row of a stock import: pending → rendered (identifier assigned, queued for sealing) →
    issued (licence recorded) or failed."""

    __tablename__ = "licence_import_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(ForeignKey("licence_imports.id"))
    row_no: Mapped[int] = mapped_column(Integer)
    client_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)  # the row's validated metadata, canonical JSON
    state: Mapped[str] = mapped_column(String(16))
    identifier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    rendered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("import_id", "row_no", name="uq_licence_import_rows_import_row"),
        Index("ix_licence_import_rows_import_state", "import_id", "state"),
    )
