"""Metadata validation (core set + the type's JSON Schema) with field-level errors, catalogue checks,
name masking, and the renderer's determinism. No database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.errors import InputTooLarge
from licence_store.catalogue import CatalogueInvalid, check_schema, check_template, default_template
from licence_store.metadata import FORMATS, MetadataInvalid, citizen_id_ok, mask_name, validate_metadata
from licence_store.rendering import LicenceView, render_licence, wrap

from .conftest import HOLDER_USCC, SCHEMA, metadata

VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FORMATS)
TODAY = dt.date(2024, 5, 1)


def _validate(data: Any, days: int | None = 3650) -> Any:
    return validate_metadata(
        data,
        type_validator=VALIDATOR,
        type_name="营业执照",
        default_area="110000",
        default_valid_days=days,
        today=TODAY,
    )


def _errors(data: Any) -> dict[str, str]:
    with pytest.raises(MetadataInvalid) as caught:
        _validate(data)
    assert caught.value.status == 400 and caught.value.code == "licence_metadata_invalid"
    errors = caught.value.details["errors"]
    assert all(e["message_zh"] and e["message_en"] for e in errors)
    return {e["field"]: e["keyword"] for e in errors}


def test_defaults_are_applied() -> None:
    meta = _validate(metadata())
    assert meta.name == "营业执照" and meta.area_code == "110000"
    assert meta.issue_date == meta.valid_from == TODAY
    assert meta.valid_until == TODAY + dt.timedelta(days=3650)
    assert _validate(metadata(), days=None).valid_until is None
    assert _validate(metadata(valid_until=None)).valid_until is None  # explicit long-term
    again = _validate(meta.to_input())
    assert again == meta


def test_every_field_error_is_reported_at_once() -> None:
    data = metadata(
        holder_code_type="passport_number",
        issue_date="2024-02-30",
        valid_from="2024/01/01",
        area_code="11000",
        unexpected="x",
    )
    del data["holder_name"]
    data["fields"] = {"registered_capital": "一百", "established": "20200102", "extra": 1}
    assert _errors(data) == {
        "holder_name": "required",
        "holder_code_type": "enum",
        "issue_date": "format",
        "valid_from": "format",
        "area_code": "format",
        "unexpected": "additionalProperties",
        "fields.company_type": "required",
        "fields.registered_capital": "type",
        "fields.established": "format",
        "fields.extra": "additionalProperties",
    }


def test_field_messages_are_bilingual_and_precise() -> None:
    data = metadata()
    data["fields"]["registered_capital"] = -5
    with pytest.raises(MetadataInvalid) as caught:
        _validate(data)
    (error,) = caught.value.details["errors"]
    assert error["field"] == "fields.registered_capital" and error["keyword"] == "minimum"
    assert error["message_zh"] == "不能小于 0" and "minimum" in error["message_en"]
    assert "fields.registered_capital" in caught.value.message_en


def test_holder_codes_are_checked_against_their_kind() -> None:
    bad_uscc = HOLDER_USCC[:-1] + ("0" if HOLDER_USCC[-1] != "0" else "1")
    assert _errors(metadata(holder_code=bad_uscc)) == {"holder_code": "format"}
    assert _validate(metadata(holder_code="11010519491231002X", holder_code_type="citizen_id"))
    assert _errors(metadata(holder_code="110105194912310021", holder_code_type="citizen_id")) == {
        "holder_code": "format"
    }
    assert _errors(metadata(holder_code="110105194902300028", holder_code_type="citizen_id")) == {
        "holder_code": "format"
    }  # 30 February
    assert (
        _validate(metadata(holder_code="E12345678", holder_code_type="passport")).holder_code == "E12345678"
    )
    assert _errors(metadata(holder_code="bad code!", holder_code_type="other")) == {"holder_code": "pattern"}


def test_citizen_id_check_digit() -> None:
    # GB 11643 example number and its X check character.
    assert citizen_id_ok("11010519491231002X")
    assert not citizen_id_ok("11010519491231002x")
    assert not citizen_id_ok("1101051949123100")


def test_dates_order_and_shape() -> None:
    assert _errors(metadata(valid_from="2024-06-01", valid_until="2024-05-01")) == {"valid_until": "minimum"}
    assert _errors(metadata(licence_number="")) == {"licence_number": "minLength"}
    assert _errors(metadata(holder_name="名\x07称")) == {"holder_name": "pattern"}
    assert _errors("not an object") == {"$": "type"}
    assert _errors(metadata(fields=[1, 2])) == {"fields": "type"}


def test_mask_name() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张*丰"
    assert mask_name("欧阳娜娜") == "欧**娜"
    assert mask_name("北京测试科技有限公司") == "北京******公司"
    assert mask_name("某") == "*"
    assert "测试科技" not in mask_name("北京测试科技有限公司")


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "array"}, "object"),
        ({"type": "object", "properties": {"A": {"type": "string"}}}, "[a-z]"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "JSON Schema"),
        ({"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}}, "local"),
        ("{}", "object"),
    ],
)
def test_bad_schemas_are_refused(schema: Any, fragment: str) -> None:
    with pytest.raises(CatalogueInvalid) as caught:
        check_schema(schema)
    assert fragment in caught.value.message_en


def test_oversized_schema_is_refused() -> None:
    big = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string", "title": "x" * 100} for i in range(1000)},
    }
    with pytest.raises(InputTooLarge):
        check_schema(big)


def test_templates() -> None:
    tpl = default_template("营业执照", SCHEMA)
    assert [f["key"] for f in tpl["fields"]] == list(SCHEMA["properties"])
    assert check_template(tpl, SCHEMA) == tpl
    with pytest.raises(CatalogueInvalid) as caught:
        check_template({"fields": [{"key": "nope"}], "page": {"width": 10, "height": 10}}, SCHEMA)
    assert {e["field"] for e in caught.value.details["errors"]} == {
        "template.page.width",
        "template.page.height",
    }
    with pytest.raises(CatalogueInvalid) as caught:
        check_template({"fields": [{"key": "nope"}]}, SCHEMA)
    assert caught.value.details["errors"][0]["field"] == "template.fields.0.key"


def _view(**changes: Any) -> LicenceView:
    args: dict[str, Any] = {
        "identifier": "1.2.156.3005.2.X",
        "title": "营业执照",
        "subtitle": None,
        "rows": [("名称", "测试"), ("经营范围", "软件开发。" * 300)],
        "issuer_name": "测试局",
        "issue_date": dt.date(2024, 5, 1),
        "verify_url": "https://x.test/v1/licences/check?id=1",
        "doc_id": "0" * 32,
    }
    args.update(changes)
    return LicenceView(**args)


def test_rendering_is_deterministic_and_flows_onto_more_pages() -> None:
    when = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
    first = render_licence(_view(), when=when)
    assert render_licence(_view(), when=when) == first
    assert render_licence(_view(issuer_name="另一局"), when=when) != first
    from .conftest import zip_entries

    entries = zip_entries(first)
    assert "Doc_0/Pages/Page_1/Content.xml" in entries  # 1500 characters do not fit on one page
    assert "Doc_0/Res/qr.png" in entries
    assert wrap("", 4.0, 10.0) == [""]
    assert wrap("abcd", 4.0, 4.0) == ["ab", "cd"]
