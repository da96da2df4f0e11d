"""One group of batch items sealed in one transaction, in a pool process or inline.

Each process (pool worker, or the caller when a job runs inline) holds :class:`WorkerResources`: its
own engine, key store and blob store, opened from the settings, because the SM2 backend holds the
GIL and parallel signing needs processes. Per job it caches what does not change between items: the
job's parameters, the seal bytes and their parse (the picture size every document's stamps need),
and a :class:`JobSigner` (seal parsed once, signer key checked against the certificate once, the
certificate's public key with its Z value, the constant parts of TBS_Sign and SES_Signature),
rebuilt whenever authorisation returns different seal or signer facts.

A group goes through :func:`process_group` in four phases:

1. **Outside any lock**: read the pending items and their inputs (blob store, SM3-checked), analyse
   and prepare each document (:func:`signer.ofd_sealing.analyse_ofd` / ``prepare_seal``, which reads
   back the parts it wrote) for a signing time ``now`` chosen here, lay out each sealed package but
   for its signed value (``draft_sealed``: kept entries copied as stored, new ones deflated), build
   each TBS_Sign. Both workers do this in parallel.
2. **Authorisation**, a short transaction of its own: :func:`seal_registry.seals.authorize_use` at
   ``now``. A refusal (seal suspended, cancelled, expired, not the department's, certificate
   revoked) fails the group's items with that error; nothing is signed.
3. **Signing, outside any lock** (both workers in parallel): per item the SM2 signature, checked
   against the certificate's key before use (and time-stamped if the job asks), the sealed package
   finished and re-read (:func:`signer.ofd_sealing.check_sealed_package`), the output written into
   the blob store; one file-system sync makes the group's outputs durable. No record names them yet.
4. **One transaction**: ``authorize_use`` again at ``now``, so a suspension, cancellation or
   revocation that committed while the group was signed refuses the whole group (its signatures
   are never delivered: no row names them, no audit entry records them); a seal remade or a
   certificate changed meanwhile makes the group start again. Then which items are still pending
   (``FOR UPDATE`` on PostgreSQL; SQLite's write lock) so a concurrent runner never makes one sign
   twice, the item rows ``done`` or ``failed``, the group's ``signature.made`` audit entries with one
   move of the chain head (:func:`core.audit.append_many`), commit. Nothing of a group is visible
   unless all of it committed: a crash (``kill -9``) before leaves the items ``pending`` and at most
   unreferenced blobs behind.

Phases 2 and 4 are all a group holds the database for: on SQLite, which has one writer, the
workers queue for them on a file lock (:meth:`WorkerResources.signing_turn`); on PostgreSQL they
share-lock the seal row. Keeping SM2 and the package work out of them is what lets two workers
sign in parallel on SQLite too. The key is used only after an authorisation, and its signatures
count only if a second one, in the recording transaction, agrees: a change of the seal's state
takes effect for every group that commits after it.

An unexpected error rolls the group back and leaves its items pending for the next run.

``now`` is at most :data:`MAX_PREPARATION_LAG` old when phase 4 authorises (else the group is
prepared and signed again): like :func:`seal_registry.seals.sign_prepared`, authorisation checks
the seal's and certificate's validity at the signing time written into the signature, and the
seal's state as it is when the lock is taken.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from asn1crypto import core as asn1
from sqlalchemy import Engine, make_url, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditRecord, append_many
from core.blobstore import BlobStore, StagedBlobs
from core.db import make_engine, make_session_factory, utcnow
from core.errors import ConfigurationError, CryptoError, EsealError, InvalidInput, NotFound, NotUsable
from core.settings import Settings
from gmpki import seal as ses
from gmpki import sm2
from gmpki.ofd import ContainerLimits, PackageDraft
from gmpki.sm3 import sm3, sm3_hex
from hsm_adapters.keystore import KeyStore, KeyStoreSigner
from seal_registry.models import Seal
from seal_registry.seals import SealGrant, authorize_use

from .batch_models import BatchItem, BatchJob, ItemState, JobKind
from .ofd_sealing import (
    OfdTarget,
    PreparedSeal,
    SealMode,
    analyse_ofd,
    assemble_sealed,
    draft_sealed,
    prepare_seal,
    sealing_mode,
)
from .placement import Placement, placement_from_options
from .ses_signing import default_property_info
from .tsa import TimeStampAuthority, TimestampClient

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("eseal.batch")

MAX_PREPARATION_LAG: Final = dt.timedelta(seconds=5)
_MAX_ATTEMPTS: Final = 3


# --- time-stamps -----------------------------------------------------------------------------------------
def signature_timestamper(
    settings: Settings, session: Session, keystore: KeyStore
) -> Callable[[bytes], bytes]:
    """The ``time_stamp`` hook of the signers: an RFC 3161 token over SM3 of the signature value.

    The configured TSAs (``ESEAL_TSA_URLS``) are tried in order, then the region's built-in TSA
    (which needs the region's TSA certificate; NotFound otherwise).
    """
    fallback = TimeStampAuthority.from_region(session, keystore, policy_oid=settings.tsa_policy_oid)
    client = TimestampClient(settings.tsa_urls, fallback=fallback)

    def stamp(signature: bytes) -> bytes:
        return client.timestamp(sm3(bytes(signature)), "sm3")

    return stamp


# --- the signer of one job ----------------------------------------------------------------------------
def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _bits(value: bytes) -> bytes:
    return bytes(asn1.OctetBitString(value).dump())


class JobSigner:
    """SES signatures (GB/T 38540 v4/v5) with one seal and one signer, checked once per job.

    Equivalent to :func:`gmpki.seal.make_ses_signature` (same TBS_Sign, same SES_Signature, same
    refusals), without repeating per signature what cannot change within a job: the seal is parsed
    once, the key is matched with the certificate once, the certificate's presence in the seal's list
    is checked once. Every signature is still verified with the certificate's key before it is used,
    and the first one made is also parsed back with :func:`gmpki.seal.parse_ses_signature`.
    """

    def __init__(self, grant: SealGrant, keystore: KeyStore) -> None:
        self.seal_der = bytes(grant.seal_der)
        self.certificate_der = bytes(grant.signer_certificate_der)
        self.key_id = grant.signer_key_id
        parsed = ses.parse_seal(self.seal_der)
        if parsed.version not in (4, 5) or parsed.header_version not in (4, 5):
            raise InvalidInput("只能用 4 或 5 版印章签章", "only version 4 and 5 seals can sign")
        public = ses.certificate_public_key(self.certificate_der)
        if public is None:
            raise InvalidInput(
                "签章者证书不含可用的 SM2 公钥", "the signer certificate has no usable SM2 key"
            )
        self._signer = KeyStoreSigner(keystore, self.key_id)
        if self._signer.public_key.point != public.point:
            raise InvalidInput("签章者私钥与证书公钥不匹配", "the signer key does not match the certificate")
        if ses.cert_list_contains(parsed, self.certificate_der) is not True:
            raise NotUsable(
                "签章者证书不在印章的证书列表中",
                "the signer certificate is not in the seal's certificate list",
            )
        # The certificate's key object is kept so that its Z value is computed once per job.
        self._public: sm2.SM2PublicKey = public
        self._tbs_head = bytes(asn1.Integer(parsed.header_version).dump()) + self.seal_der
        self._ses_middle = bytes(asn1.OctetString(self.certificate_der).dump()) + bytes(
            asn1.ObjectIdentifier(ses.SM2_WITH_SM3).dump()
        )
        self._structure_checked = False
        probe_time = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        if self.tbs(bytes(32), "eseal-probe", probe_time) != ses.build_tbs_sign(
            self.seal_der, bytes(32), "eseal-probe", probe_time
        ):
            raise ConfigurationError(
                "批量签章的 TBS_Sign 编码与 gmpki 不一致", "batch TBS_Sign encoding differs from gmpki's"
            )

    def matches(self, grant: SealGrant) -> bool:
        return (
            grant.seal_der == self.seal_der
            and grant.signer_certificate_der == self.certificate_der
            and grant.signer_key_id == self.key_id
        )

    def tbs(self, data_hash: bytes, property_info: str, when: dt.datetime) -> bytes:
        """DER TBS_Sign, byte for byte what :func:`gmpki.seal.build_tbs_sign` writes."""
        if len(data_hash) != 32:
            raise InvalidInput("dataHash 必须为 32 字节 SM3 摘要", "dataHash must be a 32-byte SM3 digest")
        if not property_info or not property_info.isascii():
            raise InvalidInput(
                "propertyInfo 必须为非空 ASCII 文本", "propertyInfo must be non-empty ASCII text"
            )
        if when.tzinfo is None:
            raise InvalidInput("timeInfo 必须带时区", "timeInfo must be timezone-aware")
        body = (
            self._tbs_head
            + bytes(asn1.GeneralizedTime(when.astimezone(dt.UTC).replace(microsecond=0)).dump())
            + _bits(bytes(data_hash))
            + bytes(asn1.IA5String(property_info).dump())
        )
        return _tlv(0x30, body)

    def sign(self, tbs: bytes, time_stamp: Callable[[bytes], bytes] | None = None) -> bytes:
        """The DER SES_Signature over ``tbs``; the signature is verified before anything is built on it."""
        signature = sm2.normalize_signature(self._signer.sign(tbs))
        if not sm2.verify(self._public, tbs, signature):
            raise CryptoError("签章签名自检失败", "the signer signature just made does not verify")
        body = tbs + self._ses_middle + _bits(signature)
        if time_stamp is not None:
            body += _tlv(0xA0, _bits(time_stamp(signature)))
        result = _tlv(0x30, body)
        if not self._structure_checked:
            parsed = ses.parse_ses_signature(result)
            if (
                parsed.tbs_bytes != tbs
                or parsed.signer_cert_der != self.certificate_der
                or parsed.signature != signature
                or not ses.verify_signer_signature(parsed)
            ):
                raise CryptoError("签章数据结构自检失败", "the SES signature just built does not read back")
            self._structure_checked = True
        return result


# --- per-process resources and per-job state -----------------------------------------------------------
def placement_from_json(text: str | None) -> Placement | None:
    if not text:
        return None
    options = json.loads(text)
    if not isinstance(options, dict):
        raise InvalidInput("批量任务的盖章位置无效", "the batch job's placement is invalid")
    return placement_from_options(**options)


@dataclass(frozen=True)
class JobParams:
    id: str
    department_id: str
    es_id: str
    kind: JobKind
    mode: SealMode
    placement: Placement | None
    timestamp: bool

    @classmethod
    def of(cls, job: BatchJob) -> JobParams:
        return cls(
            id=job.id,
            department_id=job.department_id,
            es_id=job.es_id,
            kind=JobKind(job.kind),
            mode=sealing_mode(job.mode),
            placement=placement_from_json(job.placement),
            timestamp=job.timestamp,
        )


@dataclass
class JobState:
    """What one process keeps about one job between groups."""

    params: JobParams
    seal_der: bytes | None = field(default=None, repr=False)
    parsed_seal: ses.ParsedSeal | None = field(default=None, repr=False)  # of seal_der, for prepare_seal
    signer: JobSigner | None = field(default=None, repr=False)
    timestamper: Callable[[bytes], bytes] | None = field(default=None, repr=False)


@dataclass
class WorkerResources:
    """A process's database, key store and blob store (from settings, or handed over by the caller)."""

    settings: Settings
    sessions: sessionmaker[Session]
    keystore: KeyStore
    blobs: BlobStore
    engine: Engine | None = None  # owned (disposed on close) when opened here
    jobs: dict[str, JobState] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings) -> WorkerResources:
        from hsm_adapters.factory import open_keystore

        engine = make_engine(settings.resolved_database_url())
        sessions = make_session_factory(engine)
        try:
            keystore = open_keystore(settings, sessions)
        except BaseException:
            engine.dispose()
            raise
        return cls(settings, sessions, keystore, BlobStore(settings.var_dir / "blobs"), engine)

    def close(self) -> None:
        if self.engine is not None:
            self.keystore.close()
            self.engine.dispose()

    @contextmanager
    def signing_turn(self) -> Iterator[None]:
        """Hold the signing turn for one group transaction (SQLite only; PostgreSQL needs none).

        SQLite has one writer at a time; a writer that finds the database locked polls in SQLite's
        busy handler, sleeping up to 100 ms between tries, so two workers handing the lock back and
        forth would mostly sleep. Queueing on an exclusive ``flock`` beside the database file first
        wakes the next worker as soon as the previous one committed. Other writers (API requests)
        still rely on the busy timeout.
        """
        path = self._turn_path()
        if path is None or fcntl is None:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _turn_path(self) -> Path | None:
        url = make_url(self.settings.resolved_database_url())
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database + ".batch-turn")

    @property
    def limits(self) -> ContainerLimits:
        return ContainerLimits(max_input_size=self.settings.max_upload_bytes)

    def job(self, job_id: str) -> JobState:
        state = self.jobs.get(job_id)
        if state is None:
            with self.sessions() as s:
                job = s.get(BatchJob, job_id)
                if job is None:
                    raise NotFound(f"批量任务 {job_id} 不存在", f"batch job {job_id} not found")
                state = JobState(JobParams.of(job))
            self.jobs[job_id] = state
        return state


