"""Stock imports with files: a ZIP of a manifest and existing OFD licences, each file checked before
anything is written (hostile archives and packages, PDFs, whole-protected documents, missing or
unnamed files: typed errors, row by row), then sealed as it is — signatures it carries stay valid —
instead of rendered; resumable, one licence per row, over the library, the CLI and HTTP."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.db import transaction
from core.errors import InputTooLarge, InvalidInput, MalformedData
from gmpki.ofd import ContainerLimits
from gmpki.sm3 import sm3_hex
from licence_store import stock_import
from licence_store.models import Licence, LicenceImportRow
from licence_store.rendering import LicenceView, doc_id_for, render_licence
from licence_store.stock_import import ImportInvalid, create_import, run_import
from signer.batch import WorkerResources
from signer.ofd_sealing import seal_ofd
from signer.placement import placement_from_options
from tests.registry.conftest import uscc

from .conftest import SIGNER, TYPE_CODE, Store, assert_passed, decode_qr, zip_entries
from .test_api import Api, _ok, _problem, api  # noqa: F401 - the api fixture

MIB = 1024 * 1024
COLUMNS = (
    "licence_number,holder_name,holder_code,holder_code_type,issue_date,company_type,"
    "fields.registered_capital,client_key,file\n"
)


def _row(i: int, file: str = "", *, code_type: str = "uscc") -> str:
    return (
        f"F{i:05d},存量公司{i},{uscc(2000 + i)},{code_type},2018-03-{1 + i % 28:02d},"
        f"有限责任公司,{i},stock-{i},{file}\n"
    )


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def stock_ofd(n: int) -> bytes:
    """An unsealed licence as an earlier system made it (a different layout and title)."""
    ident = f"OLD-{n:06d}"
    view = LicenceView(
        identifier=ident,
        title="营业执照（旧系统）",
        subtitle=None,
        rows=[("证照编号", f"F{n:05d}"), ("持证主体", f"存量公司{n}")],
        issuer_name="测试部门1",
        issue_date=dt.date(2018, 3, 1),
        verify_url=f"https://old.example.test/check?id={ident}",
        doc_id=doc_id_for(ident),
    )
    return render_licence(view, when=dt.datetime(2018, 3, 1, tzinfo=dt.UTC))


def _replace(ofd: bytes, name: str, data: bytes) -> bytes:
    entries = zip_entries(ofd)
    entries[name] = data
    return _zip(list(entries.items()))


def _limits(store: Store) -> ContainerLimits:
    return ContainerLimits(max_input_size=store.reg.settings.max_upload_bytes)


def _create(store: Store, data: bytes, fmt: str = "zip") -> str:
    with transaction(store.sessions) as s:
        imp, _created = create_import(
            s,
            type_ref=TYPE_CODE,
            department_id=store.department.id,
            data=data,
            fmt=fmt,
            actor=SIGNER,
            blobs=store.blobs,
            file_limits=_limits(store),
        )
        return imp.id


def _resources(store: Store) -> WorkerResources:
    return WorkerResources(store.reg.settings, store.sessions, store.reg.keystore, store.blobs)


def _licences(store: Store) -> dict[str, Licence]:
    with store.sessions() as s:
        return {str(r.client_key): r for r in s.scalars(select(Licence))}


def _signature_count(ofd: bytes) -> int:
    return sum(1 for n in zip_entries(ofd) if n.endswith("/SignedValue.dat"))


def test_files_are_sealed_as_they_are_and_rows_without_one_rendered(store: Store) -> None:
    plain = stock_ofd(1)
    sealed_before = store.file(store.issue(500))  # an existing licence already carrying a seal
    assert _signature_count(sealed_before) == 1
    manifest = COLUMNS + _row(1, "licences/1.ofd") + _row(2, "licences/sub/2.ofd") + _row(3)
    archive = _zip(
        [
            ("manifest.csv", manifest.encode()),
            ("licences/1.ofd", plain),
            ("licences/sub/2.ofd", sealed_before),
            ("__MACOSX/licences/._1.ofd", b"resource fork"),
        ]
    )
    import_id = _create(store, archive)
    assert store.blobs.get(sm3_hex(plain)) == plain  # stored content-addressed at validation
    progress, _ = run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=1)
    assert (progress.issued, progress.failed, progress.total) == (3, 0, 3)
    rows = _licences(store)

    first = store.file(rows["stock-1"])
    assert_passed(first, store.trust)
    assert _signature_count(first) == 1
    before, after = zip_entries(plain), zip_entries(first)
    # Not rendered: every entry of the stock file is kept byte for byte (OFD.xml only gains the
    # reference to the signature list), its QR code still the old system's.
    assert {n: d for n, d in after.items() if n in before and n != "OFD.xml"} == {
        n: d for n, d in before.items() if n != "OFD.xml"
    }
    assert decode_qr(after["Doc_0/Res/qr.png"]) == "https://old.example.test/check?id=OLD-000001"

    second = store.file(rows["stock-2"])
    assert _signature_count(second) == 2
    assert_passed(second, store.trust)  # the earlier seal still verifies beside the new one

    third = store.file(rows["stock-3"])
    assert decode_qr(zip_entries(third)["Doc_0/Res/qr.png"]).endswith(rows["stock-3"].identifier)

    with store.sessions() as s:
        issued = {
            e.details_dict().get("client_key"): e.details_dict()
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "licence.issued"))
        }
    assert issued["stock-1"]["stock_file_sm3"] == sm3_hex(plain)
    assert issued["stock-2"]["stock_file_sm3"] == sm3_hex(sealed_before)
    assert "stock_file_sm3" not in issued["stock-3"]
    assert rows["stock-1"].identifier != rows["stock-2"].identifier

    # Running again, or importing the same archive again, adds nothing.
    again, _ = run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=1)
    assert again.issued == 3 and _create(store, archive) == import_id
    assert len(_licences(store)) == 4


def test_json_manifest_with_files(store: Store) -> None:
    rows = [
        {
            "licence_number": f"J{i}",
            "holder_name": f"公司{i}",
            "holder_code": uscc(3000 + i),
            "holder_code_type": "uscc",
            "fields": {"company_type": "有限责任公司", "registered_capital": i},
            "client_key": f"json-{i}",
            "file": f"{i}.ofd",
        }
        for i in (1, 2)
    ]
    archive = _zip(
        [
            ("1.ofd", stock_ofd(11)),
            ("2.ofd", stock_ofd(12)),
            ("manifest.json", json.dumps({"rows": rows}, ensure_ascii=False).encode()),
        ]
    )
    progress, _ = run_import(
        _resources(store), store.services, _create(store, archive, "json"), actor=SIGNER, workers=1
    )
    assert progress.issued == 2
    for row in _licences(store).values():
        assert_passed(store.file(row), store.trust)
    # "file" means nothing outside an archive.
    with pytest.raises(ImportInvalid) as caught:
        _create(store, json.dumps(rows[:1]).encode(), "json")
    assert [(e["row"], e["field"]) for e in caught.value.details["errors"]] == [(1, "file")]


def _xxe(ofd: bytes) -> bytes:
    text = zip_entries(ofd)["OFD.xml"].decode()
    head, body = text.split("?>", 1)
    doctype = '<!DOCTYPE ofd:OFD [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    body = body.replace("</ofd:DocID>", "&xxe;</ofd:DocID>", 1)
    return _replace(ofd, "OFD.xml", (head + "?>" + doctype + body).encode())


def _whole_protected(store: Store, ofd: bytes) -> bytes:
    with transaction(store.sessions) as s:
        return seal_ofd(
            s,
            store.reg.keystore,
            ofd,
            es_id=store.seal.es_id,
            department_id=store.department.id,
            placement=placement_from_options(page=1, x=20, y=20),
            mode="protect_all",
            actor=SIGNER,
        )


def test_bad_files_refuse_the_whole_archive_and_change_nothing(store: Store) -> None:
    protected = _whole_protected(store, stock_ofd(4))
    inner_bomb = _replace(stock_ofd(5), "Doc_0/Res/padding.bin", bytes(8 * MIB))
    not_ofd = _zip([("readme.txt", b"an ordinary ZIP, not an OFD")])
    manifest = (
        COLUMNS
        + _row(1, "ok/a.ofd")
        + _row(2, "b.pdf")
        + _row(3, "c.ofd")
        + _row(4, "d.ofd")
        + _row(5, "e.ofd")
        + _row(6, "missing.ofd")
        + _row(7, "../ok/a.ofd")
        + _row(8, "ok/a.ofd")
        + _row(9, "f.ofd", code_type="uscc_code")
        + _row(10, "g.ofd")
    )
    archive = _zip(
        [
            ("manifest.csv", manifest.encode()),
            ("ok/a.ofd", stock_ofd(1)),
            ("b.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n"),
            ("c.ofd", _xxe(stock_ofd(3))),
            ("d.ofd", protected),
            ("e.ofd", inner_bomb),
            ("f.ofd", stock_ofd(9)),
            ("g.ofd", not_ofd),
            ("extra/unnamed.ofd", stock_ofd(11)),
            (".DS_Store", b"finder"),
        ]
    )
    before = store.snapshot()
    with pytest.raises(ImportInvalid) as caught:
        _create(store, archive)
    details = caught.value.details
    found = [(e["row"], e["field"], e["keyword"], e.get("file")) for e in details["errors"]]
    assert found == [
        (0, "file", "unreferenced", "extra/unnamed.ofd"),
        (2, "file", "format", "b.pdf"),
        (3, "file", "malformed_data", "c.ofd"),
        (4, "file", "document_fully_protected", "d.ofd"),
        (5, "file", "input_too_large", "e.ofd"),
        (6, "file", "exists", "missing.ofd"),
        (7, "file", "path", "../ok/a.ofd"),
        (8, "file", "unique", "ok/a.ofd"),
        (9, "holder_code_type", "enum", None),
        (10, "file", "malformed_data", "g.ofd"),
    ], found
    messages = {e["row"]: e for e in details["errors"]}
    assert "PDF" in messages[2]["message_en"] and "only OFD" in messages[2]["message_en"]
    assert "GB/T 36905" in messages[2]["message_zh"]
    assert details["bad_rows"] == 9 and details["rows"] == 10
    assert store.snapshot() == before  # no row, no job, no serial, no audit entry, no blob


def test_hostile_archives_are_refused_before_anything_is_written(store: Store) -> None:
    ok = stock_ofd(1)
    manifest = (COLUMNS + _row(1, "a.ofd")).encode()
    before = store.snapshot()
    with pytest.warns(UserWarning, match="Duplicate name"):
        duplicated = _zip([("manifest.csv", manifest), ("a.ofd", ok), ("a.ofd", stock_ofd(2))])
    cases: list[tuple[bytes, type[Exception]]] = [
        (_zip([("manifest.csv", manifest), ("a.ofd", ok), ("bomb.bin", bytes(8 * MIB))]), InputTooLarge),
        (_zip([("manifest.csv", manifest), ("a.ofd", ok), ("../evil.ofd", ok)]), MalformedData),
        (_zip([("manifest.csv", manifest), ("a.ofd", ok), ("/etc/evil.ofd", ok)]), MalformedData),
        (_zip([("manifest.csv", manifest), ("a.ofd", ok), ("a\\..\\evil.ofd", ok)]), MalformedData),
        (duplicated, MalformedData),
        (b"PK\x03\x04 no archive at all", MalformedData),
        (_zip([("a.ofd", ok)]), InvalidInput),  # no manifest
        (_zip([("one.csv", manifest), ("two.json", b"[]"), ("a.ofd", ok)]), InvalidInput),
    ]
    for data, error in cases:
        with pytest.raises(error):
            _create(store, data)
    # The file column outside an archive.
    with pytest.raises(ImportInvalid, match="unknown columns: file"):
        _create(store, manifest, "csv")
    assert store.snapshot() == before


def test_rerun_after_a_crash_issues_each_row_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 6
    manifest = COLUMNS + "".join(_row(i, f"{i}.ofd" if i % 2 else "") for i in range(1, n + 1))
    archive = _zip(
        [("manifest.csv", manifest.encode()), *[(f"{i}.ofd", stock_ofd(i)) for i in range(1, n + 1, 2)]]
    )
    import_id = _create(store, archive)

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("killed while sealing")

    monkeypatch.setattr(stock_import, "run_job", crash)
    with pytest.raises(RuntimeError):
        run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=1)
    with store.sessions() as s:
        states = set(s.scalars(select(LicenceImportRow.state).where(LicenceImportRow.import_id == import_id)))
    assert states == {"rendered"} and not _licences(store)
    monkeypatch.undo()
    progress, _ = run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=1)
    assert progress.issued == n
    rows = _licences(store)
    assert sorted(rows) == sorted(f"stock-{i}" for i in range(1, n + 1))
    assert len({r.identifier for r in rows.values()}) == n
    with store.sessions() as s:
        assert int(s.scalar(select(func.count()).where(AuditEntry.action == "licence.issued")) or 0) == n
    for key in ("stock-1", "stock-2"):
        assert_passed(store.file(rows[key]), store.trust)


def test_cli_imports_an_archive(store: Store, tmp_path: Path) -> None:
    good = tmp_path / "stock.zip"
    good.write_bytes(
        _zip(
            [
                ("manifest.csv", (COLUMNS + _row(1, "1.ofd") + _row(2)).encode()),
                ("1.ofd", stock_ofd(1)),
            ]
        )
    )
    bad = tmp_path / "bad.zip"
    bad.write_bytes(
        _zip([("manifest.csv", (COLUMNS + _row(1, "1.pdf")).encode()), ("1.pdf", b"%PDF-1.4\n%%EOF\n")])
    )
    env = dict(os.environ)
    env.update(
        {
            "ESEAL_VAR_DIR": str(store.reg.settings.var_dir),
            "ESEAL_DATABASE_URL": store.reg.url,
            "ESEAL_KEYSTORE_PASSPHRASE": "registry test passphrase",
            "ESEAL_PUBLIC_BASE_URL": store.services.public_base_url,
        }
    )
    base = [str(Path(sys.executable).with_name("eseal")), "licence", "import"]
    options = ["--type", TYPE_CODE, "--department", store.department.id, "--workers", "1"]
    root = Path(__file__).resolve().parents[2]
    refused = subprocess.run(
        [*base, str(bad), *options], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "licence_import_invalid" in refused.stderr and "PDF" in refused.stderr
    done = subprocess.run(
        [*base, str(good), *options], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "issued 2, failed 0, total 2" in done.stdout
    rows = _licences(store)
    assert _signature_count(store.file(rows["stock-1"])) == 1
    assert_passed(store.file(rows["stock-1"]), store.trust)


def test_http_import_of_an_archive(api: Api) -> None:  # noqa: F811 - the api fixture
    archive = _zip(
        [
            ("manifest.csv", (COLUMNS + _row(1, "1.ofd") + _row(2)).encode()),
            ("1.ofd", stock_ofd(1)),
        ]
    )
    bad = _zip([("manifest.csv", (COLUMNS + _row(1, "1.ofd")).encode()), ("1.ofd", b"%PDF-1.4\n")])
    zip_type = {"Content-Type": "application/zip"}
    with api.client("issuer") as c:
        problem = _problem(
            c.post("/v1/licence-imports", params={"type": TYPE_CODE}, content=bad, headers=zip_type),
            400,
            "licence_import_invalid",
        )
        assert [(e["row"], e["keyword"], e["file"]) for e in problem["details"]["errors"]] == [
            (1, "format", "1.ofd")
        ]
        created = _ok(
            c.post(
                "/v1/licence-imports",
                params={"type": TYPE_CODE, "start": "false"},
                content=archive,
                headers=zip_type,
            ),
            201,
        )
        done = _ok(c.post(f"/v1/licence-imports/{created['id']}/run"))
        assert done["progress"]["issued"] == 2 and done["progress"]["failed"] == 0
        again = _ok(
            c.post(
                "/v1/licence-imports",
                params={"type": TYPE_CODE, "start": "false"},
                content=archive,
                headers=zip_type,
            )
        )
        assert again["id"] == created["id"] and again["created"] is False
    with api.ctx.sessions() as s:
        row = s.scalar(select(Licence).where(Licence.client_key == "stock-1"))
        assert row is not None
        assert_passed(api.ctx.blobs.get(row.ofd_sm3), api.trust)
