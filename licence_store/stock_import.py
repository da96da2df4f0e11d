"""Stock licences (存量证照): import a CSV or JSON batch of existing licences of one type, validate every
row first, then render, seal and record them through the batch machinery (:mod:`signer.batch`).

**Validate** (:func:`create_import`): the whole file is parsed and every row checked against the core
set and the type's schema, plus duplicates inside the file and licence numbers already taken. Any
error refuses the whole file with a row-level report (:class:`ImportInvalid`) and nothing is written.
A valid file becomes an import job with one row each (state ``pending``) and a batch job that will
seal them with the department's seal of the type's seal type. The same file submitted again by the
same department returns the existing import (resume, not duplicate).

**Run** (:func:`run_import`), resumable at any point (``kill -9`` included):

1. *render* — pending rows, a chunk per transaction: serial and identifier assigned, the OFD
   rendered with its QR code (by a pool of ``workers`` processes for large imports) and added to
   the batch job under the row's client key; row → ``rendered``. A chunk that did not commit left
   no serial used and no item added;
2. *seal* — :func:`signer.batch.run_job` seals every pending item (its own progress, groups,
   processes and ``signature.made`` audit entries);
3. *record* — rendered rows whose item is sealed become licences (``licence.issued`` audited, the
   row's client key on the licence, unique per issuing department); row → ``issued``. Rows whose
   item failed → ``failed`` with the error.

Each row carries a client key (column ``client_key``, default: the licence number); a licence
already recorded under that key is never issued again, so rerunning after a crash yields exactly one
licence per row.

CSV: UTF-8 (BOM allowed), header row; columns are the core fields (``licence_number``,
``holder_name`` …), the type's own fields (``registered_capital`` or ``fields.registered_capital``)
and optional ``client_key``. Empty cells are absent values; cells of integer, number and boolean
fields are converted. JSON: an array of objects shaped like the issue API's ``metadata`` (own fields
under ``fields``), each with an optional ``client_key``, or ``{"rows": [...]}``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import multiprocessing
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.audit import canonical_json
from core.db import transaction, utcnow
from core.errors import Conflict, InputTooLarge, InvalidInput, MalformedData, NotFound
from gmpki.sm3 import sm3_hex
from seal_registry.departments import get_department
from signer.batch import (
    BatchInput,
    JobProgress,
    JobSpec,
    RunSummary,
    WorkerResources,
    add_items,
    create_job,
    job_progress,
    run_job,
)
from signer.batch_models import BatchItem, BatchJob, ItemState

from .catalogue import check_issuer, get_type, type_schema, validate_for_type
from .identifier import make_identifier
from .issuing import LicenceServices, add_event, allocate_serial, choose_seal, licence_view, seal_box
from .metadata import LicenceMetadata, MetadataInvalid, today_in_china
from .models import Licence, LicenceImport, LicenceImportRow, LicenceType
from .rendering import LicenceView, render_licence
from .status import LicenceStatus

MAX_IMPORT_BYTES: Final = 64 * 1024 * 1024
MAX_ROWS: Final = 100_000
MAX_REPORTED: Final = 1000
MAX_CELL: Final = 10_000
MAX_CLIENT_KEY: Final = 128
RENDER_CHUNK: Final = 100
POOL_RENDER_ABOVE: Final = 200  # below this, starting render processes costs more than it saves
RECORD_CHUNK: Final = 200


class ImportInvalid(InvalidInput):
    """The import file was refused; ``details["errors"]`` lists every problem with its row."""

    code = "licence_import_invalid"
    title_zh, title_en = "存量证照导入数据有误", "Invalid stock licence import"


class RowState:
    PENDING = "pending"
    RENDERED = "rendered"
    ISSUED = "issued"
    FAILED = "failed"


@dataclass(frozen=True)
class RawRow:
    row_no: int  # 1-based data row
    line: int | None  # CSV line number of the row
    data: dict[str, Any]
    client_key: str | None


@dataclass(frozen=True)
class RowError:
    row: int
    line: int | None
    field: str
    keyword: str
    message_zh: str
    message_en: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "row": self.row,
            "field": self.field,
            "keyword": self.keyword,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
        }
        if self.line is not None:
            out["line"] = self.line
        return out


def _invalid(errors: Sequence[RowError], total: int) -> ImportInvalid:
    bad = len({e.row for e in errors})
    shown = list(errors)[:MAX_REPORTED]
    first = shown[0]
    return ImportInvalid(
        f"{total} 行中有 {bad} 行有误，未导入任何证照"
        f"（第一处：第 {first.row} 行 {first.field}：{first.message_zh}）",
        f"{bad} of {total} rows are invalid; nothing was imported "
        f"(first: row {first.row} {first.field}: {first.message_en})",
        errors=[e.to_dict() for e in shown],
        rows=total,
        bad_rows=bad,
        truncated=len(errors) > len(shown),
    )


# --- parsing --------------------------------------------------------------------------------------------
def _coerce(text: str, spec: Mapping[str, Any]) -> Any:
    kinds = spec.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "integer" in kinds and text.lstrip("-").isdigit():
        return int(text)
    if "number" in kinds:
        try:
            value = float(text)
        except ValueError:
            return text
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    if "boolean" in kinds and text.lower() in ("true", "false", "是", "否", "1", "0"):
        return text.lower() in ("true", "是", "1")
    return text


_CORE_COLUMNS: Final = frozenset(
    {
        "licence_number",
        "name",
        "holder_name",
        "holder_code",
        "holder_code_type",
        "issue_date",
        "valid_from",
        "valid_until",
        "area_code",
        "service_item",
    }
)


def parse_csv(data: bytes, schema: Mapping[str, Any]) -> tuple[list[RawRow], list[RowError]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedData(
            f"CSV 文件不是 UTF-8 编码（第 {exc.start} 字节）", f"the CSV file is not UTF-8 (byte {exc.start})"
        ) from None
    if "\x00" in text:
        raise MalformedData("CSV 文件含 NUL 字符", "the CSV file contains a NUL character")
    props: Mapping[str, Any] = schema.get("properties", {})
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("CSV 文件为空", "the CSV file is empty") from None
    except csv.Error as exc:
        raise MalformedData(f"CSV 表头无法解析：{exc}", f"the CSV header cannot be parsed: {exc}") from None
    columns: list[tuple[str, str]] = []  # (kind, name): core | field | key
    problems: list[str] = []
    for raw in header:
        name = raw.strip()
        if name == "client_key":
            columns.append(("key", name))
        elif name in _CORE_COLUMNS:
            columns.append(("core", name))
        elif name.startswith("fields.") and name[7:] in props:
            columns.append(("field", name[7:]))
        elif name in props:
            columns.append(("field", name))
        else:
            problems.append(name or "(empty)")
    if problems:
        raise ImportInvalid(
            f"CSV 表头含未知列：{', '.join(problems[:10])}",
            f"the CSV header has unknown columns: {', '.join(problems[:10])}",
            errors=[
                {
                    "row": 0,
                    "line": 1,
                    "field": p,
                    "keyword": "header",
                    "message_zh": "未知列",
                    "message_en": "unknown column",
                }
                for p in problems[:MAX_REPORTED]
            ],
        )
    seen = [c[1] for c in columns]
    dupes = sorted({c for c in seen if seen.count(c) > 1})
    if dupes:
        raise ImportInvalid(
            f"CSV 表头有重复列：{', '.join(dupes)}", f"the CSV header repeats columns: {', '.join(dupes)}"
        )
    rows: list[RawRow] = []
    errors: list[RowError] = []
    row_no = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise MalformedData(
                f"CSV 第 {reader.line_num} 行无法解析：{exc}",
                f"CSV line {reader.line_num} cannot be parsed: {exc}",
                line=reader.line_num,
            ) from None
        if not any(c.strip() for c in cells):
            continue  # blank line
        row_no += 1
        if row_no > MAX_ROWS:
            raise InputTooLarge(f"一次最多导入 {MAX_ROWS} 行", f"at most {MAX_ROWS} rows per import")
        line = reader.line_num
        if len(cells) != len(columns):
            errors.append(
                RowError(
                    row_no,
                    line,
                    "$",
                    "columns",
                    f"该行有 {len(cells)} 列，表头有 {len(columns)} 列",
                    f"the row has {len(cells)} cells, the header {len(columns)}",
                )
            )
            continue
        record: dict[str, Any] = {}
        own: dict[str, Any] = {}
        key: str | None = None
        for (kind, name), cell in zip(columns, cells, strict=True):
            value = cell.strip()
            if len(value) > MAX_CELL:
                errors.append(
                    RowError(
                        row_no,
                        line,
                        name,
                        "maxLength",
                        "单元格过长",
                        f"cell longer than {MAX_CELL} characters",
                    )
                )
                continue
            if not value:
                continue
            if kind == "key":
                key = value
            elif kind == "core":
                record[name] = value
            else:
                own[name] = _coerce(value, props.get(name, {}))
        record["fields"] = own
        rows.append(RawRow(row_no, line, record, key))
    return rows, errors


def parse_json(data: bytes) -> tuple[list[RawRow], list[RowError]]:
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedData("JSON 无法解析", f"the JSON cannot be parsed: {type(exc).__name__}") from None
    if isinstance(value, Mapping) and isinstance(value.get("rows"), list):
        value = value["rows"]
    if not isinstance(value, list):
        raise MalformedData(
            'JSON 须为对象数组或 {"rows": [...]}', 'the JSON must be an array of objects or {"rows": [...]}'
        )
    if len(value) > MAX_ROWS:
        raise InputTooLarge(f"一次最多导入 {MAX_ROWS} 行", f"at most {MAX_ROWS} rows per import")
    rows: list[RawRow] = []
    errors: list[RowError] = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, Mapping):
            errors.append(
                RowError(i, None, "$", "type", "该行不是 JSON 对象", "the row is not a JSON object")
            )
            continue
        record = dict(item)
        key = record.pop("client_key", None)
        if key is not None and not isinstance(key, str):
            errors.append(
                RowError(
                    i, None, "client_key", "type", "client_key 须为字符串", "client_key must be a string"
                )
            )
            key = None
        rows.append(RawRow(i, None, record, key))
    return rows, errors


def parse_rows(data: bytes, fmt: str, schema: Mapping[str, Any]) -> tuple[list[RawRow], list[RowError]]:
    if len(data) > MAX_IMPORT_BYTES:
        raise InputTooLarge(
            f"导入文件超过 {MAX_IMPORT_BYTES} 字节", f"the import file exceeds {MAX_IMPORT_BYTES} bytes"
        )
    fmt = fmt.strip().lower()
    if fmt == "csv":
        return parse_csv(data, schema)
    if fmt == "json":
        return parse_json(data)
    raise InvalidInput(
        f"未知的导入格式 {fmt!r}（csv 或 json）", f"unknown import format {fmt!r} (csv or json)"
    )


# --- validation -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValidRow:
    row_no: int
    client_key: str
    meta: LicenceMetadata


def validate_rows(
    session: Session,
    lt: LicenceType,
    dept_id: str,
    rows: Sequence[RawRow],
    errors: list[RowError],
    today: dt.date,
) -> list[ValidRow]:
    """Every row checked; raises :class:`ImportInvalid` listing all problems, else the rows to import."""
    dept = get_department(session, dept_id)
    valid: list[ValidRow] = []
    keys: dict[str, int] = {}
    numbers: dict[str, int] = {}
    for row in rows:
        try:
            meta = validate_for_type(lt, row.data, dept, today=today)
        except MetadataInvalid as exc:
            for e in exc.details.get("errors", []):
                errors.append(
                    RowError(row.row_no, row.line, e["field"], e["keyword"], e["message_zh"], e["message_en"])
                )
            continue
        key = (row.client_key or meta.licence_number).strip()
        if not key or len(key) > MAX_CLIENT_KEY or not key.isprintable():
            errors.append(
                RowError(
                    row.row_no,
                    row.line,
                    "client_key",
                    "maxLength",
                    f"客户端键须为 1–{MAX_CLIENT_KEY} 个可打印字符",
                    f"client key must be 1–{MAX_CLIENT_KEY} printable characters",
                )
            )
            continue
        if key in keys:
            errors.append(
                RowError(
                    row.row_no,
                    row.line,
                    "client_key",
                    "unique",
                    f"与第 {keys[key]} 行的客户端键重复",
                    f"same client key as row {keys[key]}",
                )
            )
            continue
        if meta.licence_number in numbers:
            errors.append(
                RowError(
                    row.row_no,
                    row.line,
                    "licence_number",
                    "unique",
                    f"与第 {numbers[meta.licence_number]} 行的证照编号重复",
                    f"same licence number as row {numbers[meta.licence_number]}",
                )
            )
            continue
        keys[key] = row.row_no
        numbers[meta.licence_number] = row.row_no
        valid.append(ValidRow(row.row_no, key, meta))
    _check_existing(session, lt, dept.id, valid, errors, {r.row_no: r.line for r in rows})
    if errors:
        total = max([r.row_no for r in rows] + [e.row for e in errors], default=0)
        raise _invalid(sorted(errors, key=lambda e: e.row), total)
    return valid


def _check_existing(
    session: Session,
    lt: LicenceType,
    dept_id: str,
    rows: Sequence[ValidRow],
    errors: list[RowError],
    lines: Mapping[int, int | None],
) -> None:
    """A licence number already used by a current licence not issued under the row's own key."""
    by_number = {r.meta.licence_number: r for r in rows}
    numbers = list(by_number)
    for start in range(0, len(numbers), 500):
        chunk = numbers[start : start + 500]
        found = session.execute(
            select(Licence.licence_number, Licence.client_key, Licence.identifier).where(
                Licence.type_id == lt.id,
                Licence.issuer_department_id == dept_id,
                Licence.licence_number.in_(chunk),
                Licence.superseded_by.is_(None),
            )
        ).all()
        for number, key, identifier in found:
            row = by_number[number]
            if key != row.client_key:
                errors.append(
                    RowError(
                        row.row_no,
                        lines.get(row.row_no),
                        "licence_number",
                        "unique",
                        f"证照编号已被证照 {identifier} 使用",
                        f"licence number already used by {identifier}",
                    )
                )