# --- one group --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupResult:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # no longer pending when the group ran (another runner, or an earlier run)
    # Seconds spent preparing, authorising and signing; waiting for the recording turn; recording.
    timing: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: float = 0.0  # CPU seconds of the thread that ran the group, from reading inputs to commit


@dataclass
class _Work:
    """One item on its way through a group."""

    item_id: int
    key: str
    name: str
    data: bytes | None = field(default=None, repr=False)
    target: OfdTarget | None = field(default=None, repr=False)
    prepared: PreparedSeal | None = field(default=None, repr=False)
    draft: PackageDraft | None = field(default=None, repr=False)  # the sealed package but SignedValue.dat
    data_hash: bytes = b""
    property_info: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    tbs: bytes = field(default=b"", repr=False)
    output_sm3: str | None = None
    output_size: int = 0
    signature_sm3: str = ""
    error: EsealError | None = None


def _internal_error(exc: BaseException) -> EsealError:
    return EsealError("签章时发生内部错误", f"internal error while signing ({type(exc).__name__})")


def _load_inputs(res: WorkerResources, job_id: str, item_ids: Sequence[int]) -> list[_Work]:
    with res.sessions() as s:
        rows = s.execute(
            select(BatchItem.id, BatchItem.client_key, BatchItem.input_name, BatchItem.input_sm3)
            .where(
                BatchItem.job_id == job_id,
                BatchItem.id.in_(list(item_ids)),
                BatchItem.state == ItemState.PENDING.value,
            )
            .order_by(BatchItem.id)
        ).all()
    works: list[_Work] = []
    for item_id, key, name, input_sm3 in rows:
        work = _Work(item_id, key, name)
        try:
            work.data = res.blobs.get(input_sm3)
        except EsealError as exc:
            work.error = exc
        works.append(work)
    return works


