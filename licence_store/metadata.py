"""Licence metadata: the GB/T 36903 core set plus the type's own fields, validated with JSON Schema.

What a caller supplies (``issue``, ``change``, stock import rows)::

    licence_number    证照编号          required
    name              证照名称          default: the type's name
    holder_name       持证主体          required
    holder_code       持证主体代码      required; checked against its type
    holder_code_type  持证主体代码类型  uscc | citizen_id | passport | other
    issue_date        颁证日期          default: today (China Standard Time)
    valid_from        有效期起始        default: the issue date
    valid_until       有效期截止        default: from the type's default validity; null: long-term
    area_code         行政区划代码      default: the issuing department's region
    service_item      关联事项          optional
    fields            the type's own fields, validated against the type's JSON Schema

The service adds the rest of the core set: identifier, type code and name, issuing authority name
and code, status, version and the previous version's identifier.

Every problem is reported at once as :class:`MetadataInvalid` with one entry per field
(``field`` is a dotted path such as ``fields.registered_capital``), bilingual messages and the JSON
Schema keyword that failed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from core.errors import InvalidInput
from seal_registry.uscc import check_character as uscc_check_character

CHINA_TZ: Final = dt.timezone(dt.timedelta(hours=8), "CST")
MAX_ERRORS: Final = 100

HOLDER_CODE_TYPES: Final = {
    "uscc": ("统一社会信用代码", "unified social credit code"),
    "citizen_id": ("居民身份证号码", "citizen ID number"),
    "passport": ("护照号码", "passport number"),
    "other": ("其他证件号码", "other identity document number"),
}

_AREA = re.compile(r"\d{6}(\d{3}(\d{3})?)?")
_USCC_CHARSET: Final = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


class MetadataInvalid(InvalidInput):
    """Metadata that fails the core set or the type's schema; ``details["errors"]`` lists every field."""

    code = "licence_metadata_invalid"
    title_zh, title_en = "证照元数据无效", "Invalid licence metadata"


@dataclass(frozen=True)
class FieldError:
    field: str
    keyword: str
    message_zh: str
    message_en: str

    def to_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "keyword": self.keyword,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
        }


def metadata_invalid(errors: Iterable[FieldError]) -> MetadataInvalid:
    items = list(errors)[:MAX_ERRORS]
    names = "、".join(dict.fromkeys(e.field for e in items))
    return MetadataInvalid(
        f"证照元数据有 {len(items)} 处错误：{names}",
        f"licence metadata has {len(items)} error(s): {', '.join(dict.fromkeys(e.field for e in items))}",
        errors=[e.to_dict() for e in items],
    )


# --- identity codes -------------------------------------------------------------------------------------
def uscc_ok(code: str) -> bool:
    return (
        len(code) == 18
        and all(c in _USCC_CHARSET for c in code)
        and uscc_check_character(code[:17]) == code[17]
    )