# --- the job --------------------------------------------------------------------------------------------
def create_import(
    session: Session,
    *,
    type_ref: str,
    department_id: str,
    data: bytes,
    fmt: str,
    actor: str,
    es_id: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[LicenceImport, bool]:
    """Validate the file and create the import (or return the existing one for the same file and
    department: ``created`` False). Raises :class:`ImportInvalid` with row-level errors; then nothing
    is written."""
    now = now or utcnow()
    source = sm3_hex(data)
    existing = session.scalar(
        select(LicenceImport).where(
            LicenceImport.department_id == department_id, LicenceImport.source_sm3 == source
        )
    )
    lt = get_type(session, type_ref)
    if existing is not None:
        if existing.type_id != lt.id:
            raise Conflict(
                "该文件已作为另一类型的证照导入",
                "this file was already imported for another licence type",
                import_id=existing.id,
            )
        return existing, False
    dept = get_department(session, department_id)
    check_issuer(lt, dept)
    rows, errors = parse_rows(data, fmt, type_schema(lt))
    if not rows and not errors:
        raise InvalidInput("导入文件中没有数据行", "the import file holds no rows")
    valid = validate_rows(session, lt, dept.id, rows, errors, today_in_china(now))
    seal = choose_seal(session, dept, lt.seal_type, es_id, now)
    box = seal_box(lt)
    job = create_job(
        session,
        JobSpec(
            department_id=dept.id,
            es_id=seal,
            placement={"page": 1, "x": box[0], "y": box[1]},
            name=f"licence-import-{source[:16]}-{dept.id[:8]}",
        ),
        actor=actor,
    )
    record = LicenceImport(
        id=str(uuid.uuid4()),
        type_id=lt.id,
        department_id=dept.id,
        es_id=seal,
        batch_job_id=job.id,
        source_sm3=source,
        total=len(valid),
        created_by=actor,
        created_at=now,
        finished_at=None,
    )
    session.add(record)
    session.flush()
    session.add_all(
        LicenceImportRow(
            import_id=record.id,
            row_no=r.row_no,
            client_key=r.client_key,
            payload=canonical_json(r.meta.to_input()),
            state=RowState.PENDING,
        )
        for r in valid
    )
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.import_created",
        subject_type="licence_import",
        subject_id=record.id,
        details={
            "type_code": lt.type_code,
            "department_id": dept.id,
            "rows": len(valid),
            "source_sm3": source,
            "batch_job_id": job.id,
        },
    )
    return record, True