def _seal_bytes(res: WorkerResources, job: JobState) -> bytes:
    """The seal as issued (to prepare documents before the lock); authorisation re-checks it."""
    if job.seal_der is None:
        with res.sessions() as s:
            der = s.scalar(select(Seal.seal_der).where(Seal.es_id == job.params.es_id))
        # An unmade or unknown seal: preparation waits for authorisation to give the real reason.
        job.seal_der = bytes(der) if der is not None else b""
    return job.seal_der


def _parsed_seal(job: JobState, seal_der: bytes) -> ses.ParsedSeal:
    """The seal parsed once per job (again only if its bytes change)."""
    if job.parsed_seal is None or job.parsed_seal.raw != seal_der:
        job.parsed_seal = ses.parse_seal(seal_der)
    return job.parsed_seal


def _prepare(
    res: WorkerResources, job: JobState, works: list[_Work], seal_der: bytes, now: dt.datetime
) -> None:
    """Documents analysed (once) and prepared for ``seal_der`` at ``now``, the sealed package laid
    out but for its signed value, TBS_Sign built when the job's signer is known: everything that
    needs no lock. Without seal bytes (an unknown or unmade seal) only the analysis runs, and
    authorisation reports why the seal cannot sign."""
    params = job.params
    signer = job.signer if job.signer is not None and job.signer.seal_der == seal_der else None
    for work in works:
        if work.error is not None or work.data is None:
            continue
        try:
            if params.kind is JobKind.OFD:
                if work.target is None:
                    work.target = analyse_ofd(
                        work.data, placement=params.placement, mode=params.mode, limits=res.limits
                    )
                if not seal_der:
                    continue
                prepared = prepare_seal(work.target, seal_der, now, parsed_seal=_parsed_seal(job, seal_der))
                work.prepared = prepared
                work.draft = draft_sealed(prepared)
                work.data_hash = prepared.data_hash
                work.property_info = prepared.property_info
                work.details = prepared.audit_details()
            else:
                work.data_hash = sm3(work.data)
                work.property_info = default_property_info(work.data_hash, work.name)
                work.details = {"format": "ses", "document_sm3": work.data_hash.hex()}
            work.details["document_name"] = work.name[:200]
            work.tbs = signer.tbs(work.data_hash, work.property_info, now) if signer is not None else b""
        except EsealError as exc:
            work.error = exc
        except Exception as exc:  # a bug must fail this item, not the whole job
            log.exception("batch item %s: preparation failed", work.key)
            work.error = _internal_error(exc)