def citizen_id_ok(code: str) -> bool:
    """GB 11643: 17 digits and an ISO 7064 MOD 11-2 check character (0-9 or X), with a real birth date."""
    if len(code) != 18 or not code[:17].isdigit() or not code.isascii():
        return False
    try:
        dt.date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        return False
    total = sum(int(c) * w for c, w in zip(code[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == code[17]


def area_code_ok(code: str) -> bool:
    return _AREA.fullmatch(code) is not None


FORMATS: Final = FormatChecker()


@FORMATS.checks("uscc")
def _format_uscc(instance: object) -> bool:
    return not isinstance(instance, str) or uscc_ok(instance)


@FORMATS.checks("citizen-id")
def _format_citizen_id(instance: object) -> bool:
    return not isinstance(instance, str) or citizen_id_ok(instance)


@FORMATS.checks("area-code")
def _format_area(instance: object) -> bool:
    return not isinstance(instance, str) or area_code_ok(instance)


# --- the core set ---------------------------------------------------------------------------------------
_TEXT: Final = {"type": "string", "minLength": 1, "pattern": r"^[^\x00-\x1f\x7f]*$"}

CORE_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["licence_number", "holder_name", "holder_code", "holder_code_type"],
    "properties": {
        "licence_number": {**_TEXT, "maxLength": 100, "title": "证照编号"},
        "name": {**_TEXT, "maxLength": 200, "title": "证照名称"},
        "holder_name": {**_TEXT, "maxLength": 200, "title": "持证主体"},
        "holder_code": {"type": "string", "pattern": r"^[0-9A-Za-z\-]{1,64}$", "title": "持证主体代码"},
        "holder_code_type": {"enum": list(HOLDER_CODE_TYPES), "title": "持证主体代码类型"},
        "issue_date": {"type": "string", "format": "date", "title": "颁证日期"},
        "valid_from": {"type": "string", "format": "date", "title": "有效期起始"},
        "valid_until": {"type": ["string", "null"], "format": "date", "title": "有效期截止"},
        "area_code": {"type": "string", "format": "area-code", "title": "行政区划代码"},
        "service_item": {**_TEXT, "maxLength": 200, "title": "关联事项"},
        "fields": {"type": "object", "title": "证照专有信息"},
    },
    "additionalProperties": False,
}
CORE_FIELDS: Final = tuple(CORE_SCHEMA["properties"])
_CORE_VALIDATOR: Final = Draft202012Validator(CORE_SCHEMA, format_checker=FORMATS)


@dataclass(frozen=True)
class LicenceMetadata:
    """Validated metadata, defaults applied."""

    licence_number: str
    name: str
    holder_name: str
    holder_code: str
    holder_code_type: str
    issue_date: dt.date
    valid_from: dt.date
    valid_until: dt.date | None
    area_code: str
    service_item: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_input(self) -> dict[str, Any]:
        """The caller-side form (what :func:`validate_metadata` accepts)."""
        out: dict[str, Any] = {
            "licence_number": self.licence_number,
            "name": self.name,
            "holder_name": self.holder_name,
            "holder_code": self.holder_code,
            "holder_code_type": self.holder_code_type,
            "issue_date": self.issue_date.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "area_code": self.area_code,
            "fields": dict(self.fields),
        }
        if self.service_item is not None:
            out["service_item"] = self.service_item
        return out


def today_in_china(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(CHINA_TZ).date()


def _path(prefix: str, parts: Iterable[Any]) -> str:
    items = [str(p) for p in parts]
    return ".".join([prefix, *items]) if prefix else ".".join(items) or "$"


def _describe(error: ValidationError, prefix: str, titles: Mapping[str, str]) -> list[FieldError]:
    """Bilingual field-level errors for one jsonschema error (``required`` names each missing field)."""
    keyword = str(error.validator)
    at = _path(prefix, error.absolute_path)
    if keyword == "required" and isinstance(error.instance, dict):
        required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
        missing = [n for n in required if n not in error.instance]
        return [
            FieldError(
                _path(prefix, [*error.absolute_path, n]),
                "required",
                f"缺少必填字段“{titles.get(n, n)}”",
                f"missing required field {n!r}",
            )
            for n in missing
        ]
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known = set(schema.get("properties", {}))
        extra = [n for n in error.instance if n not in known]
        return [
            FieldError(
                _path(prefix, [*error.absolute_path, n]), keyword, "不允许的字段", f"unknown field {n!r}"
            )
            for n in extra
        ] or [FieldError(at, keyword, "含不允许的字段", error.message)]
    value = error.validator_value
    zh = {
        "type": f"类型错误，应为 {value}",
        "format": f"格式错误，应为 {value}",
        "pattern": "格式不符合要求",
        "enum": f"取值须为 {value} 之一",
        "const": f"取值须为 {value}",
        "minLength": f"长度不能少于 {value}",
        "maxLength": f"长度不能超过 {value}",
        "minimum": f"不能小于 {value}",
        "maximum": f"不能大于 {value}",
        "exclusiveMinimum": f"须大于 {value}",
        "exclusiveMaximum": f"须小于 {value}",
        "multipleOf": f"须为 {value} 的倍数",
        "minItems": f"至少 {value} 项",
        "maxItems": f"至多 {value} 项",
    }.get(keyword, "不符合要求")
    en = error.message if len(error.message) <= 300 else error.message[:300] + "…"
    return [FieldError(at, keyword, zh, en)]


def schema_errors(
    validator: Draft202012Validator,
    instance: Any,
    *,
    prefix: str = "",
    titles: Mapping[str, str] | None = None,
) -> list[FieldError]:
    out: list[FieldError] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        out.extend(_describe(error, prefix, titles or {}))
        if len(out) >= MAX_ERRORS:
            break
    return out


def _titles(schema: Mapping[str, Any]) -> dict[str, str]:
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    return {k: str(v.get("title", k)) for k, v in props.items() if isinstance(v, Mapping)}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None


def validate_metadata(
    data: Any,
    *,
    type_validator: Draft202012Validator,
    type_name: str,
    default_area: str,
    default_valid_days: int | None,
    today: dt.date | None = None,
) -> LicenceMetadata:
    """Check ``data`` against the core set and the type's schema; every error is reported at once."""
    if not isinstance(data, Mapping):
        raise metadata_invalid(
            [FieldError("$", "type", "元数据须为 JSON 对象", "metadata must be a JSON object")]
        )
    errors = schema_errors(_CORE_VALIDATOR, data, titles=_titles(CORE_SCHEMA))
    own = data.get("fields", {})
    if isinstance(own, Mapping):
        errors.extend(
            schema_errors(
                type_validator, own, prefix="fields", titles=_titles(_mapping(type_validator.schema))
            )
        )
    bad = {e.field for e in errors}
    code = data.get("holder_code")
    kind = data.get("holder_code_type")
    if isinstance(code, str) and "holder_code" not in bad:
        if kind == "uscc" and not uscc_ok(code.upper()):
            errors.append(
                FieldError(
                    "holder_code",
                    "format",
                    "统一社会信用代码格式或校验位错误",
                    "not a valid unified social credit code (format or check character)",
                )
            )
        elif kind == "citizen_id" and not citizen_id_ok(code.upper()):
            errors.append(
                FieldError(
                    "holder_code",
                    "format",
                    "居民身份证号码格式、出生日期或校验码错误",
                    "not a valid citizen ID number (format, birth date or check character)",
                )
            )
    issue = _date(data.get("issue_date")) if "issue_date" not in bad else None
    issue = issue or today or today_in_china()
    start = _date(data.get("valid_from")) if "valid_from" not in bad else None
    start = start or issue
    until: dt.date | None
    if "valid_until" in data:
        until = _date(data.get("valid_until")) if "valid_until" not in bad else None
    else:
        until = None if default_valid_days is None else start + dt.timedelta(days=default_valid_days)
    if until is not None and until < start and "valid_until" not in bad:
        errors.append(
            FieldError(
                "valid_until", "minimum", "有效期截止日期早于起始日期", "validity ends before it starts"
            )
        )
    if errors:
        raise metadata_invalid(errors)
    return LicenceMetadata(
        licence_number=str(data["licence_number"]).strip(),
        name=str(data.get("name") or type_name).strip(),
        holder_name=str(data["holder_name"]).strip(),
        holder_code=str(data["holder_code"]).upper()
        if kind in ("uscc", "citizen_id")
        else str(data["holder_code"]),
        holder_code_type=str(kind),
        issue_date=issue,
        valid_from=start,
        valid_until=until,
        area_code=str(data.get("area_code") or default_area),
        service_item=str(data["service_item"]).strip() if data.get("service_item") else None,
        fields=dict(own) if isinstance(own, Mapping) else {},
    )


def mask_name(name: str) -> str:
    """A holder's name for the public: persons keep the first (and for 3+ characters the last)
    character, organisations the first two and the last two, everything between is ``*``."""
    name = name.strip()
    n = len(name)
    if n <= 1:
        return "*"
    if n == 2:
        return name[0] + "*"
    if n <= 4:
        return name[0] + "*" * (n - 2) + name[-1]
    return name[:2] + "*" * min(n - 4, 8) + name[-2:]


__all__ = [
    "CHINA_TZ",
    "CORE_FIELDS",
    "CORE_SCHEMA",
    "FORMATS",
    "HOLDER_CODE_TYPES",
    "FieldError",
    "LicenceMetadata",
    "MetadataInvalid",
    "area_code_ok",
    "citizen_id_ok",
    "mask_name",
    "metadata_invalid",
    "schema_errors",
    "today_in_china",
    "uscc_ok",
    "validate_metadata",
]