@dataclass(frozen=True)
class ImportProgress:
    total: int
    pending: int
    rendered: int
    issued: int
    failed: int
    sealing: JobProgress | None

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.rendered == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "pending": self.pending,
            "rendered": self.rendered,
            "issued": self.issued,
            "failed": self.failed,
            "finished": self.finished,
            "sealing": None if self.sealing is None else self.sealing.to_json(),
        }


def get_import(session: Session, import_id: str, *, department_id: str | None = None) -> LicenceImport:
    row = session.get(LicenceImport, import_id) if len(import_id) <= 36 else None
    if row is None or (department_id is not None and row.department_id != department_id):
        raise NotFound(f"导入任务 {import_id} 不存在", f"import {import_id} not found")
    return row


def import_progress(session: Session, import_id: str) -> ImportProgress:
    job = get_import(session, import_id)
    counts = {
        str(state): int(n)
        for state, n in session.execute(
            select(LicenceImportRow.state, func.count())
            .where(LicenceImportRow.import_id == import_id)
            .group_by(LicenceImportRow.state)
        ).all()
    }
    return ImportProgress(
        total=job.total,
        pending=counts.get(RowState.PENDING, 0),
        rendered=counts.get(RowState.RENDERED, 0),
        issued=counts.get(RowState.ISSUED, 0),
        failed=counts.get(RowState.FAILED, 0),
        sealing=job_progress(session, job.batch_job_id),
    )


