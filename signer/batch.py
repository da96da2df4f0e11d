"""Batch sealing: many documents sealed with one seal, resumable, on every core.

A **job** fixes who signs and how: department, seal (esID), kind (``ofd``: seal each OFD package;
``ses``: a detached SES_Signature over each input's bytes), sealing mode and placement (OFD), and
whether each signature gets an RFC 3161 time-stamp. Its **items** are the documents, each named by
the client's key, unique within the job: submitting a key again with the same content returns the
existing item (and, once done, its result) and never signs twice; the same key with other content
is a Conflict. Inputs are stored in the blob store when they are added, so a job does not depend on
the files it was made from.

Items go ``pending`` → ``done`` (output in the blob store, output SM3 on the row, one
``signature.made`` audit entry naming the job and the key) or ``failed`` (typed error code and
bilingual message; nothing signed, no audit entry). :func:`run_job` processes the pending items in
groups, each signed with no lock held and recorded in one transaction by
:func:`signer.batch_worker.process_group`;
see there for what happens where. A run can stop at any point (``kill -9`` included): committed
groups are done, the others are still pending, and the next run takes up exactly those.

Parallelism: groups are spread over a pool of processes (the SM2 backend holds the GIL), forked
where that is safe and from a fork server otherwise (:func:`pool_context`), each with its own
engine, key store and blob store opened from the settings. Jobs with at most ``inline_below``
pending items run inline in the calling thread instead, which saves the processes' start-up (the key
store opening, and a second or so for the fork server's first start); for larger jobs the caller
seals groups itself while the pool starts, until a pool process has finished one
(:func:`_run_in_pool`: groups are handed to the pool a few at a time, so a group is either the
pool's or the caller's). The processes prepare and sign concurrently on either backend; on SQLite,
which has one writer at a time, they take turns only for a group's two short transactions
(authorise; authorise again and record), so other writers (API requests) find the write lock free
most of the time.

Groups (``group_size`` items per transaction, default 64) amortise the commit, the file-system sync,
the authorisation and the audit head move; ``bench/sign.py --compare-groups 1,4,16,64`` measures
the difference (64 sealed 5–25 % more per second than 16 in bench runs on either backend).

Inputs may be files, a directory (every file below it, keys are the relative paths) or a ZIP archive
(keys are the entry names) read with the hardened OFD container reader: unsafe names, bombs and
oversized entries are refused with typed errors before any item is created.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.blobstore import BlobStore, StagedBlobs
from core.db import transaction, utcnow
from core.errors import Conflict, EsealError, InputTooLarge, InvalidInput, NotFound, PermissionDenied
from gmpki.ofd import ContainerLimits, OfdPackage
from gmpki.sm3 import sm3_hex
from seal_registry.seals import get_seal

from .batch_models import (
    MAX_CLIENT_KEY,
    MAX_INPUT_NAME,
    MAX_JOB_NAME,
    BatchItem,
    BatchJob,
    ItemState,
    JobKind,
)
from .batch_worker import (
    GroupResult,
    WorkerResources,
    pool_initializer,
    pool_task,
    process_group,
    signature_timestamper,
)
from .ofd_sealing import SealMode, sealing_mode
from .placement import placement_from_options

log = logging.getLogger("eseal.batch")

DEFAULT_GROUP_SIZE: Final = 64
DEFAULT_WORKERS: Final = 2
INLINE_BELOW: Final = 64
MAX_GROUP_SIZE: Final = 256
_IN_CHUNK: Final = 500  # bound the size of IN (...) lists
_PLACEMENT_KEYS: Final = ("page", "x", "y", "keyword", "occurrence", "riding")


# --- inputs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchInput:
    """One document to add: the client's key (unique in the job), a display name and the bytes."""

    key: str
    name: str
    data: bytes = field(repr=False)


def check_client_key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_CLIENT_KEY or not key.isprintable():
        raise InvalidInput(
            f"条目键须为 1–{MAX_CLIENT_KEY} 个可打印字符",
            f"item keys must be 1–{MAX_CLIENT_KEY} printable characters",
        )
    return key


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise InputTooLarge(
            f"文件 {name} 过大（{size} 字节，上限 {limit}）",
            f"file {name} is too large ({size} bytes, limit {limit})",
        )