def _lock_pending(session: Session, job_id: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are still pending, held until the transaction ends so that no other runner
    can finish them meanwhile: row locks on PostgreSQL, the database write lock on SQLite (taken by
    a no-op write first, as :func:`seal_registry.seals.authorize_use` does for the seal row)."""
    where = (BatchItem.job_id == job_id, BatchItem.id.in_(ids), BatchItem.state == ItemState.PENDING.value)
    stmt = select(BatchItem.id).where(*where)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(BatchItem).where(*where).values(state=BatchItem.state),
            execution_options={"synchronize_session": False},
        )
    else:
        stmt = stmt.with_for_update()
    return set(session.scalars(stmt))


def _record(session: Session, works: Sequence[_Work], when: dt.datetime) -> None:
    """Item rows ``done`` or ``failed``; the caller holds them (locked and still pending)."""
    finished = utcnow()
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for work in works:
        if work.error is None and work.output_sm3 is not None:
            done.append(
                {
                    "id": work.item_id,
                    "state": ItemState.DONE.value,
                    "output_sm3": work.output_sm3,
                    "output_size": work.output_size,
                    "signing_time": when,
                    "finished_at": finished,
                }
            )
        else:
            error = work.error or _internal_error(RuntimeError("no output"))
            failed.append(
                {
                    "id": work.item_id,
                    "state": ItemState.FAILED.value,
                    "error_code": error.code,
                    "error_zh": error.message_zh,
                    "error_en": error.message_en,
                    "finished_at": finished,
                }
            )
    # ORM bulk UPDATE by primary key: one executemany per shape instead of a statement per item.
    for rows in (done, failed):
        if rows:
            session.execute(update(BatchItem), rows)


def _fail_all(res: WorkerResources, job_id: str, works: Sequence[_Work], refusal: EsealError) -> GroupResult:
    """Authorisation refused: every item of the group fails with its own error or the refusal."""
    for work in works:
        if work.error is None:
            work.error = refusal
    with res.sessions() as s, s.begin():
        pending = _lock_pending(s, job_id, [w.item_id for w in works])
        todo = [w for w in works if w.item_id in pending]
        _record(s, todo, utcnow())
    return GroupResult(failed=len(todo), skipped=len(works) - len(todo))


def _audit_details(work: _Work, grant: SealGrant, job: JobParams, now: dt.datetime) -> Mapping[str, Any]:
    details = dict(work.details)
    details.update(
        {
            "es_id": grant.es_id,
            "department_id": grant.department_id,
            "data_sm3": work.data_hash.hex(),
            "signature_sm3": work.signature_sm3,
            "property_info": work.property_info,
            "signing_time": now.isoformat(),
            "time_stamped": job.timestamp,
            "batch_job_id": job.id,
            "batch_item_key": work.key,
        }
    )
    return details


def _signer_for(res: WorkerResources, job: JobState, grant: SealGrant) -> JobSigner:
    if job.signer is None or not job.signer.matches(grant):
        job.signer = JobSigner(grant, res.keystore)
    return job.signer


def _authorize(res: WorkerResources, job: JobState, now: dt.datetime) -> SealGrant:
    """Phase 2: may the job's seal sign at ``now``? A short transaction of its own (the signing
    turn on SQLite, whose write lock ``authorize_use`` takes), ended before anything is signed;
    the job's signer and time-stamp hook are made ready in it. Raises the refusal."""
    params = job.params
    with res.signing_turn(), res.sessions() as session:
        try:
            grant = authorize_use(session, es_id=params.es_id, department_id=params.department_id, at=now)
            _signer_for(res, job, grant)
            if params.timestamp and job.timestamper is None:
                job.timestamper = signature_timestamper(res.settings, session, res.keystore)
        finally:
            session.rollback()
    return grant