def _render(job: tuple[LicenceView, dt.datetime]) -> bytes:
    """One licence's OFD; module-level so a process pool can run it."""
    return render_licence(job[0], when=job[1])


def _render_chunk(
    res: WorkerResources,
    services: LicenceServices,
    import_id: str,
    *,
    actor: str,
    pool: Executor | None = None,
) -> int:
    """Assign identifiers to, render and queue one chunk of pending rows; returns how many.

    Rendering (mostly the QR code's mask selection) is CPU-bound pure Python, so with ``pool`` the
    chunk is rendered by several processes; the identifiers are assigned here, in the transaction."""
    with transaction(res.sessions) as s:
        imp = get_import(s, import_id)
        lt = s.get(LicenceType, imp.type_id)
        job = s.get(BatchJob, imp.batch_job_id)
        assert lt is not None and job is not None
        dept = get_department(s, imp.department_id)
        rows = list(
            s.scalars(
                select(LicenceImportRow)
                .where(LicenceImportRow.import_id == import_id, LicenceImportRow.state == RowState.PENDING)
                .order_by(LicenceImportRow.row_no)
                .limit(RENDER_CHUNK)
            )
        )
        if not rows:
            return 0
        now = utcnow().replace(microsecond=0)
        queued: list[tuple[LicenceImportRow, LicenceView]] = []
        for row in rows:
            already = s.scalar(
                select(Licence.identifier).where(
                    Licence.issuer_department_id == dept.id, Licence.client_key == row.client_key
                )
            )
            if already is not None:
                row.state, row.identifier = RowState.ISSUED, already
                continue
            meta = validate_for_type(lt, json.loads(row.payload), dept)
            serial = allocate_serial(s, lt.type_code, dept.uscc, meta.area_code, today_in_china(now).year)
            ident = make_identifier(lt.type_code, dept.uscc, serial, 1)
            queued.append((row, licence_view(lt, meta, ident, dept.name, services.verify_url(str(ident)))))
            row.state, row.identifier, row.rendered_at = RowState.RENDERED, str(ident), now
        jobs = [(view, now) for _row, view in queued]
        files = list(pool.map(_render, jobs, chunksize=8)) if pool is not None else [_render(j) for j in jobs]
        inputs = [
            BatchInput(row.client_key, f"{view.identifier}.ofd", data)
            for (row, view), data in zip(queued, files, strict=True)
        ]
        if inputs:
            add_items(s, res.blobs, job, inputs)
        s.flush()
        return len(rows)


