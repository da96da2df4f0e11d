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

**With files** (存量证照文件): a ZIP archive holding the manifest — ``manifest.csv`` or
``manifest.json`` (or the archive's only ``.csv`` / ``.json`` at its root) — and the licence files,
each row naming its file by its path in the archive (column or key ``file``; a row without one is
rendered as above). The archive is read with the hardened container reader
(:func:`signer.batch.read_archive`: ``..``, absolute and duplicate names, bombs → the whole archive
refused with MalformedData / InputTooLarge). Every named file must be an OFD the department's seal
can be added to (:func:`signer.ofd_sealing.analyse_ofd`, the check the batch job repeats: a hostile
package or XML, a whole-protected document, a placement that does not fit → a row error); a PDF or
any other format is refused, as the OFD is the licence's legal copy (GB/T 36905). Files no row names
are errors too (``__MACOSX/`` and hidden files excepted). Once everything is valid, the files are
stored in the blob store (content-addressed; the row's payload records the SM3) and the rows are
queued; a file row is then *sealed as it is* instead of rendered, in ``continue`` mode, so the
signatures it already carries stay valid.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import logging
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
from core.blobstore import BlobStore, StagedBlobs
from core.db import transaction, utcnow
from core.errors import Conflict, EsealError, InputTooLarge, InvalidInput, MalformedData, NotFound
from gmpki.ofd import ContainerLimits, check_entry_name, is_zip
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
    read_archive,
    run_job,
)
from signer.batch_models import BatchItem, BatchJob, ItemState, JobKind
from signer.ofd_sealing import SealMode, analyse_ofd
from signer.placement import Placement, placement_from_options

from .catalogue import check_issuer, get_type, type_schema, validate_for_type
from .identifier import make_identifier, parse_identifier
from .issuing import (
    LicenceServices,
    add_event,
    allocate_serial,
    choose_seal,
    licence_row,
    licence_view,
    seal_box,
)
from .metadata import LicenceMetadata, MetadataInvalid, today_in_china
from .models import Licence, LicenceImport, LicenceImportRow, LicenceType
from .rendering import LicenceView, render_licence

MAX_IMPORT_BYTES: Final = 64 * 1024 * 1024
# An archive with files is held in memory while it is checked: bound it, and what it inflates to.
MAX_ARCHIVE_BYTES: Final = 512 * 1024 * 1024
MAX_FILES: Final = 10_000
ARCHIVE_LIMITS: Final = ContainerLimits(
    max_entries=MAX_FILES + 16, max_total_size=MAX_ARCHIVE_BYTES, max_input_size=MAX_ARCHIVE_BYTES
)
MANIFEST_NAMES: Final = ("manifest.csv", "manifest.json")
FILE_COLUMN: Final = "file"
STOCK_FILE_KEY: Final = "$stock_file"  # in a row's payload; "$" cannot start a metadata key
MAX_ROWS: Final = 100_000
MAX_REPORTED: Final = 1000
MAX_CELL: Final = 10_000
MAX_CLIENT_KEY: Final = 128
RENDER_CHUNK: Final = 100
POOL_RENDER_ABOVE: Final = 200  # below this, starting render processes costs more than it saves
RECORD_CHUNK: Final = 200

log = logging.getLogger("eseal.licence")


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
    file: str | None = None  # path of the row's stock file in the archive


@dataclass(frozen=True)
class RowError:
    """One problem; ``row`` 0 is the file as a whole (an archive entry no row names, a header)."""

    row: int
    line: int | None
    field: str
    keyword: str
    message_zh: str
    message_en: str
    file: str | None = None  # the archive entry concerned

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
        if self.file is not None:
            out["file"] = self.file
        return out


def _invalid(errors: Sequence[RowError], total: int) -> ImportInvalid:
    bad = len({e.row for e in errors if e.row > 0})
    shown = list(errors)[:MAX_REPORTED]
    first = shown[0]
    where_zh = f"第 {first.row} 行" if first.row else f"文件 {first.file}"
    where_en = f"row {first.row}" if first.row else f"file {first.file}"
    return ImportInvalid(
        f"{total} 行中有 {bad} 行有误，未导入任何证照"
        f"（第一处：{where_zh} {first.field}：{first.message_zh}）",
        f"{bad} of {total} rows are invalid; nothing was imported "
        f"(first: {where_en} {first.field}: {first.message_en})",
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


_FILE_NEEDS_ARCHIVE: Final = (
    "file 列只用于 ZIP 导入包（清单加证照文件）",
    "the file column needs a ZIP archive (manifest and licence files)",
)


def parse_csv(
    data: bytes, schema: Mapping[str, Any], *, files: bool = False
) -> tuple[list[RawRow], list[RowError]]:
    """Rows of a CSV manifest; with ``files`` (inside an archive) the ``file`` column names files."""
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
    columns: list[tuple[str, str]] = []  # (kind, name): core | field | key | file
    problems: list[str] = []
    for raw in header:
        name = raw.strip()
        if name == "client_key":
            columns.append(("key", name))
        elif name == FILE_COLUMN and files:
            columns.append(("file", name))
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
                    "message_zh": "未知列" if p != FILE_COLUMN else _FILE_NEEDS_ARCHIVE[0],
                    "message_en": "unknown column" if p != FILE_COLUMN else _FILE_NEEDS_ARCHIVE[1],
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
        path: str | None = None
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
            elif kind == "file":
                path = value
            elif kind == "core":
                record[name] = value
            else:
                own[name] = _coerce(value, props.get(name, {}))
        record["fields"] = own
        rows.append(RawRow(row_no, line, record, key, path))
    return rows, errors


def parse_json(data: bytes, *, files: bool = False) -> tuple[list[RawRow], list[RowError]]:
    """Rows of a JSON manifest; with ``files`` (inside an archive) a row's ``file`` names its file."""
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
        path = record.pop(FILE_COLUMN, None)
        if path is not None and (not files or not isinstance(path, str)):
            errors.append(
                RowError(
                    i,
                    None,
                    FILE_COLUMN,
                    "type",
                    "file 须为字符串，且只用于 ZIP 导入包（清单加证照文件）",
                    "file must be a string, and only in a ZIP archive (manifest and licence files)",
                )
            )
            path = None
        rows.append(RawRow(i, None, record, key, (path.strip() or None) if path is not None else None))
    return rows, errors


def parse_rows(
    data: bytes, fmt: str, schema: Mapping[str, Any], *, files: bool = False
) -> tuple[list[RawRow], list[RowError]]:
    if len(data) > MAX_IMPORT_BYTES:
        raise InputTooLarge(
            f"导入文件超过 {MAX_IMPORT_BYTES} 字节", f"the import file exceeds {MAX_IMPORT_BYTES} bytes"
        )
    fmt = fmt.strip().lower()
    if fmt == "csv":
        return parse_csv(data, schema, files=files)
    if fmt == "json":
        return parse_json(data, files=files)
    raise InvalidInput(
        f"未知的导入格式 {fmt!r}（csv、json 或 zip）", f"unknown import format {fmt!r} (csv, json or zip)"
    )


# --- archives with files --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StockArchive:
    """An import archive, every entry inflated under :data:`ARCHIVE_LIMITS`."""

    manifest_name: str
    manifest_format: str  # csv | json
    entries: Mapping[str, bytes]


def _ignored(name: str) -> bool:
    """Entries archivers add on their own (macOS resource forks, hidden files): never files of a row."""
    return name.startswith("__MACOSX/") or any(part.startswith(".") for part in name.split("/"))


def read_import_archive(data: bytes) -> StockArchive:
    """The manifest and files of an import archive; MalformedData / InputTooLarge for a hostile or
    broken archive, InvalidInput when the manifest cannot be found."""
    entries = {i.key: i.data for i in read_archive(data, kind=JobKind.SES, limits=ARCHIVE_LIMITS)}
    named: list[str] = [n for n in MANIFEST_NAMES if n in entries]
    if not named:
        named = [
            n
            for n in entries
            if "/" not in n and not _ignored(n) and n.lower().endswith((".csv", ".json"))
        ]
    if len(named) != 1:
        raise InvalidInput(
            "压缩包根目录须有且只有一个清单（manifest.csv 或 manifest.json）"
            + (f"，现有：{', '.join(sorted(named)[:5])}" if named else ""),
            "the archive needs exactly one manifest at its root (manifest.csv or manifest.json)"
            + (f"; found: {', '.join(sorted(named)[:5])}" if named else ""),
        )
    name = named[0]
    return StockArchive(name, name.rsplit(".", 1)[1].lower(), entries)


@dataclass(frozen=True)
class StockFile:
    """A row's checked stock file."""

    name: str
    sm3: str
    data: bytes

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "sm3": self.sm3, "size": len(self.data)}


_OFD_ONLY_ZH: Final = "只接受 OFD 格式的存量证照文件（GB/T 36905：OFD 版式文件为证照的法定文件）"
_OFD_ONLY_EN: Final = (
    "only OFD stock licence files are accepted (GB/T 36905: the OFD is the licence's legal copy)"
)


def _file_problem(data: bytes, placement: Placement, limits: ContainerLimits) -> tuple[str, str, str] | None:
    """Why this file cannot be sealed as a stock licence — (keyword, zh, en) — or None."""
    if not is_zip(data):
        if data.startswith(b"%PDF-"):
            return "format", f"该文件是 PDF；{_OFD_ONLY_ZH}", f"the file is a PDF; {_OFD_ONLY_EN}"
        return "format", f"该文件不是 OFD；{_OFD_ONLY_ZH}", f"the file is not an OFD; {_OFD_ONLY_EN}"
    try:
        # What the batch job will do to it, up to the seal: the package and its XML read with every
        # limit (defusedxml: no DTD, no entities), the first document and page found, the stamp's
        # place checked, and refused if an existing signature protects the signature list.
        analyse_ofd(data, placement=placement, mode=SealMode.CONTINUE, limits=limits)
    except EsealError as exc:
        return exc.code, exc.message_zh, exc.message_en
    except Exception as exc:  # a parser bug must refuse this file, not crash the whole validation
        log.exception("stock file analysis failed")
        return "internal_error", "无法分析该文件", f"the file cannot be analysed ({type(exc).__name__})"
    return None


def check_files(
    rows: Sequence[RawRow],
    archive: StockArchive,
    placement: Placement,
    limits: ContainerLimits,
    errors: list[RowError],
    *,
    complete: bool,
) -> dict[int, StockFile]:
    """Each row's file, checked; problems appended to ``errors``. With ``complete`` (every row of the
    manifest was read), archive entries no row names are errors too."""
    found: dict[int, StockFile] = {}
    used: dict[str, int] = {}

    def error(row: RawRow, keyword: str, zh: str, en: str) -> None:
        errors.append(RowError(row.row_no, row.line, FILE_COLUMN, keyword, zh, en, file=row.file))

    for row in rows:
        if row.file is None:
            continue
        try:
            check_entry_name(row.file)
        except MalformedData as exc:
            error(row, "path", exc.message_zh, exc.message_en)
            continue
        if row.file == archive.manifest_name or row.file not in archive.entries:
            error(row, "exists", "压缩包中没有该文件", "no such file in the archive")
            continue
        if row.file in used:
            first = used[row.file]
            error(row, "unique", f"与第 {first} 行是同一文件", f"same file as row {first}")
            continue
        used[row.file] = row.row_no
        data = archive.entries[row.file]
        problem = _file_problem(data, placement, limits)
        if problem is not None:
            error(row, *problem)
            continue
        found[row.row_no] = StockFile(row.file, sm3_hex(data), data)
    if complete:
        for name in archive.entries:
            if name != archive.manifest_name and name not in used and not _ignored(name):
                errors.append(
                    RowError(
                        0,
                        None,
                        FILE_COLUMN,
                        "unreferenced",
                        "清单中没有任何一行引用该文件",
                        "no row of the manifest names this file",
                        file=name,
                    )
                )
    return found


def split_payload(text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A row's payload: its metadata (as validated) and its stock file (None: rendered)."""
    value: dict[str, Any] = json.loads(text)
    stock = value.pop(STOCK_FILE_KEY, None)
    return value, stock


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
    blobs: BlobStore | None = None,
    file_limits: ContainerLimits | None = None,
) -> tuple[LicenceImport, bool]:
    """Validate the file and create the import (or return the existing one for the same file and
    department: ``created`` False). Raises :class:`ImportInvalid` with row-level errors; then nothing
    is written.

    ``fmt`` csv, json or zip (an archive with files; recognised by its content whatever ``fmt``
    says). An archive's files are stored in ``blobs`` and checked under ``file_limits`` (give the
    limits the batch job will seal them under: :attr:`signer.batch.WorkerResources.limits`).
    """
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
    box = seal_box(lt)
    placement: dict[str, Any] = {"page": 1, "x": box[0], "y": box[1]}
    archive: StockArchive | None = None
    if is_zip(data) or fmt.strip().lower() == "zip":
        if blobs is None:
            raise TypeError("an import archive needs the blob store")
        if len(data) > MAX_ARCHIVE_BYTES:
            raise InputTooLarge(
                f"导入包超过 {MAX_ARCHIVE_BYTES} 字节",
                f"the import archive exceeds {MAX_ARCHIVE_BYTES} bytes",
            )
        archive = read_import_archive(data)
        rows, errors = parse_rows(
            archive.entries[archive.manifest_name], archive.manifest_format, type_schema(lt), files=True
        )
    else:
        rows, errors = parse_rows(data, fmt, type_schema(lt))
    if not rows and not errors:
        raise InvalidInput("导入文件中没有数据行", "the import file holds no rows")
    files: dict[int, StockFile] = {}
    if archive is not None:
        stamp = placement_from_options(page=1, x=box[0], y=box[1])
        assert stamp is not None
        files = check_files(
            rows, archive, stamp, file_limits or ContainerLimits(), errors, complete=not errors
        )
    valid = validate_rows(session, lt, dept.id, rows, errors, today_in_china(now))
    seal = choose_seal(session, dept, lt.seal_type, es_id, now)
    job = create_job(
        session,
        JobSpec(
            department_id=dept.id,
            es_id=seal,
            placement=placement,
            name=f"licence-import-{source[:16]}-{dept.id[:8]}",
        ),
        actor=actor,
    )
    if files:
        assert blobs is not None
        # Durable before the rows that name them commit (as signer.batch.add_items does).
        staged = StagedBlobs(blobs)
        for stock in files.values():
            staged.put(stock.data)
        staged.sync()
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
            payload=_payload(r.meta, files.get(r.row_no)),
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
            "files": len(files),
            "source_sm3": source,
            "batch_job_id": job.id,
        },
    )
    return record, True


