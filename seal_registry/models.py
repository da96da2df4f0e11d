"""ORM models of the seal registry: departments, region certificates, seals and their history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UtcDateTime


class Department(Base):
    """A department (业务部门) that holds seals and stamps documents."""

    __tablename__ = "departments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18), unique=True)  # 统一社会信用代码
    region_code: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PkiCertificate(Base):
    """A certificate the region holds: its CA, seal maker, TSA, service key, department signers, anchors."""

    __tablename__ = "pki_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    role: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    issuer: Mapped[str] = mapped_column(String(500))
    serial_hex: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
    sm3: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    department_id: Mapped[str | None] = mapped_column(ForeignKey("departments.id"), nullable=True, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("issuer", "serial_hex", name="uq_pki_certificates_issuer_serial"),)


class Seal(Base):
    """One seal (电子印章) through its whole life, from application to cancellation."""

    __tablename__ = "seals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    es_id: Mapped[str] = mapped_column(String(64), unique=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    seal_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    picture_type: Mapped[str] = mapped_column(String(8))
    picture: Mapped[bytes] = mapped_column(LargeBinary)
    width_mm: Mapped[int] = mapped_column(Integer)
    height_mm: Mapped[int] = mapped_column(Integer)
    valid_start: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_end: Mapped[datetime] = mapped_column(UtcDateTime())
    signer_certificate_id: Mapped[int] = mapped_column(ForeignKey("pki_certificates.id"))
    seal_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    seal_sm3: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    previous_seal_id: Mapped[str | None] = mapped_column(ForeignKey("seals.id"), nullable=True)
    applicant: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Bumped on every transition; the status snapshot's sequence number is derived from it.
    revision: Mapped[int] = mapped_column(Integer, default=0)

    department: Mapped[Department] = relationship()
    signer_certificate: Mapped[PkiCertificate] = relationship()
    events: Mapped[list[SealEvent]] = relationship(order_by="SealEvent.id", back_populates="seal")


class SealEvent(Base):
    """One state transition: who, why, when. The audit chain holds the same fact, hash-linked."""

    __tablename__ = "seal_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seal_id: Mapped[str] = mapped_column(ForeignKey("seals.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    seal: Mapped[Seal] = relationship(back_populates="events")


class SealCodeCounter(Base):
    """Next serial per (region, seal type): esID = region(6) ‖ type(2) ‖ serial(6)."""

    __tablename__ = "seal_code_counters"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    next_serial: Mapped[int] = mapped_column(Integer)