def _wanted(name: str, kind: JobKind) -> bool:
    return kind is JobKind.SES or name.lower().endswith(".ofd")


def read_archive(
    data: bytes, *, kind: JobKind = JobKind.OFD, limits: ContainerLimits | None = None
) -> list[BatchInput]:
    """The documents of a ZIP archive (``.ofd`` entries for OFD jobs, every file for SES jobs).

    The archive is opened with :class:`gmpki.ofd.OfdPackage`, so entry names are checked (``..``,
    absolute and drive paths, backslashes, NUL, duplicates: MalformedData) and every entry is fully
    inflated here against the entry, ratio and total limits (InputTooLarge): a hostile archive is
    refused as a whole before anything is added or signed.
    """
    package = OfdPackage(bytes(data), limits=limits)
    inputs = [
        BatchInput(name, name.rsplit("/", 1)[-1], package.read(name))
        for name in package.names
        if _wanted(name, kind)
    ]
    if not inputs:
        raise InvalidInput("压缩包中没有可签章的文件", "the archive holds no document to sign")
    return inputs


def _is_archive(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def inputs_from_paths(
    paths: Sequence[Path],
    *,
    kind: JobKind = JobKind.OFD,
    max_bytes: int,
    limits: ContainerLimits | None = None,
) -> list[BatchInput]:
    """Inputs from files, directories (keys: paths relative to the directory) and ``.zip`` archives.

    For OFD jobs only ``.ofd`` files of directories and archives are taken; files named explicitly
    are always taken. Two inputs with the same key are refused.
    """
    inputs: list[BatchInput] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                key = file.relative_to(path).as_posix()
                if _wanted(key, kind):
                    _check_size(key, file.stat().st_size, max_bytes)
                    inputs.append(BatchInput(key, file.name, file.read_bytes()))
        elif _is_archive(path):
            _check_size(path.name, path.stat().st_size, max_bytes)
            inputs.extend(read_archive(path.read_bytes(), kind=kind, limits=limits))
        elif path.is_file():
            _check_size(path.name, path.stat().st_size, max_bytes)
            inputs.append(BatchInput(path.name, path.name, path.read_bytes()))
        else:
            raise NotFound(f"找不到输入 {path}", f"input {path} not found")
    seen: set[str] = set()
    for item in inputs:
        if item.key in seen:
            raise InvalidInput(f"输入中有重复的键 {item.key}", f"duplicate key {item.key} among the inputs")
        seen.add(item.key)
    if not inputs:
        raise InvalidInput("没有可签章的文件", "no document to sign")
    return inputs


# --- jobs -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """What a new job signs with and how."""

    department_id: str
    es_id: str
    kind: JobKind | str = JobKind.OFD
    mode: SealMode | str = SealMode.CONTINUE
    placement: Mapping[str, Any] | None = None  # page, x, y, keyword, occurrence, riding
    timestamp: bool = False
    name: str | None = None


def job_kind(value: JobKind | str) -> JobKind:
    try:
        return JobKind(str(value).strip().lower())
    except ValueError:
        raise InvalidInput(
            f"未知的批量任务类型 {value!r}（可选 ofd、ses）", f"unknown batch kind {value!r} (ofd or ses)"
        ) from None


def _job_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if not 1 <= len(name) <= MAX_JOB_NAME or not name.isprintable():
        raise InvalidInput(
            f"任务名称须为 1–{MAX_JOB_NAME} 个可打印字符",
            f"job names must be 1–{MAX_JOB_NAME} printable characters",
        )
    return name


def placement_json(options: Mapping[str, Any] | None) -> str | None:
    """The placement options checked (:func:`signer.placement.placement_from_options`) and as stored."""
    if not options:
        return None
    unknown = sorted(set(options) - set(_PLACEMENT_KEYS))
    if unknown:
        raise InvalidInput(f"未知的盖章位置参数 {unknown}", f"unknown placement options {unknown}")
    kept = {k: options[k] for k in _PLACEMENT_KEYS if options.get(k) not in (None, False, "")}
    try:
        placement = placement_from_options(**kept)
    except TypeError:
        raise InvalidInput("盖章位置参数类型错误", "placement options have the wrong types") from None
    return None if placement is None else json.dumps(kept, sort_keys=True, ensure_ascii=False)


def create_job(session: Session, spec: JobSpec, *, actor: str) -> BatchJob:
    """A new job (no items yet). The seal must exist and belong to the department; whether it may
    sign is decided for every group when the job runs. Audited as ``batch.created``."""
    kind = job_kind(spec.kind)
    mode = sealing_mode(spec.mode)
    placement = placement_json(spec.placement)
    if kind is JobKind.SES and (placement is not None or mode is not SealMode.CONTINUE):
        raise InvalidInput(
            "电子签章数据任务不接受盖章位置或签章模式",
            "an SES job takes neither a placement nor a sealing mode",
        )
    name = _job_name(spec.name)
    seal = get_seal(session, spec.es_id)
    if seal.department_id != spec.department_id:
        raise PermissionDenied(
            f"印章 {spec.es_id} 不属于该部门",
            f"seal {spec.es_id} does not belong to this department",
            es_id=spec.es_id,
        )
    if name is not None and session.scalar(select(BatchJob.id).where(BatchJob.name == name)) is not None:
        raise Conflict(f"批量任务名称 {name} 已被使用", f"batch job name {name} is taken", name=name)
    job = BatchJob(
        id=str(uuid.uuid4()),
        name=name,
        department_id=spec.department_id,
        es_id=seal.es_id,
        kind=kind.value,
        mode=mode.value,
        placement=placement,
        timestamp=bool(spec.timestamp),
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="batch.created",
        subject_type="batch_job",
        subject_id=job.id,
        details={
            "name": name,
            "department_id": job.department_id,
            "es_id": job.es_id,
            "kind": job.kind,
            "mode": job.mode,
            "placement": placement,
            "timestamp": job.timestamp,
        },
    )
    return job


def get_job(session: Session, ref: str, *, department_id: str | None = None) -> BatchJob:
    """A job by id or name; with ``department_id``, only that department's jobs (PermissionDenied)."""
    job = session.get(BatchJob, ref) if len(ref) == 36 else None
    if job is None:
        job = session.scalar(select(BatchJob).where(BatchJob.name == ref))
    if job is None:
        raise NotFound(f"批量任务 {ref} 不存在", f"batch job {ref} not found")
    if department_id is not None and job.department_id != department_id:
        raise PermissionDenied("只能访问本部门的批量任务", "a department may only use its own batch jobs")
    return job


def same_spec(job: BatchJob, spec: JobSpec) -> bool:
    """Whether resuming ``job`` under ``spec`` would sign the same way (CLI ``--job``)."""
    return (
        job.department_id == spec.department_id
        and job.es_id == spec.es_id
        and job.kind == job_kind(spec.kind).value
        and job.mode == sealing_mode(spec.mode).value
        and job.placement == placement_json(spec.placement)
        and job.timestamp == bool(spec.timestamp)
    )


# --- items ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemResult:
    """One item as the client sees it (results listing, CSV and JSON export)."""

    key: str
    input_name: str
    state: ItemState
    output_sm3: str | None
    error_code: str | None
    error_zh: str | None
    error_en: str | None
    input_sm3: str
    signing_time: datetime | None

    @classmethod
    def of(cls, item: BatchItem) -> ItemResult:
        return cls(
            key=item.client_key,
            input_name=item.input_name,
            state=ItemState(item.state),
            output_sm3=item.output_sm3,
            error_code=item.error_code,
            error_zh=item.error_zh,
            error_en=item.error_en,
            input_sm3=item.input_sm3,
            signing_time=item.signing_time,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "input_name": self.input_name,
            "state": self.state.value,
            "output_sm3": self.output_sm3,
            "error": None
            if self.error_code is None
            else {"code": self.error_code, "message_zh": self.error_zh, "message_en": self.error_en},
            "input_sm3": self.input_sm3,
            "signing_time": None if self.signing_time is None else self.signing_time.isoformat(),
        }


@dataclass(frozen=True)
class AddedItem:
    result: ItemResult
    created: bool  # False: the key was already in the job with the same content


def _existing(session: Session, job_id: str, keys: Sequence[str]) -> dict[str, BatchItem]:
    found: dict[str, BatchItem] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = list(keys[start : start + _IN_CHUNK])
        rows = session.scalars(
            select(BatchItem).where(BatchItem.job_id == job_id, BatchItem.client_key.in_(chunk))
        )
        found.update({row.client_key: row for row in rows})
    return found


def add_items(
    session: Session, blobs: BlobStore, job: BatchJob, inputs: Iterable[BatchInput]
) -> list[AddedItem]:
    """Add ``inputs`` to ``job`` (in the caller's transaction), idempotently per key.

    Every input is checked first: a bad key, a key given twice, or a key already in the job with
    other content (Conflict) refuses the whole call. New inputs are stored durably in the blob store
    before the rows that name them are written.
    """
    batch = list(inputs)
    keys = [check_client_key(i.key) for i in batch]
    if len(set(keys)) != len(keys):
        raise InvalidInput("同一次提交中有重复的条目键", "the same item key appears twice in one submission")
    digests = [sm3_hex(i.data) for i in batch]
    existing = _existing(session, job.id, keys)
    for item, digest in zip(batch, digests, strict=True):
        row = existing.get(item.key)
        if row is not None and row.input_sm3 != digest:
            raise Conflict(
                f"任务中已有键为 {item.key} 的其他文档",
                f"the job already holds another document under key {item.key}",
                key=item.key,
            )
        if not item.data:
            raise InvalidInput(f"文件 {item.key} 为空", f"file {item.key} is empty", key=item.key)
    staged = StagedBlobs(blobs)
    for item, digest in zip(batch, digests, strict=True):
        if item.key not in existing:
            stored = staged.put(item.data)
            assert stored == digest
    staged.sync()
    now = utcnow()
    added: list[AddedItem] = []
    new_rows: list[BatchItem] = []
    for item, digest in zip(batch, digests, strict=True):
        row = existing.get(item.key)
        created = row is None
        if row is None:
            row = BatchItem(
                job_id=job.id,
                client_key=item.key,
                input_name=(item.name or item.key)[:MAX_INPUT_NAME],
                input_sm3=digest,
                input_size=len(item.data),
                state=ItemState.PENDING.value,
                created_at=now,
            )
            new_rows.append(row)
        added.append(AddedItem(ItemResult.of(row), created))
    session.add_all(new_rows)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            "另一请求同时提交了相同的条目键，请重试",
            "another request submitted the same item keys at the same time; retry",
        ) from None
    return added