def _sign_unlocked(
    res: WorkerResources, job: JobState, works: list[_Work], grant: SealGrant, now: dt.datetime
) -> None:
    """Phase 3, holding no lock: sign, assemble, re-read and store every prepared item durably. The
    outputs are referenced by nothing until phase 4 commits (a refusal there leaves them to the
    blob store sweep)."""
    signer = _signer_for(res, job, grant)
    if grant.seal_der != job.seal_der:
        job.seal_der = grant.seal_der  # the seal was (re)made since preparation: prepare again
        _prepare(res, job, works, grant.seal_der, now)
    staged = StagedBlobs(res.blobs)
    try:
        _sign_each(job, signer, works, now, staged)
        staged.sync()
    except BaseException:
        staged.discard()
        raise


def _sign_each(
    job: JobState, signer: JobSigner, works: list[_Work], now: dt.datetime, staged: StagedBlobs
) -> None:
    for work in works:
        if work.error is not None:
            continue
        try:
            tbs = work.tbs or signer.tbs(work.data_hash, work.property_info, now)
            signed = signer.sign(tbs, job.timestamper if job.params.timestamp else None)
            if job.params.kind is JobKind.OFD:
                assert work.prepared is not None and work.draft is not None
                # finish_seal without check_signed_value, whose checks hold by construction here:
                # dataHash and seal come from the prepared parts and the signature was verified.
                output = assemble_sealed(work.prepared, signed, work.draft)
            else:
                output = signed
            work.signature_sm3 = sm3_hex(signed)
            work.output_sm3 = staged.put(output)
            work.output_size = len(output)
        except EsealError as exc:
            work.error = exc
        except OSError:
            raise  # the disk, not the document: the group stays pending
        except Exception as exc:
            log.exception("batch item %s: signing failed", work.key)
            work.error = _internal_error(exc)