def _record_chunk(res: WorkerResources, import_id: str, *, actor: str) -> int:
    """Turn one chunk of sealed rows into licences (or failed rows); returns how many rows moved."""
    with transaction(res.sessions) as s:
        imp = get_import(s, import_id)
        lt = s.get(LicenceType, imp.type_id)
        assert lt is not None
        dept = get_department(s, imp.department_id)
        pairs = s.execute(
            select(LicenceImportRow, BatchItem)
            .join(
                BatchItem,
                (BatchItem.job_id == imp.batch_job_id)
                & (BatchItem.client_key == LicenceImportRow.client_key),
            )
            .where(
                LicenceImportRow.import_id == import_id,
                LicenceImportRow.state == RowState.RENDERED,
                BatchItem.state != ItemState.PENDING.value,
            )
            .order_by(LicenceImportRow.row_no)
            .limit(RECORD_CHUNK)
        ).all()
        if not pairs:
            return 0
        for row, item in pairs:
            if item.state == ItemState.FAILED.value or item.output_sm3 is None:
                row.state = RowState.FAILED
                row.error = f"({item.error_code}) {item.error_zh} / {item.error_en}"
                continue
            meta = validate_for_type(lt, json.loads(row.payload), dept)
            assert row.identifier is not None and row.rendered_at is not None
            ident_base = row.identifier.rsplit(".", 2)[0]
            licence = Licence(
                id=str(uuid.uuid4()),
                identifier=row.identifier,
                base_identifier=ident_base,
                version=1,
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
                previous_identifier=None,
                superseded_by=None,
                fields_json=canonical_json(dict(meta.fields)),
                es_id=imp.es_id,
                ofd_sm3=item.output_sm3,
                ofd_size=int(item.output_size or 0),
                client_key=row.client_key,
                issued_at=row.rendered_at,
                status_changed_at=row.rendered_at,
                created_by=actor,
            )
            s.add(licence)
            s.flush()
            add_event(s, licence, "import", None, actor, f"stock import {imp.id} row {row.row_no}", utcnow())
            row.state = RowState.ISSUED
            s.flush()
            audit_append(
                s,
                actor=actor,
                action="licence.issued",
                subject_type="licence",
                subject_id=licence.base_identifier,
                details={
                    "identifier": licence.identifier,
                    "version": 1,
                    "type_code": lt.type_code,
                    "licence_number": licence.licence_number,
                    "department_id": dept.id,
                    "es_id": imp.es_id,
                    "file_sm3": licence.ofd_sm3,
                    "client_key": row.client_key,
                    "import_id": imp.id,
                    "batch_job_id": imp.batch_job_id,
                },
            )
        return len(pairs)