@dataclass(frozen=True)
class JobProgress:
    total: int
    pending: int
    done: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.pending == 0

    def to_json(self) -> dict[str, int]:
        return {"total": self.total, "pending": self.pending, "done": self.done, "failed": self.failed}


def job_progress(session: Session, job_id: str) -> JobProgress:
    """Counts by state; cheap enough to poll while the job runs."""
    rows = session.execute(
        select(BatchItem.state, func.count()).where(BatchItem.job_id == job_id).group_by(BatchItem.state)
    ).all()
    counts = {str(state): int(n) for state, n in rows}
    pending, done, failed = (counts.get(s.value, 0) for s in ItemState)
    return JobProgress(pending + done + failed, pending, done, failed)


def job_results(session: Session, job_id: str) -> list[ItemResult]:
    items = session.scalars(select(BatchItem).where(BatchItem.job_id == job_id).order_by(BatchItem.id))
    return [ItemResult.of(item) for item in items]


CSV_COLUMNS: Final = (
    "key",
    "input_name",
    "state",
    "output_sm3",
    "error_code",
    "error_zh",
    "error_en",
    "signing_time",
)


def results_csv(results: Iterable[ItemResult]) -> str:
    """CSV (RFC 4180, header row) of the per-item results."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(
            [
                r.key,
                r.input_name,
                r.state.value,
                r.output_sm3 or "",
                r.error_code or "",
                r.error_zh or "",
                r.error_en or "",
                r.signing_time.isoformat() if r.signing_time else "",
            ]
        )
    return out.getvalue()


def item_output(session: Session, blobs: BlobStore, job_id: str, key: str) -> tuple[ItemResult, bytes]:
    """A done item's output (verified against its SM3 by the blob store)."""
    item = session.scalar(select(BatchItem).where(BatchItem.job_id == job_id, BatchItem.client_key == key))
    if item is None:
        raise NotFound(f"任务中没有键为 {key} 的条目", f"no item with key {key} in the job", key=key)
    if item.state != ItemState.DONE.value or item.output_sm3 is None:
        raise Conflict(
            f"条目 {key} 尚未完成签章（状态 {item.state}）",
            f"item {key} has no output (state {item.state})",
            key=key,
            state=item.state,
        )
    return ItemResult.of(item), blobs.get(item.output_sm3)