def _same_grant(first: SealGrant, second: SealGrant) -> bool:
    """Whether the signatures made under ``first`` are what ``second`` would have made."""
    return (
        first.seal_der == second.seal_der
        and first.signer_certificate_der == second.signer_certificate_der
        and first.signer_key_id == second.signer_key_id
    )


def _commit_group(
    res: WorkerResources,
    session: Session,
    job: JobState,
    works: list[_Work],
    now: dt.datetime,
    actor: str,
    signed_under: SealGrant,
) -> GroupResult | None:
    """Phase 4 in ``session``: authorise again, record and audit what phase 3 made, commit. None
    when the group must be signed again (the seal or its certificate changed meanwhile, or too
    much time passed since ``now``)."""
    params = job.params
    try:
        grant = authorize_use(session, es_id=params.es_id, department_id=params.department_id, at=now)
    except EsealError as refusal:
        # Suspended, cancelled or revoked while the group was signed: none of it is delivered.
        session.rollback()
        for work in works:
            work.output_sm3 = None
        return _fail_all(res, params.id, works, refusal)
    if not _same_grant(signed_under, grant) or utcnow() - now > MAX_PREPARATION_LAG:
        session.rollback()
        return None
    pending = _lock_pending(session, params.id, [w.item_id for w in works])
    todo = [w for w in works if w.item_id in pending]
    _record(session, todo, now)
    append_many(
        session,
        [
            AuditRecord(
                actor, "signature.made", "seal", grant.seal_id, _audit_details(work, grant, params, now)
            )
            for work in todo
            if work.error is None
        ],
    )
    session.commit()
    done = sum(1 for w in todo if w.error is None)
    return GroupResult(done=done, failed=len(todo) - done, skipped=len(works) - len(todo))


