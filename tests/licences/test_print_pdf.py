"""同步生成、同步签章: a licence type with ``print_pdf`` gets, with every version, a print-ready PDF of
the same content sealed with the same seal in the same transaction as the OFD. The PDF verifies
PASSED with eseal's verifier, its text (read back by poppler's pdftotext) and QR code (decoded by
ZXing from poppler's rendering) are the licence's; a failure to seal it leaves nothing issued."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from sqlalchemy import inspect, select, text

from core.audit import AuditEntry, history
from core.db import transaction
from core.errors import ConfigurationError, InvalidInput, NotUsable
from licence_store import issuing, lifecycle
from licence_store.access_log import Accessor
from licence_store.catalogue import create_type, get_type, update_type
from licence_store.grants import GrantRefused
from licence_store.identifier import parse_identifier
from licence_store.issuing import PdfNotAvailable, issue_licence, licence_pdf
from licence_store.models import Licence, LicenceAccess
from licence_store.print_rendering import print_font, render_licence_pdf
from licence_store.rendering import LicenceView
from licence_store.sharing import use_licence
from licence_store.verification import check_licence
from seal_registry import seals
from signer import pdf_sealing
from tests.conftest import require_or_skip
from tests.registry.conftest import uscc
from verify import verify_bytes

from .conftest import (
    BASE_URL,
    HOLDER_USCC,
    SCHEMA,
    SIGNER,
    TYPE_CODE,
    Store,
    assert_passed,
    decode_qr,
    metadata,
)
from .test_api import Api, _ok, _problem, api  # noqa: F401 - the api fixture
from .test_cli import Local, _identifier, _json, local, run  # noqa: F401 - the local fixture
from .test_sharing import _grant, _platform

HOLDER_NAME = "北京测试科技有限公司"
MM = 72 / 25.4


def _print_pdf_on(store: Store, on: bool = True) -> None:
    with transaction(store.sessions) as s:
        update_type(s, TYPE_CODE, actor="admin:t", print_pdf=on)


def _tool(name: str) -> str:
    path = shutil.which(name)
    require_or_skip(path is not None, f"{name} (Debian package poppler-utils) is needed")
    assert path is not None
    return path


def pdf_text(data: bytes, tmp_path: Path) -> str:
    """The PDF's text as poppler reads it (an independent reader: the embedded font's ToUnicode)."""
    path = tmp_path / "licence.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", str(path), "-"], capture_output=True, timeout=60, check=True
    )
    return done.stdout.decode("utf-8")


def pdf_page_png(data: bytes, tmp_path: Path, dpi: int = 200) -> bytes:
    path = tmp_path / "page.pdf"
    path.write_bytes(data)
    prefix = tmp_path / "page"
    subprocess.run(
        [
            _tool("pdftoppm"),
            "-png",
            "-r",
            str(dpi),
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(path),
            str(prefix),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return prefix.with_suffix(".png").read_bytes()


def _seal_rect_mm(data: bytes) -> tuple[float, float]:
    """Top-left corner (mm from the page's top-left) of the one signature field's widget."""
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    found = list(enumerate_sig_fields(reader, filled_status=True))
    assert len(found) == 1
    _name, _value, field = found[0]
    rect = [float(v) for v in field.get_object()["/Rect"]]
    height = float(reader.root["/Pages"]["/Kids"][0].get_object()["/MediaBox"][3])
    return rect[0] / MM, (height - rect[3]) / MM


def test_issue_makes_both_files_and_the_pdf_verifies_and_reads_back(store: Store, tmp_path: Path) -> None:
    _print_pdf_on(store)
    row = store.issue()
    assert row.pdf_sm3 is not None and row.pdf_size is not None
    pdf = licence_pdf(store.services, row)
    assert len(pdf) == row.pdf_size and store.blobs.path(row.pdf_sm3).name == row.pdf_sm3
    assert pdf.startswith(b"%PDF-") and row.pdf_sm3 != row.ofd_sm3

    # Both files verify PASSED with the region's trust; the PDF signature is SM2 (GB/T 35275).
    assert_passed(store.file(row), store.trust)
    assert_passed(pdf, store.trust)
    report = verify_bytes(pdf, trust=store.trust)
    assert report.format == "pdf" and len(report.signatures) == 1
    assert "gbt35275" in report.signatures[0].check("format.parse").message_en

    # The same content as the OFD: read back by an independent reader.
    text = pdf_text(pdf, tmp_path)
    for expected in (
        "营业执照",
        HOLDER_NAME,
        HOLDER_USCC,
        "注册资本（万元）",
        "有限责任公司",
        row.identifier,
        row.licence_number,
        f"颁证机构：{store.department.name}",
        "扫码在线核验",
    ):
        assert expected in text, (expected, text)
    # The QR code on the printed page leads to the same online check as the OFD's.
    payload = decode_qr(pdf_page_png(pdf, tmp_path))
    assert payload == f"{BASE_URL}/v1/licences/check?id={row.identifier}"
    # The seal sits where the OFD's does (the type's seal box, default 130, 222 mm).
    x, y = _seal_rect_mm(pdf)
    assert abs(x - 130.0) < 0.6 and abs(y - 222.0) < 0.6

    # One transaction: the OFD signature, the PDF signature, then the licence.
    with store.sessions() as s:
        last = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(3)))
        assert [e.action for e in last] == ["licence.issued", "signature.made", "signature.made"]
        issued, pdf_sig, ofd_sig = (e.details_dict() for e in last)
        assert issued["file_sm3"] == row.ofd_sm3 and issued["pdf_sm3"] == row.pdf_sm3
        assert pdf_sig["format"] == "pdf" and pdf_sig["key_kind"] == "sm2"
        assert pdf_sig["sealed_sm3"] == row.pdf_sm3 and pdf_sig["es_id"] == store.seal.es_id
        assert (ofd_sig["format"], ofd_sig["es_id"]) == ("ofd", store.seal.es_id)

    # The online check accepts either sealed file as "the licence's file".
    with transaction(store.sessions) as s:
        _, by_pdf = check_licence(s, row.identifier, presented=pdf)
        _, by_ofd = check_licence(s, row.identifier, presented=store.file(row))
        _, forged = check_licence(s, row.identifier, presented=pdf[:-1] + bytes([pdf[-1] ^ 1]))
    assert (by_pdf["file_matches"], by_pdf["matched_file"], by_pdf["pdf_sm3"]) == (True, "pdf", row.pdf_sm3)
    assert (by_ofd["file_matches"], by_ofd["matched_file"]) == (True, "ofd")
    assert (forged["file_matches"], forged["matched_file"]) == (False, None)


def test_pdf_rendering_is_deterministic_and_follows_the_view() -> None:
    view = LicenceView(
        identifier="1.2.156.3005.2.X",
        title="营业执照",
        subtitle=None,
        rows=[("名称", "测试 ABC"), ("经营范围", "软件开发。" * 300)],
        issuer_name="测试局",
        issue_date=dt.date(2024, 5, 1),
        verify_url="https://x.test/v1/licences/check?id=1",
        doc_id="0" * 32,
    )
    when = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
    first = render_licence_pdf(view, when=when)
    assert render_licence_pdf(view, when=when) == first
    assert b"D:20240501080000+00'00'" in first
    other = LicenceView(**{**view.__dict__, "issuer_name": "另一局"})
    assert render_licence_pdf(other, when=when) != first
    reader = PdfFileReader(io.BytesIO(first), strict=False)
    assert int(reader.root["/Pages"]["/Count"]) == 2  # 1500 characters flow onto a second page, as in OFD


def test_change_and_renewal_reissue_both_files(store: Store, tmp_path: Path) -> None:
    plain = store.issue(1)  # issued before the type asked for a PDF
    assert plain.pdf_sm3 is None
    _print_pdf_on(store)
    with transaction(store.sessions) as s:
        changed = lifecycle.change(
            s, store.services, plain.identifier, {"holder_name": "北京改名科技有限公司"}, actor=SIGNER
        )
    assert changed.pdf_sm3 is not None and parse_identifier(changed.identifier).version == 2
    pdf = licence_pdf(store.services, changed)
    assert_passed(pdf, store.trust)
    text = pdf_text(pdf, tmp_path)
    assert "北京改名科技有限公司" in text and changed.identifier in text and HOLDER_NAME not in text

    with transaction(store.sessions) as s:
        renewed = lifecycle.renew(
            s,
            store.services,
            changed.identifier,
            valid_until=dt.date.today() + dt.timedelta(days=7300),
            actor=SIGNER,
        )
    assert renewed.pdf_sm3 not in (None, changed.pdf_sm3) and renewed.ofd_sm3 != changed.ofd_sm3
    renewed_pdf = licence_pdf(store.services, renewed)
    assert_passed(renewed_pdf, store.trust)
    assert renewed.identifier in pdf_text(renewed_pdf, tmp_path)
    # Superseded versions keep the files they were sealed with.
    assert licence_pdf(store.services, changed) == pdf
    with pytest.raises(PdfNotAvailable):
        licence_pdf(store.services, plain)
    with store.sessions() as s:
        entries = history(s, "licence", plain.base_identifier)
        assert [e.action for e in entries] == ["licence.issued", "licence.changed", "licence.renewed"]
        assert "pdf_sm3" not in entries[0].details_dict()
        assert entries[1].details_dict()["pdf_sm3"] == changed.pdf_sm3
        assert entries[2].details_dict()["pdf_sm3"] == renewed.pdf_sm3
        pdf_signatures = [
            e
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "signature.made"))
            if e.details_dict().get("format") == "pdf"
        ]
    assert len(pdf_signatures) == 2


def test_a_type_without_the_flag_has_no_pdf(store: Store) -> None:
    with store.sessions() as s:
        assert get_type(s, TYPE_CODE).print_pdf is False  # the default
    row = store.issue()
    assert (row.pdf_sm3, row.pdf_size) == (None, None)
    with store.sessions() as s:
        last = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(2)))
    assert [e.action for e in last] == ["licence.issued", "signature.made"]
    assert "pdf_sm3" not in last[0].details_dict()
    before = store.snapshot()
    with pytest.raises(PdfNotAvailable) as caught:
        use_licence(
            store.sessions,
            store.services,
            identifier=row.identifier,
            who=Accessor("auditor:t"),
            privileged=True,
            want_original=True,
            pdf=True,
        )
    assert caught.value.status == 404 and caught.value.code == "licence_pdf_not_available"
    assert store.snapshot() == before  # nothing delivered, nothing logged
    with pytest.raises(InvalidInput, match="OFD"):  # annotated copies are OFD only
        use_licence(
            store.sessions,
            store.services,
            identifier=row.identifier,
            who=Accessor("auditor:t"),
            privileged=True,
            purpose="核查",
            pdf=True,
        )
    with pytest.raises(InvalidInput, match="print_pdf"), transaction(store.sessions) as s:
        update_type(s, TYPE_CODE, actor="admin:t", print_pdf=1)  # type: ignore[arg-type]


def test_a_grantee_fetches_the_pdf_like_the_original(store: Store) -> None:
    _print_pdf_on(store)
    row = store.issue()
    copy_only = _grant(store, row.identifier)
    with pytest.raises(GrantRefused) as caught:
        use_licence(
            store.sessions,
            store.services,
            identifier=row.identifier,
            who=_platform(store),
            grant_id=copy_only.id,
            want_original=True,
            pdf=True,
        )
    assert caught.value.details["reason"] == "original_not_granted"
    original = _grant(store, row.identifier, original=True)
    delivered = use_licence(
        store.sessions,
        store.services,
        identifier=row.identifier,
        who=_platform(store),
        grant_id=original.id,
        want_original=True,
        pdf=True,
    )
    assert delivered.data == licence_pdf(store.services, row)
    assert (delivered.file_format, delivered.file_name) == ("pdf", f"{row.identifier}.pdf")
    assert delivered.grant_id == original.id
    with store.sessions() as s:
        log = list(s.scalars(select(LicenceAccess).order_by(LicenceAccess.id)))
        assert [(e.action, e.outcome) for e in log[-2:]] == [("denied", "denied"), ("download", "allowed")]
        audit = s.get(AuditEntry, log[-1].audit_seq)
        assert audit is not None and audit.action == "licence.downloaded"
        details = audit.details_dict()
    assert details["format"] == "pdf" and details["file_sm3"] == row.pdf_sm3
    assert details["grant_id"] == original.id


def _issue(store: Store, n: int = 2, **kwargs: Any) -> Licence:
    with transaction(store.sessions) as s:
        return issue_licence(
            s,
            store.services,
            type_ref=kwargs.pop("type_ref", TYPE_CODE),
            department_id=store.department.id,
            metadata=metadata(n),
            actor=SIGNER,
            **kwargs,
        )


def test_a_seal_suspended_before_the_pdf_is_sealed_leaves_nothing_issued(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _print_pdf_on(store)
    first = store.issue(1)
    before = store.snapshot()
    real = pdf_sealing.seal_pdf
    calls: list[str] = []

    def suspend_then_seal(session: Any, *args: Any, **kwargs: Any) -> bytes:
        # The OFD is sealed by now; the seal is suspended before the PDF's turn (in this transaction,
        # as a concurrent suspension that won the seal row's lock would look).
        calls.append(kwargs["es_id"])
        seals.suspend(session, store.seal.id, actor="seal_officer:t", reason="遗失")
        return real(session, *args, **kwargs)

    monkeypatch.setattr(issuing, "seal_pdf", suspend_then_seal)
    with pytest.raises(NotUsable):
        _issue(store)
    assert calls == [store.seal.es_id]
    assert store.snapshot() == before  # no row, no serial, no audit entry, no blob
    monkeypatch.undo()
    again = _issue(store)
    assert parse_identifier(again.identifier).serial[-8:] == "00000002"
    assert again.pdf_sm3 is not None and first.pdf_sm3 is not None


def test_a_pdf_that_cannot_be_sealed_leaves_nothing_issued(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seal box fits the OFD (its anchor is on the page) but the PDF stamp and its caption do not.
    with transaction(store.sessions) as s:
        create_type(
            s,
            type_code=uscc(902) + "003",
            name="低位印章证照",
            defining_authority_name="国家市场监督管理总局",
            metadata_schema=SCHEMA,
            template={"title": "低位印章证照", "seal": {"x": 130, "y": 280}},
            seal_type="official",
            print_pdf=True,
            actor="admin:t",
        )
    before = store.snapshot()
    with pytest.raises(InvalidInput, match="does not fit"):
        _issue(store, type_ref=uscc(902) + "003")
    assert store.snapshot() == before

    # A crash while sealing the PDF (after the OFD was sealed): the same.
    _print_pdf_on(store)
    before = store.snapshot()

    def crash(*_args: Any, **_kwargs: Any) -> bytes:
        raise RuntimeError("power cut")

    monkeypatch.setattr(issuing, "seal_pdf", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        _issue(store)
    assert store.snapshot() == before
    with store.sessions() as s:
        assert s.scalar(select(Licence.id)) is None


def test_the_flag_is_in_the_catalogue_and_audited(store: Store) -> None:
    with transaction(store.sessions) as s:
        row = update_type(s, TYPE_CODE, actor="admin:t", print_pdf=True)
        assert row.print_pdf is True and row.revision == 2
    with store.sessions() as s:
        entries = history(s, "licence_type", TYPE_CODE)
        assert [e.action for e in entries] == ["licence_type.created", "licence_type.updated"]
        assert entries[0].details_dict()["print_pdf"] is False
        assert entries[1].details_dict() == {"changed": ["print_pdf"], "revision": 2, "print_pdf": True}


# --- over HTTP and from the command line -----------------------------------------------------------------
def test_print_pdf_over_http(api: Api, tmp_path: Path) -> None:  # noqa: F811 - the api fixture
    with api.client("admin") as c:
        assert _ok(c.get(f"/v1/licence-types/{TYPE_CODE}"))["print_pdf"] is False
        assert _ok(c.patch(f"/v1/licence-types/{TYPE_CODE}", json={"print_pdf": True}))["print_pdf"] is True
    issued = _issue_http(api)
    ident = issued["identifier"]
    assert issued["pdf_sm3"] and issued["pdf_download_url"] == f"{api.url}/v1/licences/{ident}/pdf"
    with api.client("issuer") as c:
        r = c.get(f"/v1/licences/{ident}/pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert "licence.pdf" in r.headers["content-disposition"] and r.headers["x-licence-identifier"] == ident
    pdf = r.content
    assert_passed(pdf, api.trust)
    assert HOLDER_NAME in pdf_text(pdf, tmp_path)
    with api.client("holder") as c:
        assert c.get(f"/v1/licences/{ident}/pdf").content == pdf
    with api.client("platform") as c:  # no grant: refused like the OFD original, and logged
        _problem(c.get(f"/v1/licences/{ident}/pdf"), 403, "licence_grant_required")
    with api.client() as c:
        _problem(c.get(f"/v1/licences/{ident}/pdf"), 401, "unauthenticated")
        match = _ok(c.post("/v1/licences/check", params={"id": ident}, content=pdf))
    assert (match["file_matches"], match["matched_file"], match["pdf_sm3"]) == (
        True,
        "pdf",
        issued["pdf_sm3"],
    )
    with api.client("auditor") as c:
        log = _ok(c.get("/v1/licence-access", params={"identifier": ident}))
    assert [e["action"] for e in log["items"]] == ["verify", "denied", "download", "download"]

    with api.client("issuer") as c:  # a change seals both files anew
        changed = _ok(
            c.post(f"/v1/licences/{ident}/change", json={"changes": {"holder_name": "北京改名科技有限公司"}})
        )
        assert changed["pdf_sm3"] not in (None, issued["pdf_sm3"])
        new_pdf = c.get(f"/v1/licences/{changed['identifier']}/pdf").content
    assert_passed(new_pdf, api.trust)
    assert "北京改名科技有限公司" in pdf_text(new_pdf, tmp_path)

    with api.client("admin") as c:
        _ok(c.patch(f"/v1/licence-types/{TYPE_CODE}", json={"print_pdf": False}))
    plain = _issue_http(api, 2)
    assert plain["pdf_sm3"] is None and plain["pdf_download_url"] is None
    with api.client("issuer") as c:
        _problem(c.get(f"/v1/licences/{plain['identifier']}/pdf"), 404, "licence_pdf_not_available")
        assert c.get(f"/v1/licences/{plain['identifier']}/file").status_code == 200


def _issue_http(api: Api, n: int = 1) -> dict[str, Any]:  # noqa: F811 - the api fixture
    with api.client("issuer") as c:
        body: dict[str, Any] = _ok(
            c.post("/v1/licences", json={"type": TYPE_CODE, "metadata": metadata(n)}), 201
        )
        return body


def test_print_pdf_commands(local: Local, tmp_path: Path) -> None:  # noqa: F811 - the local fixture
    spec = {
        "type_code": TYPE_CODE,
        "name": "营业执照",
        "defining_authority_name": "国家市场监督管理总局",
        "metadata_schema": SCHEMA,
        "seal_type": "official",
        "print_pdf": True,
    }
    code, _out, err = run("licence", "type-add", _json(tmp_path / "type.json", spec))
    assert code == 0, err
    ofd, pdf = tmp_path / "licence.ofd", tmp_path / "licence.pdf"
    code, out, err = run(
        "licence", "issue", "--type", TYPE_CODE, "--department", local.department_id,
        "--metadata", _json(tmp_path / "m.json", metadata(1)), "-o", str(ofd), "--pdf-output", str(pdf),
    )  # fmt: skip
    assert code == 0, err
    ident = _identifier(out)
    assert_passed(ofd.read_bytes(), local.trust)
    assert_passed(pdf.read_bytes(), local.trust)
    code, out, err = run("licence", "check", ident, "--file", str(pdf))
    assert code == 0, err
    assert json.loads(out)["matched_file"] == "pdf"
    again = tmp_path / "again.pdf"
    code, _out, err = run("licence", "download", ident, "--pdf", "-o", str(again))
    assert code == 0, err
    assert again.read_bytes() == pdf.read_bytes()

    code, out, err = run("licence", "type-update", TYPE_CODE, "--no-print-pdf")
    assert code == 0 and "print_pdf=no" in out, err
    code, out, _ = run("licence", "type-list")
    assert code == 0 and TYPE_CODE in out
    # Asking for a PDF of a type that makes none is refused before anything is issued.
    code, _out, err = run(
        "licence", "issue", "--type", TYPE_CODE, "--department", local.department_id,
        "--metadata", _json(tmp_path / "m2.json", metadata(2)), "--pdf-output", str(tmp_path / "no.pdf"),
    )  # fmt: skip
    assert code == 2 and "licence_pdf_not_available" in err
    code, out, err = run(
        "licence", "issue", "--type", TYPE_CODE, "--department", local.department_id,
        "--metadata", _json(tmp_path / "m2.json", metadata(2)),
    )  # fmt: skip
    assert code == 0, err
    plain = _identifier(out)
    assert parse_identifier(plain).serial[-8:] == "00000002"  # the refused attempt used no serial
    code, _out, err = run("licence", "download", plain, "--pdf", "-o", str(tmp_path / "none.pdf"))
    assert code == 2 and "licence_pdf_not_available" in err and not (tmp_path / "none.pdf").exists()


def test_migration_0006_keeps_existing_types_and_licences_without_pdf(db_url: str) -> None:
    from core import migrate
    from core.db import make_engine

    migrate.upgrade(db_url, "0005_licences")
    eng = make_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO licence_types (id, type_code, name, defining_authority_name, "
                    "defining_authority_code, issuing_authorities, metadata_schema, template, seal_type, "
                    "default_valid_days, active, revision, created_at, updated_at) VALUES ('t1', :code, "
                    "'营业执照', '总局', :authority, '[]', '{}', '{}', 'official', NULL, :yes, 1, :now, :now)"
                ),
                {"code": TYPE_CODE, "authority": TYPE_CODE[:18], "yes": True, "now": dt.datetime.now(dt.UTC)},
            )
        migrate.upgrade(db_url)
        with eng.connect() as conn:
            assert conn.execute(text("SELECT print_pdf FROM licence_types")).scalar_one() in (False, 0)
        with eng.begin() as conn:
            cfg = migrate.alembic_config(db_url, load_models=False)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005_licences")
        with eng.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("licence_types")}
            assert "print_pdf" not in columns
            assert conn.execute(text("SELECT id FROM licence_types")).scalar() == "t1"
            assert not {"pdf_sm3", "pdf_size"} & {c["name"] for c in inspect(conn).get_columns("licences")}
    finally:
        eng.dispose()


def test_a_character_the_font_cannot_draw_is_refused_not_printed_as_a_box(store: Store) -> None:
    if 0x20000 in print_font().chars:
        pytest.skip("the configured CJK font has CJK Extension B: no character to test with")
    _print_pdf_on(store)
    before = store.snapshot()
    with pytest.raises(ConfigurationError) as caught:
        store.issue(holder_name="北京𠀀科技有限公司")  # U+20000 (CJK Extension B): not in WenQuanYi Zen Hei
    assert caught.value.details["missing"] == "𠀀"
    assert store.snapshot() == before
