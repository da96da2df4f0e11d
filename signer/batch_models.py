"""ORM models of batch sealing: a job (one seal, one way of signing) and its items (one document each).

An item is ``pending`` until one transaction marks it ``done`` (with the SM3 of its stored output)
or ``failed`` (with a typed error code and a bilingual message). Inputs and outputs live in the
content-addressed blob store (:mod:`core.blobstore`); rows only name them by SM3.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime

MAX_JOB_NAME = 200
MAX_CLIENT_KEY = 255
MAX_INPUT_NAME = 255


class JobKind(enum.StrEnum):
    OFD = "ofd"  # seal the first document of each OFD package
    SES = "ses"  # a detached SES_Signature over each input's bytes


class ItemState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class BatchJob(Base):
    """What every item of the job is signed with and how; immutable once created."""

    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(MAX_JOB_NAME), unique=True, nullable=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    es_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    mode: Mapped[str] = mapped_column(String(16))
    # JSON of the placement options (page, x, y, keyword, occurrence, riding); NULL: invisible.
    placement: Mapped[str | None] = mapped_column(Text, nullable=True)
    timestamp: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    def __repr__(self) -> str:
        return f"BatchJob(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, es_id={self.es_id!r})"


class BatchItem(Base):
    """One document of a job, identified inside the job by the client's key (idempotency)."""

    __tablename__ = "batch_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("batch_jobs.id"))
    client_key: Mapped[str] = mapped_column(String(MAX_CLIENT_KEY))
    input_name: Mapped[str] = mapped_column(String(MAX_INPUT_NAME))
    input_sm3: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    output_sm3: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    signing_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_zh: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_en: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("job_id", "client_key", name="uq_batch_items_job_key"),
        Index("ix_batch_items_job_state", "job_id", "state"),
    )

    def __repr__(self) -> str:
        return f"BatchItem(id={self.id}, key={self.client_key!r}, state={self.state!r})"


__all__ = [
    "MAX_CLIENT_KEY",
    "MAX_INPUT_NAME",
    "MAX_JOB_NAME",
    "BatchItem",
    "BatchJob",
    "ItemState",
    "JobKind",
]