def _reset(works: Sequence[_Work]) -> None:
    """Items back to what phase 1 starts from, before a group is signed again."""
    for work in works:
        work.output_sm3, work.output_size, work.signature_sm3, work.tbs = None, 0, "", b""


def process_group(res: WorkerResources, job_id: str, item_ids: Sequence[int], *, actor: str) -> GroupResult:
    """Seal the still-pending items among ``item_ids`` of job ``job_id``; see the module docstring."""
    cpu_start = time.thread_time()
    job = res.job(job_id)
    works = _load_inputs(res, job_id, item_ids)
    skipped = len(item_ids) - len(works)
    for _attempt in range(_MAX_ATTEMPTS):
        if not works:
            break
        started = time.perf_counter()
        now = utcnow().replace(microsecond=0)
        _reset(works)
        _prepare(res, job, works, _seal_bytes(res, job), now)
        try:
            grant = _authorize(res, job, now)
        except EsealError as refusal:
            with res.signing_turn():
                result: GroupResult | None = _fail_all(res, job_id, works, refusal)
            assert result is not None
            cpu = time.thread_time() - cpu_start
            return GroupResult(result.done, result.failed, result.skipped + skipped, cpu=cpu)
        _sign_unlocked(res, job, works, grant, now)
        signed = time.perf_counter()
        with res.signing_turn(), res.sessions() as session:
            locked = time.perf_counter()
            try:
                result = _commit_group(res, session, job, works, now, actor, grant)
            except BaseException:
                session.rollback()
                raise
        timing = (signed - started, locked - signed, time.perf_counter() - locked)
        if result is not None:
            cpu = time.thread_time() - cpu_start
            return GroupResult(result.done, result.failed, result.skipped + skipped, timing, cpu)
    else:
        raise EsealError(
            "等待签章锁过久，本组保持待处理", "waited too long for the signing lock; the group stays pending"
        )
    return GroupResult(skipped=skipped)


# --- pool processes ---------------------------------------------------------------------------------------
_RESOURCES: WorkerResources | None = None


def pool_initializer(settings_payload: dict[str, Any]) -> None:
    """Run once in each pool process: its own engine, key store and blob store."""
    global _RESOURCES
    logging.basicConfig(level=logging.WARNING)
    _RESOURCES = WorkerResources.open(Settings(**settings_payload))
    # Everything loaded so far (modules, SQLAlchemy metadata, the key store) lives as long as the
    # process: keep it out of the cyclic collector's full passes, each of which would otherwise walk
    # it all again (about 0.1 s, every thousand items or so).
    gc.freeze()


def pool_task(job_id: str, item_ids: list[int], actor: str) -> GroupResult:
    if _RESOURCES is None:  # pragma: no cover - the initializer always runs first
        raise ConfigurationError("批量签章进程未初始化", "batch worker process not initialised")
    return process_group(_RESOURCES, job_id, item_ids, actor=actor)


__all__ = [
    "MAX_PREPARATION_LAG",
    "GroupResult",
    "JobParams",
    "JobSigner",
    "WorkerResources",
    "placement_from_json",
    "pool_initializer",
    "pool_task",
    "process_group",
    "signature_timestamper",
]