def run_import(
    res: WorkerResources,
    services: LicenceServices,
    import_id: str,
    *,
    actor: str,
    workers: int = 2,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> tuple[ImportProgress, RunSummary | None]:
    """Render, seal and record every row not yet issued; safe to rerun after any interruption."""

    def report() -> None:
        if on_progress is not None:
            with res.sessions() as s:
                on_progress(import_progress(s, import_id))

    with res.sessions() as s:
        imp = get_import(s, import_id)
        batch_job_id = imp.batch_job_id
        pending = int(
            s.scalar(
                select(func.count())
                .select_from(LicenceImportRow)
                .where(LicenceImportRow.import_id == import_id, LicenceImportRow.state == RowState.PENDING)
            )
            or 0
        )
    with contextlib.ExitStack() as stack:
        pool: Executor | None = None
        if workers > 1 and pending > POOL_RENDER_ABOVE:
            pool = stack.enter_context(
                ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            )
        while _render_chunk(res, services, import_id, actor=actor, pool=pool):
            report()
    summary = run_job(res, batch_job_id, actor=actor, workers=workers, on_progress=lambda _p: report())
    while _record_chunk(res, import_id, actor=actor):
        report()
    with transaction(res.sessions) as s:
        progress = import_progress(s, import_id)
        if progress.finished:
            imp = get_import(s, import_id)
            if imp.finished_at is None:
                imp.finished_at = utcnow()
    report()
    return progress, summary


def import_errors(session: Session, import_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(LicenceImportRow)
        .where(LicenceImportRow.import_id == import_id, LicenceImportRow.state == RowState.FAILED)
        .order_by(LicenceImportRow.row_no)
    )
    return [{"row": r.row_no, "client_key": r.client_key, "error": r.error} for r in rows]


__all__ = [
    "MAX_IMPORT_BYTES",
    "MAX_ROWS",
    "ImportInvalid",
    "ImportProgress",
    "RowError",
    "create_import",
    "get_import",
    "import_errors",
    "import_progress",
    "parse_rows",
    "run_import",
    "validate_rows",
]