def _payload(meta: LicenceMetadata, stock: StockFile | None) -> str:
    value = meta.to_input()
    if stock is not None:
        value[STOCK_FILE_KEY] = stock.payload()
    return canonical_json(value)


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

    Rendering is CPU-bound pure Python, so with ``pool`` the chunk is rendered by several
    processes; the identifiers are assigned here, in the transaction. A row with a stock file
    queues that file (from the blob store) instead of a rendering."""
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
        queued: list[tuple[LicenceImportRow, str, LicenceView | None, bytes | None]] = []
        for row in rows:
            already = s.scalar(
                select(Licence.identifier).where(
                    Licence.issuer_department_id == dept.id, Licence.client_key == row.client_key
                )
            )
            if already is not None:
                row.state, row.identifier = RowState.ISSUED, already
                continue
            data, stock = split_payload(row.payload)
            meta = validate_for_type(lt, data, dept)
            serial = allocate_serial(s, lt.type_code, dept.uscc, meta.area_code, today_in_china(now).year)
            ident = make_identifier(lt.type_code, dept.uscc, serial, 1)
            if stock is not None:
                queued.append((row, str(ident), None, res.blobs.get(stock["sm3"])))
            else:
                view = licence_view(lt, meta, ident, dept.name, services.verify_url(str(ident)))
                queued.append((row, str(ident), view, None))
            row.state, row.identifier, row.rendered_at = RowState.RENDERED, str(ident), now
        jobs = [(view, now) for _row, _ident, view, _file in queued if view is not None]
        rendered = iter(
            list(pool.map(_render, jobs, chunksize=8)) if pool is not None else [_render(j) for j in jobs]
        )
        inputs = [
            BatchInput(row.client_key, f"{ident}.ofd", stock if stock is not None else next(rendered))
            for row, ident, _view, stock in queued
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
            data, stock = split_payload(row.payload)
            meta = validate_for_type(lt, data, dept)
            assert row.identifier is not None and row.rendered_at is not None
            licence = licence_row(
                lt,
                meta,
                dept,
                parse_identifier(row.identifier),
                es_id=imp.es_id,
                ofd_sm3=item.output_sm3,
                ofd_size=int(item.output_size or 0),
                client_key=row.client_key,
                at=row.rendered_at,
                actor=actor,
            )
            s.add(licence)
            s.flush()
            reason = f"stock import {imp.id} row {row.row_no}"
            if stock is not None:
                reason += f", stock file {stock['name']} (SM3 {stock['sm3']})"
            add_event(s, licence, "import", None, actor, reason, utcnow())
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
                    **({"stock_file_sm3": stock["sm3"]} if stock is not None else {}),
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
    "ARCHIVE_LIMITS",
    "MAX_ARCHIVE_BYTES",
    "MAX_FILES",
    "MAX_IMPORT_BYTES",
    "MAX_ROWS",
    "ImportInvalid",
    "ImportProgress",
    "RowError",
    "StockArchive",
    "StockFile",
    "check_files",
    "create_import",
    "get_import",
    "import_errors",
    "import_progress",
    "parse_rows",
    "read_import_archive",
    "run_import",
    "split_payload",
    "validate_rows",
]