def reset_failed(session: Session, job_id: str) -> int:
    """Failed items back to pending (e.g. after the seal was resumed); returns how many."""
    result = session.execute(
        update(BatchItem)
        .where(BatchItem.job_id == job_id, BatchItem.state == ItemState.FAILED.value)
        .values(
            state=ItemState.PENDING.value, error_code=None, error_zh=None, error_en=None, finished_at=None
        ),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- running ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    progress: JobProgress
    signed: int  # items done by this run
    failed: int  # items failed by this run
    seconds: float
    errors: tuple[str, ...] = ()  # groups left pending by unexpected errors (retry with another run)
    # Summed over the groups (all processes): preparing, authorising and signing; waiting for the
    # recording turn; in the recording transaction. On SQLite the third is the serial part.
    phase_seconds: tuple[float, float, float] = (0.0, 0.0, 0.0)
    caller_groups: int = 0  # groups the calling process sealed itself while the pool started
    cpu_seconds: float = 0.0  # CPU time the groups took, summed over the processes


def _pending_ids(session: Session, job_id: str) -> list[int]:
    return list(
        session.scalars(
            select(BatchItem.id)
            .where(BatchItem.job_id == job_id, BatchItem.state == ItemState.PENDING.value)
            .order_by(BatchItem.id)
        )
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EsealError):
        return f"({exc.code}) {exc.message_zh} / {exc.message_en}"
    return f"{type(exc).__name__}: {exc}"


# What the fork server imports before forking workers: the worker module and, through it, the
# service (SQLAlchemy models, gmpki, the key stores). Importing opens no database, key store or
# PKCS#11 library; pool_initializer does that in each worker.
FORKSERVER_PRELOAD: Final = ["signer.batch_worker"]


def pool_context(res: WorkerResources) -> BaseContext:
    """How pool processes start: ``fork`` where that is safe, else ``forkserver``, else ``spawn``.

    A spawned process imports the service afresh (0.5–0.9 s of CPU each, on the cores the job
    needs: about a third of a 2,000-document job's CPU in ``bench/sign.py``); a forked one starts
    from the caller's loaded modules at no cost. Forking the caller is safe only when (1) it runs no
    other thread, so no lock can be held by a thread the child does not have (the CLI and the
    bench), and (2) the key store is the soft one: a PKCS#11 library must be initialised anew in a
    child, which a fork does not do. The child never touches what it inherited:
    :func:`pool_initializer` opens its own engine, key store and blob store, and a forked worker
    leaves through ``os._exit``. SM2 nonces come from the kernel on every signature (GmSSL reads
    ``/dev/urandom`` each time), so forked workers share no random state (``tests/batch`` checks
    their signatures differ).

    Otherwise (the API server runs jobs in a thread of a threaded process; a PKCS#11 key store)
    workers are forked from a fork server: a fresh single-threaded interpreter, started once per
    process, that has imported the batch worker (:data:`FORKSERVER_PRELOAD`) but opened nothing,
    so every later job's workers start in milliseconds instead of importing the service again.
    ``spawn`` remains where there is no fork (Windows).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and res.settings.keystore == "soft":
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _run_in_pool(
    res: WorkerResources,
    job_id: str,
    groups: Sequence[Sequence[int]],
    workers: int,
    actor: str,
    report: Callable[[GroupResult | None], None],
    errors: list[str],
) -> int:
    """Seal ``groups`` in a pool of ``workers`` processes; returns how many the caller sealed itself.

    Groups are handed to the pool a few at a time (two per process in flight, so none waits for
    work). Starting a spawned pool takes a second or two (fresh interpreters import the service and
    open the key store), a forked one far less; meanwhile the caller, which has everything loaded,
    seals groups from the end of the queue itself until a pool process has finished one. A group
    is either handed to the pool or taken by the caller, never both.
    """
    queue = deque(groups)
    in_flight: set[Future[GroupResult]] = set()
    taken = 0
    broken = False
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(res),
        initializer=pool_initializer,
        initargs=(res.settings.model_dump(mode="json"),),
    ) as pool:

        def hand_out() -> None:
            while queue and len(in_flight) < 2 * workers:
                in_flight.add(pool.submit(pool_task, job_id, list(queue.popleft()), actor))

        hand_out()
        while queue and not any(f.done() for f in in_flight):
            group = queue.pop()
            taken += 1
            try:
                report(process_group(res, job_id, group, actor=actor))
            except Exception as exc:  # the group stays pending, as in a pool process
                log.exception("batch job %s: group failed", job_id)
                errors.append(_describe(exc))
                report(None)
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                in_flight.discard(future)
                try:
                    report(future.result())
                except BrokenProcessPool as exc:  # every group in flight fails the same way
                    if not broken:
                        errors.append(_describe(exc))
                    broken = True
                    queue.clear()
                except Exception as exc:
                    errors.append(_describe(exc))
                    report(None)
            hand_out()
    return taken


def run_job(
    res: WorkerResources,
    job_id: str,
    *,
    actor: str,
    workers: int = DEFAULT_WORKERS,
    group_size: int = DEFAULT_GROUP_SIZE,
    inline_below: int = INLINE_BELOW,
    retry_failed: bool = False,
    on_progress: Callable[[JobProgress], None] | None = None,
) -> RunSummary:
    """Process every pending item of the job; returns when none is left to try.

    ``res`` is the caller's database, key store and blob store (used inline, and for progress);
    pool processes open their own from ``res.settings``. ``retry_failed`` first puts failed items
    back to pending. ``on_progress`` is called with the counts after every group.
    """
    if not 1 <= group_size <= MAX_GROUP_SIZE:
        raise InvalidInput(f"每组条目数须为 1–{MAX_GROUP_SIZE}", f"group size must be 1–{MAX_GROUP_SIZE}")
    started = time.perf_counter()
    with transaction(res.sessions) as s:
        job = s.get(BatchJob, job_id)
        if job is None:
            raise NotFound(f"批量任务 {job_id} 不存在", f"batch job {job_id} not found")
        if retry_failed:
            reset_failed(s, job_id)
        job.started_at, job.finished_at = utcnow(), None
        ids = _pending_ids(s, job_id)
    groups = [ids[i : i + group_size] for i in range(0, len(ids), group_size)]
    errors: list[str] = []
    totals = {"done": 0, "failed": 0}
    taken = 0
    phases = [0.0, 0.0, 0.0]
    cpu = [0.0]

    def report(result: GroupResult | None) -> None:
        if result is not None:
            totals["done"] += result.done
            totals["failed"] += result.failed
            for i, seconds in enumerate(result.timing):
                phases[i] += seconds
            cpu[0] += result.cpu
        if on_progress is not None:
            with res.sessions() as session:
                on_progress(job_progress(session, job_id))

    report(None)
    if workers <= 1 or len(ids) <= inline_below or len(groups) == 1:
        for group in groups:
            try:
                report(process_group(res, job_id, group, actor=actor))
            except Exception as exc:  # the group stays pending; the others may still succeed
                log.exception("batch job %s: group failed", job_id)
                errors.append(_describe(exc))
                report(None)
    else:
        taken = _run_in_pool(res, job_id, groups, min(workers, len(groups)), actor, report, errors)
    with transaction(res.sessions) as s:
        progress = job_progress(s, job_id)
        if progress.finished:
            s.execute(update(BatchJob).where(BatchJob.id == job_id).values(finished_at=utcnow()))
    return RunSummary(
        progress,
        totals["done"],
        totals["failed"],
        time.perf_counter() - started,
        tuple(errors),
        (phases[0], phases[1], phases[2]),
        taken,
        cpu[0],
    )


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_WORKERS",
    "INLINE_BELOW",
    "AddedItem",
    "BatchInput",
    "ItemResult",
    "JobProgress",
    "JobSpec",
    "RunSummary",
    "WorkerResources",
    "add_items",
    "check_client_key",
    "create_job",
    "get_job",
    "inputs_from_paths",
    "item_output",
    "job_kind",
    "job_progress",
    "job_results",
    "placement_json",
    "read_archive",
    "reset_failed",
    "results_csv",
    "run_job",
    "same_spec",
    "signature_timestamper",
]
