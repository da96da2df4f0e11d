"""Sweeping the blob store: which stored files the records still name, and removing the rest.

Files reach the blob store before the row that names them commits (a crash or a rollback in
between leaves the file behind, harmless but never freed). The records that name blobs live in
several domain packages, so this module, above them all, gathers their names; the store itself
(:meth:`core.blobstore.BlobStore.sweep`) decides what may go, sparing anything stored recently.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.blobstore import SweepReport
from core.db import transaction
from licence_store.models import Licence, LicenceImportRow
from licence_store.stock_import import STOCK_FILE_KEY, split_payload
from signer.batch_models import BatchItem

from .context import ServiceContext

# A day: far longer than any transaction that writes a blob and then the row naming it.
DEFAULT_GRACE = dt.timedelta(hours=24)


def referenced_blobs(session: Session) -> set[str]:
    """Every blob id a record names: batch inputs and outputs, licence files (OFD and print PDF),
    and the stock files of import rows not yet issued."""
    names: set[str] = set()
    names.update(session.scalars(select(BatchItem.input_sm3)))
    names.update(v for v in session.scalars(select(BatchItem.output_sm3)) if v)
    names.update(session.scalars(select(Licence.ofd_sm3)))
    names.update(v for v in session.scalars(select(Licence.pdf_sm3)) if v)
    payloads = select(LicenceImportRow.payload).where(LicenceImportRow.payload.contains(STOCK_FILE_KEY))
    for payload in session.scalars(payloads):
        _meta, stock = split_payload(payload)
        if stock is not None:
            names.add(str(stock["sm3"]))
    return names


def sweep_blobs(
    ctx: ServiceContext, *, grace: dt.timedelta = DEFAULT_GRACE, dry_run: bool = False, actor: str
) -> SweepReport:
    """Remove unreferenced blobs older than ``grace``; a real sweep is audited (``blobs.swept``)."""

    def referenced() -> set[str]:
        with ctx.sessions() as s:
            return referenced_blobs(s)

    report = ctx.blobs.sweep(referenced, older_than=grace, dry_run=dry_run)
    if not dry_run and (report.removed or report.temporaries):
        with transaction(ctx.sessions) as s:
            audit_append(
                s,
                actor=actor,
                action="blobs.swept",
                subject_type="blob_store",
                subject_id="blobs",
                details={**report.to_json(), "grace_seconds": int(grace.total_seconds())},
            )
    return report
