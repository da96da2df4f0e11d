"""The licence catalogue (证照目录, GB/T 36902): licence types and the rules each licence follows.

A type has its code (the defining authority's unified social credit code and a 3-digit number), its
name, the defining authority, the issuing authorities allowed to issue it (none listed: any
registered department), the JSON Schema (draft 2020-12) of its own fields, the template its licence
file is rendered from, the seal type the issuing department seals it with, the default validity
in days (none: long-term), and ``print_pdf``: whether issuing also renders a print-ready PDF and
seals it with the same seal in the same transaction (同步生成、同步签章; the OFD stays the legal copy).

The schema is checked when the type is saved: it must be a valid draft 2020-12 schema of an object
whose property names are ``[a-z][a-z0-9_]*``, at most 64 KiB, with local ``$ref`` only (no
network look-ups). Formats ``date``, ``uscc``, ``citizen-id`` and ``area-code`` are enforced.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.audit import canonical_json
from core.db import utcnow
from core.errors import Conflict, InputTooLarge, InvalidInput, NotFound, PermissionDenied
from seal_registry.lifecycle import seal_type as registry_seal_type
from seal_registry.models import Department

from .identifier import IdentifierInvalid, check_issuer_code, check_type_code
from .metadata import FORMATS, FieldError, LicenceMetadata, metadata_invalid, schema_errors, validate_metadata
from .models import LicenceType

MAX_SCHEMA_BYTES: Final = 64 * 1024
MAX_TEMPLATE_BYTES: Final = 16 * 1024
MAX_VALID_DAYS: Final = 36_500
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

A4: Final = (210.0, 297.0)
DEFAULT_SEAL_BOX: Final = (130.0, 222.0)  # top-left of the issuer's seal on page 1, mm

TEMPLATE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 60},
        "subtitle": {"type": "string", "maxLength": 100},
        "fields": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["key"],
                "properties": {
                    "key": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,63}$"},
                    "label": {"type": "string", "minLength": 1, "maxLength": 40},
                },
                "additionalProperties": False,
            },
        },
        "page": {
            "type": "object",
            "required": ["width", "height"],
            "properties": {
                "width": {"type": "number", "minimum": 100, "maximum": 600},
                "height": {"type": "number", "minimum": 140, "maximum": 900},
            },
            "additionalProperties": False,
        },
        "seal": {
            "type": "object",
            "required": ["x", "y"],
            "properties": {"x": {"type": "number", "minimum": 0}, "y": {"type": "number", "minimum": 0}},
            "additionalProperties": False,
        },
        "footer": {"type": "string", "maxLength": 200},
    },
    "additionalProperties": False,
}
_TEMPLATE_VALIDATOR: Final = Draft202012Validator(TEMPLATE_SCHEMA)


class CatalogueInvalid(InvalidInput):
    """A licence type definition (schema or template) that cannot be used."""

    code = "licence_type_invalid"
    title_zh, title_en = "证照类型定义无效", "Invalid licence type definition"


# --- checks ---------------------------------------------------------------------------------------------
def _json_size(value: Any, limit: int, what_zh: str, what_en: str) -> str:
    try:
        text = canonical_json(value)
    except (TypeError, ValueError):
        raise CatalogueInvalid(f"{what_zh}不是有效的 JSON", f"the {what_en} is not valid JSON") from None
    if len(text.encode("utf-8")) > limit:
        raise InputTooLarge(
            f"{what_zh}超过 {limit} 字节", f"the {what_en} exceeds {limit} bytes", limit=limit
        )
    return text


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key), value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def check_schema(schema: Any) -> dict[str, Any]:
    """A usable type schema, or :class:`CatalogueInvalid` saying why not."""
    if not isinstance(schema, Mapping):
        raise CatalogueInvalid("元数据模式须为 JSON 对象", "the metadata schema must be a JSON object")
    _json_size(schema, MAX_SCHEMA_BYTES, "元数据模式", "metadata schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "$"
        raise CatalogueInvalid(
            f"元数据模式不是有效的 JSON Schema（{path}）",
            f"the metadata schema is not a valid JSON Schema at {path}: {exc.message[:200]}",
        ) from None
    if schema.get("type") != "object":
        raise CatalogueInvalid(
            '元数据模式的 type 须为 "object"', 'the metadata schema must have type "object"'
        )
    props = schema.get("properties", {})
    bad = [n for n in props if _PROPERTY_NAME.fullmatch(n) is None]
    if bad:
        raise CatalogueInvalid(
            f"字段名须为小写字母开头的 [a-z0-9_]：{', '.join(bad[:5])}",
            f"field names must match [a-z][a-z0-9_]*: {', '.join(bad[:5])}",
        )
    for key, value in _walk(schema):
        if key in ("$ref", "$dynamicRef") and not (isinstance(value, str) and value.startswith("#")):
            raise CatalogueInvalid("只允许模式内部引用（#…）", "only local references (#…) are allowed")
    return dict(schema)


def default_template(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    fields = [
        {"key": k, "label": str(v.get("title", k))[:40] if isinstance(v, Mapping) else k}
        for k, v in props.items()
    ]
    return {"title": name[:60], "fields": fields[:100]}


def check_template(template: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(template, Mapping):
        raise CatalogueInvalid("模板须为 JSON 对象", "the template must be a JSON object")
    _json_size(template, MAX_TEMPLATE_BYTES, "模板", "template")
    errors = schema_errors(_TEMPLATE_VALIDATOR, template, prefix="template")
    known = set(schema.get("properties", {}))
    for i, item in enumerate(template.get("fields", []) if not errors else []):
        if item["key"] not in known:
            errors.append(
                FieldError(
                    f"template.fields.{i}.key",
                    "enum",
                    f"模板字段 {item['key']} 不在元数据模式中",
                    f"template field {item['key']!r} is not in the metadata schema",
                )
            )
    if errors:
        raise CatalogueInvalid(
            "模板有误：" + "、".join(e.field for e in errors),
            "the template is invalid: " + ", ".join(e.field for e in errors),
            errors=[e.to_dict() for e in errors],
        )
    return dict(template)


def _issuers(codes: Sequence[str]) -> list[str]:
    out: list[str] = []
    for code in codes:
        out.append(check_issuer_code(code.strip().upper()))
    return sorted(set(out))


def _name(value: str, what_zh: str, what_en: str, limit: int = 200) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit or not value.isprintable():
        raise InvalidInput(
            f"{what_zh}须为 1–{limit} 个可打印字符", f"{what_en} must be 1–{limit} printable characters"
        )
    return value


def _flag(value: Any, name: str) -> bool:
    # JSON from the CLI reaches here unchecked: 1 or "yes" must not pass for true.
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} 须为 true 或 false", f"{name} must be true or false")
    return value


def _valid_days(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= MAX_VALID_DAYS:
        raise InvalidInput(
            f"默认有效期须为 1–{MAX_VALID_DAYS} 天或长期",
            f"default validity must be 1–{MAX_VALID_DAYS} days or none",
        )
    return days


# --- the catalogue --------------------------------------------------------------------------------------
def create_type(
    session: Session,
    *,
    type_code: str,
    name: str,
    defining_authority_name: str,
    metadata_schema: Mapping[str, Any],
    seal_type: str,
    template: Mapping[str, Any] | None = None,
    issuing_authorities: Sequence[str] = (),
    default_valid_days: int | None = None,
    print_pdf: bool = False,
    actor: str,
) -> LicenceType:
    """Add a licence type; audited as ``licence_type.created``."""
    try:
        code = check_type_code(type_code)
    except IdentifierInvalid as exc:
        raise CatalogueInvalid(exc.message_zh, exc.message_en) from None
    name = _name(name, "证照类型名称", "the type name")
    authority = _name(defining_authority_name, "定义机构名称", "the defining authority name")
    schema = check_schema(metadata_schema)
    tpl = check_template(template if template is not None else default_template(name, schema), schema)
    registry_seal_type(seal_type)
    issuers = _issuers(issuing_authorities)
    _valid_days(default_valid_days)
    _flag(print_pdf, "print_pdf")
    if session.scalar(select(LicenceType.id).where(LicenceType.type_code == code)) is not None:
        raise Conflict(
            f"证照类型代码 {code} 已存在", f"licence type code {code} already exists", type_code=code
        )
    now = utcnow()
    row = LicenceType(
        id=str(uuid.uuid4()),
        type_code=code,
        name=name,
        defining_authority_name=authority,
        defining_authority_code=code[:18],
        issuing_authorities=canonical_json(issuers),
        metadata_schema=canonical_json(schema),
        template=canonical_json(tpl),
        seal_type=seal_type,
        default_valid_days=default_valid_days,
        print_pdf=print_pdf,
        active=True,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence_type.created",
        subject_type="licence_type",
        subject_id=code,
        details={
            "name": name,
            "seal_type": seal_type,
            "issuers": issuers,
            "default_valid_days": default_valid_days,
            "print_pdf": print_pdf,
        },
    )
    return row


_UNSET: Final[Any] = object()


def update_type(
    session: Session,
    ref: str,
    *,
    actor: str,
    name: str | None = None,
    metadata_schema: Mapping[str, Any] | None = None,
    template: Mapping[str, Any] | None = None,
    seal_type: str | None = None,
    issuing_authorities: Sequence[str] | None = None,
    default_valid_days: Any = _UNSET,
    print_pdf: bool | None = None,
    active: bool | None = None,
) -> LicenceType:
    """Change a type; licences already issued keep what they were issued with. Audited."""
    row = get_type(session, ref, for_update=True)
    changed: list[str] = []
    if name is not None:
        row.name = _name(name, "证照类型名称", "the type name")
        changed.append("name")
    schema = json.loads(row.metadata_schema)
    if metadata_schema is not None:
        schema = check_schema(metadata_schema)
        row.metadata_schema = canonical_json(schema)
        changed.append("metadata_schema")
    if template is not None or metadata_schema is not None:
        tpl = template if template is not None else json.loads(row.template)
        row.template = canonical_json(check_template(tpl, schema))
        changed.append("template")
    if seal_type is not None:
        registry_seal_type(seal_type)
        row.seal_type = seal_type
        changed.append("seal_type")
    if issuing_authorities is not None:
        row.issuing_authorities = canonical_json(_issuers(issuing_authorities))
        changed.append("issuing_authorities")
    if default_valid_days is not _UNSET:
        row.default_valid_days = _valid_days(default_valid_days)
        changed.append("default_valid_days")
    if print_pdf is not None:
        row.print_pdf = _flag(print_pdf, "print_pdf")
        changed.append("print_pdf")
    if active is not None:
        row.active = active
        changed.append("active")
    if not changed:
        return row
    row.revision += 1
    row.updated_at = utcnow()
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence_type.updated",
        subject_type="licence_type",
        subject_id=row.type_code,
        details={
            "changed": changed,
            "revision": row.revision,
            **({"print_pdf": row.print_pdf} if "print_pdf" in changed else {}),
        },
    )
    return row


def get_type(session: Session, ref: str, *, for_update: bool = False) -> LicenceType:
    """A type by id or type code."""
    stmt = select(LicenceType).where(
        (LicenceType.id == ref) if len(ref) == 36 else (LicenceType.type_code == ref.strip())
    )
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"证照类型 {ref} 不存在", f"licence type {ref} not found")
    return row


def list_types(session: Session, *, active_only: bool = False) -> list[LicenceType]:
    stmt = select(LicenceType).order_by(LicenceType.type_code)
    if active_only:
        stmt = stmt.where(LicenceType.active.is_(True))
    return list(session.scalars(stmt))


def type_schema(row: LicenceType) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row.metadata_schema)
    return value


def type_template(row: LicenceType) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row.template)
    return value


def type_issuers(row: LicenceType) -> list[str]:
    value: list[str] = json.loads(row.issuing_authorities)
    return value


@lru_cache(maxsize=128)
def _validator(schema_text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_text), format_checker=FORMATS)


def type_validator(row: LicenceType) -> Draft202012Validator:
    return _validator(row.metadata_schema)


def check_issuer(row: LicenceType, dept: Department) -> None:
    """Only a listed issuing authority may issue the type (any department when none is listed)."""
    if not row.active:
        raise Conflict(f"证照类型 {row.type_code} 已停用", f"licence type {row.type_code} is retired")
    issuers = type_issuers(row)
    if issuers and dept.uscc not in issuers:
        raise PermissionDenied(
            f"部门“{dept.name}”不是证照类型“{row.name}”的颁证机构",
            f"department '{dept.name}' is not an issuing authority of licence type '{row.name}'",
        )


def validate_for_type(row: LicenceType, data: Any, dept: Department, **kwargs: Any) -> LicenceMetadata:
    """Metadata of a licence of type ``row`` issued by ``dept`` (MetadataInvalid lists every field)."""
    return validate_metadata(
        data,
        type_validator=type_validator(row),
        type_name=row.name,
        default_area=dept.region_code,
        default_valid_days=row.default_valid_days,
        **kwargs,
    )


__all__ = [
    "A4",
    "DEFAULT_SEAL_BOX",
    "CatalogueInvalid",
    "check_issuer",
    "check_schema",
    "check_template",
    "create_type",
    "default_template",
    "get_type",
    "list_types",
    "metadata_invalid",
    "type_issuers",
    "type_schema",
    "type_template",
    "type_validator",
    "update_type",
    "validate_for_type",
]
