"""``POST /v1/verify`` and the web page over real HTTP (a uvicorn server on a fresh database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.db import transaction
from verify.html_report import CONTENT_SECURITY_POLICY

from ..api.conftest import LiveServer
from .conftest import DATA, PNG, RegionSeal, cancelled_scenario, region_seal_of

# The HTTP layer is the same on both backends; the registry look-ups behind it are tested on both.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

DOCUMENT_KEYS = {
    "format",
    "signed",
    "indication",
    "sub_indication",
    "signatures",
    "checks",
    "validation_time",
    "unsigned_stamps",
}
SIGNATURE_KEYS = {
    "id",
    "type",
    "version",
    "signing_time",
    "indication",
    "sub_indication",
    "seal",
    "signer",
    "checks",
    "doc_body",
    "signature_xml",
    "property_info",
    "stamps",
}
SEAL_KEYS = {"es_id", "name", "type", "valid_from", "valid_to", "maker", "created", "version", "sm3"}
CHECK_KEYS = {"id", "result", "message_zh", "message_en"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _post(client: httpx.Client, file: bytes, data: bytes | None = None, **kwargs: object) -> httpx.Response:
    files = {"file": ("document.dat", file, "application/octet-stream")}
    if data is not None:
        files["data"] = ("data.txt", data, "text/plain")
    return client.post("/v1/verify", files=files, **kwargs)  # type: ignore[arg-type]


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status
    assert isinstance(body["detail_zh"], str) and isinstance(body["detail_en"], str)
    return dict(body)


def test_json_report_of_a_region_signature(live_server: LiveServer, region: RegionSeal) -> None:
    signature = region.sign()
    with live_server.client() as c:  # no token: verification is public
        r = _post(c, signature, DATA)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    report = r.json()
    assert set(report) == DOCUMENT_KEYS
    assert (report["format"], report["signed"], report["indication"]) == ("ses", True, "PASSED")
    (sig,) = report["signatures"]
    assert set(sig) == SIGNATURE_KEYS and set(sig["seal"]) == SEAL_KEYS
    assert set(sig["seal"]["maker"]) == {"subject", "serial"} and set(sig["signer"]) == {"subject", "serial"}
    assert sig["seal"]["es_id"] == region.es_id and sig["seal"]["sm3"] == region.seal.seal_sm3
    assert all(set(c) == CHECK_KEYS for c in sig["checks"])
    results = {c["id"]: c["result"] for c in sig["checks"]}
    assert results["seal.status"] == "passed" and results["signer.certificate_revocation"] == "passed"
    assert results["document.data_hash"] == "passed"

    # Other data than what was signed: exactly the digest check fails
    with live_server.client() as c:
        wrong = _post(c, signature, DATA + b".").json()
    assert (wrong["indication"], wrong["sub_indication"]) == ("FAILED", "HASH_FAILURE")
    failed = [c["id"] for c in wrong["signatures"][0]["checks"] if c["result"] == "failed"]
    assert failed == ["document.data_hash"]

    # The seal alone, as a raw body
    with live_server.client() as c:
        seal = c.post(
            "/v1/verify", content=region.seal.seal_der, headers={"Content-Type": "application/octet-stream"}
        )
    assert (
        seal.status_code == 200 and seal.json()["format"] == "seal" and seal.json()["indication"] == "PASSED"
    )


def test_small_inputs_are_verified_on_the_event_loop_large_ones_in_a_thread(
    live_server: LiveServer, region: RegionSeal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small verification runs on the server's event loop (no thread hop, no GIL hand-off); one
    over ``INLINE_VERIFY_BYTES`` runs in a worker thread so the loop keeps serving. Same verdict."""
    from api.routes import verify as route
    from verify import verify_bytes as real

    on_loop: list[bool] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(route, "verify_bytes", recording)
    signature = region.sign()
    with live_server.client() as c:
        small = _post(c, signature, DATA).json()
        monkeypatch.setattr(route, "INLINE_VERIFY_BYTES", len(signature) - 1)
        large = _post(c, signature, DATA).json()
    assert small["indication"] == large["indication"] == "PASSED"
    assert on_loop == [True, False]


def test_cancellation_and_validation_time(live_server: LiveServer, region: RegionSeal) -> None:
    case = cancelled_scenario(region)
    with live_server.client() as c:
        after = _post(c, case.after, DATA).json()
        before = _post(c, case.before, DATA).json()
        then = (case.cancelled_at - dt.timedelta(milliseconds=10)).isoformat()
        historic = _post(c, case.before, DATA, params={"at": then}).json()
        bad_at = _post(c, case.before, DATA, params={"at": "yesterday"})
        naive_at = _post(c, case.before, DATA, params={"at": "2024-05-01T00:00:00"})
    assert (after["indication"], after["sub_indication"]) == ("FAILED", "SEAL_CANCELLED")
    assert before["indication"] == "PASSED"
    status = {c["id"]: c["result"] for c in before["signatures"][0]["checks"]}["seal.status"]
    assert status == "warning"  # cancelled, but after this signature
    # ``at`` is the validation time: before the cancellation the seal was simply active
    expected = (case.cancelled_at - dt.timedelta(milliseconds=10)).replace(microsecond=0)
    assert historic["validation_time"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {c["id"]: c["result"] for c in historic["signatures"][0]["checks"]}["seal.status"] == "passed"
    _problem(bad_at, 400, "invalid_input")
    _problem(naive_at, 400, "invalid_input")


def test_html_report_by_accept(live_server: LiveServer, region: RegionSeal) -> None:
    with live_server.client() as c:
        r = _post(c, region.sign(), DATA, headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    page = r.text
    assert '<div class="verdict-word">' in page
    assert re.search(r'<section id="verdict" class="verdict verdict-passed" data-indication="PASSED"', page)
    assert f'data-field="seal.es_id">{region.es_id}<' in page
    # The seal picture, inline and exactly the registered PNG
    m = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m is not None
    import base64

    assert base64.b64decode(m.group(1)) == PNG
    assert "<script" not in page and "http://" not in page.replace(live_server.url, "")


def test_seal_names_are_escaped(live_server: LiveServer) -> None:
    hostile = region_seal_of(live_server, name='<script>alert("印章")</script><img src=x onerror=1>')
    with live_server.client() as c:
        page = _post(c, hostile.sign(), DATA, headers=HTML).text
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;印章&quot;)&lt;/script&gt;&lt;img src=x onerror=1&gt;" in page


@pytest.mark.interop
def test_interop_documents(live_server: LiveServer, interop_dir: Path) -> None:
    with live_server.client() as c:
        expired = _post(c, (interop_dir / "ofdrw-reader__SESV4SignDoc.ofd").read_bytes()).json()
        unsigned = _post(c, (interop_dir / "ofdrw-sign__helloworld.ofd").read_bytes()).json()
        page = _post(c, (interop_dir / "ofdrw-sign__v4signed.ofd").read_bytes(), headers=HTML).text
    assert (expired["indication"], expired["sub_indication"]) == ("FAILED", "SEAL_EXPIRED")
    assert (unsigned["indication"], unsigned["signed"], unsigned["signatures"]) == ("NOT_SIGNED", False, [])
    assert 'data-indication="INDETERMINATE"' in page
    # Its seal picture is an OFD: shown as a placeholder, never inlined
    assert 'data-picture="placeholder" data-picture-type="ofd"' in page
    # Another region's seal: the registry does not speak for it
    assert 'data-check-id="seal.status" data-result="skipped"' in page


def test_unusable_input(live_server: LiveServer) -> None:
    with live_server.client() as c:
        garbage = _post(c, b"\x00\x01 not a document " * 10)
        raw = c.post("/v1/verify", content=b"hello", headers={"Content-Type": "text/plain"})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("readme.txt", "not an OFD")
        not_ofd = _post(c, buf.getvalue())
        broken = _post(c, buf.getvalue()[:-30])  # a ZIP cut short: cannot be read at all
        empty = _post(c, b"")
        html = _post(c, b"garbage", headers=HTML)
    for r in (garbage, raw, not_ofd, broken):
        _problem(r, 415, "unusable_input")
    _problem(empty, 400, "invalid_input")
    assert html.status_code == 415 and html.headers["content-type"].startswith("text/html")
    assert 'data-code="unusable_input"' in html.text


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_upload_limit(live_server: LiveServer, region: RegionSeal, monkeypatch: pytest.MonkeyPatch) -> None:
    signature = region.sign()
    limit = len(signature) + 100
    monkeypatch.setattr(live_server.ctx.settings, "max_upload_bytes", limit)
    with live_server.client() as c:
        assert _post(c, signature, DATA).json()["indication"] == "PASSED"  # under the limit
        multipart = _post(c, signature + b"\0" * 200, DATA)
        raw = c.post("/v1/verify", content=b"\x30" * (limit + 1))
        # No Content-Length: the limit holds while the body streams in
        streamed = c.post("/v1/verify", content=_chunks(b"\x30" * (limit + 5000)))
        detached = _post(c, signature, b"x" * (limit + 1))
        page = c.post("/verify", files={"file": ("big.ofd", b"\x30" * (limit + 1))})
    for r in (multipart, raw, streamed, detached):
        body = _problem(r, 413, "input_too_large")
        assert str(limit) in str(body["detail_en"])
    assert page.status_code == 413 and 'data-code="input_too_large"' in page.text


def test_web_page(live_server: LiveServer) -> None:
    with live_server.client() as c:
        home = c.get("/", params={"lang": "en"})
        zh = c.get("/verify")
        en = c.get("/verify", params={"lang": "en"})
    assert home.status_code == 303 and home.headers["location"] == "/verify?lang=en"
    assert zh.status_code == 200 and zh.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page = zh.text
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert '<form id="verify-form" method="post" action="/verify" enctype="multipart/form-data">' in page
    assert '<input type="file" id="file" name="file" required>' in page
    assert (
        '<input type="checkbox" id="lang-en" class="lang-switch" name="lang" value="en" form="verify-form">'
        in page
    )
    assert '<html lang="en">' in en.text and 'form="verify-form" checked>' in en.text
    assert "100 MiB" in page  # the configured upload limit, told up front


def test_form_post_renders_html(live_server: LiveServer, region: RegionSeal) -> None:
    with live_server.client() as c:
        r = c.post(
            "/verify",
            files={"file": ("签章.dat", region.sign(), "application/octet-stream"), "data": ("a.txt", DATA)},
            data={"lang": "en"},
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in r.text and 'id="lang-en" class="lang-switch" checked>' in r.text
    assert 'data-indication="PASSED"' in r.text and 'data-field="file_name">签章.dat<' in r.text


@pytest.mark.interop
def test_sealed_ofd_from_the_signer(live_server: LiveServer, region: RegionSeal, interop_dir: Path) -> None:
    ofd_sealing = pytest.importorskip("signer.ofd_sealing")
    with transaction(region.sessions) as s:
        sealed = ofd_sealing.seal_ofd(
            s,
            region.keystore,
            (interop_dir / "ofdrw-sign__helloworld.ofd").read_bytes(),
            es_id=region.es_id,
            department_id=region.department_id,
            placement=None,
            actor="seal_officer:verify-tests",
        )
    with live_server.client() as c:
        report = _post(c, sealed).json()
        page = _post(c, sealed, headers=HTML).text
    assert report["format"] == "ofd" and report["indication"] == "PASSED", json.dumps(
        report, ensure_ascii=False
    )
    assert 'id="verdict" class="verdict verdict-passed" data-indication="PASSED"' in page
    assert 'data-picture="image" data-picture-type="png"' in page


# --- detached CMS ---------------------------------------------------------------------------------------
def _region_cms(region: RegionSeal, *, timestamp: bool = False) -> bytes:
    from signer.cms_signing import seal_cms
    from signer.tsa import TimeStampAuthority

    with transaction(region.sessions) as s:
        return seal_cms(
            s,
            region.keystore,
            DATA,
            es_id=region.es_id,
            department_id=region.department_id,
            actor="seal_officer:verify-tests",
            tsa=TimeStampAuthority.from_region(s, region.keystore) if timestamp else None,
        )


def test_region_cms_with_its_data_part(live_server: LiveServer, region: RegionSeal) -> None:
    cms = _region_cms(region, timestamp=True)
    with live_server.client() as c:
        report = _post(c, cms, DATA).json()
        missing = _post(c, cms).json()
        tampered = _post(c, cms, DATA + b" ").json()
        raw = c.post("/v1/verify", content=cms).json()  # a raw body carries no data
        page = _post(c, cms, headers=HTML).text
    assert set(report) == DOCUMENT_KEYS
    shown = json.dumps(report, ensure_ascii=False)
    assert (report["format"], report["indication"]) == ("cms", "PASSED"), shown
    (sig,) = report["signatures"]
    assert set(sig) == SIGNATURE_KEYS and (sig["type"], sig["seal"]) == ("sign", None)
    results = {c["id"]: c["result"] for c in sig["checks"]}
    # The registry answers for the chain, the CRL and the region TSA's time-stamp.
    assert set(results.values()) == {"passed"}, results
    assert (missing["indication"], missing["sub_indication"]) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")
    assert raw["sub_indication"] == "SIGNED_DATA_NOT_FOUND"
    assert (tampered["indication"], tampered["sub_indication"]) == ("FAILED", "HASH_FAILURE")
    assert 'data-format="cms"' in page and 'data-sub-indication="SIGNED_DATA_NOT_FOUND"' in page
    assert 'data-check-id="document.data_hash" data-result="indeterminate"' in page
    assert "CMS 签名" in page and "digital signature, no seal" in page


def test_ecdsa_cms_chains_to_the_region_interop_root(live_server: LiveServer, region: RegionSeal) -> None:
    from hsm_adapters.keystore import KeyAlgorithm
    from seal_registry.models import Department
    from seal_registry.pki import CertRole, current_certificate, issue_pades_certificate
    from signer.cms_signing import sign_detached_cms

    with transaction(region.sessions) as s:
        dept = s.get(Department, region.department_id)
        assert dept is not None
        cert = issue_pades_certificate(s, region.keystore, dept, algorithm=KeyAlgorithm.EC_P256, actor="test")
        assert cert.key_id is not None
        key_id, chain = cert.key_id, [cert.der, current_certificate(s, CertRole.PADES_ROOT).der]
    cms = sign_detached_cms(region.keystore, key_id, chain, DATA)
    with live_server.client() as c:
        report = _post(c, cms, DATA).json()
    shown = json.dumps(report, ensure_ascii=False)
    assert (report["format"], report["indication"]) == ("cms", "PASSED"), shown
    checks = {c["id"]: c for c in report["signatures"][0]["checks"]}
    assert "ECDSA" in checks["signer.signature"]["message_en"]
    assert checks["signer.certificate_chain"]["result"] == "passed"
    # The registry's PAdES interop CRL covers the interop root: revocation is checked, not skipped
    assert checks["signer.certificate_revocation"]["result"] == "passed"
    assert "per CRL" in checks["signer.certificate_revocation"]["message_en"]


def test_damaged_cms_over_http(live_server: LiveServer, region: RegionSeal) -> None:
    cms = _region_cms(region)
    with live_server.client() as c:
        truncated = _post(c, cms[: len(cms) // 2], DATA)
        garbage = _post(c, b"\x30\x06\x02\x01\x01\x02\x01\x02", DATA)
    assert truncated.status_code == 200
    broken = truncated.json()
    assert (broken["indication"], broken["sub_indication"]) == ("FAILED", "FORMAT_FAILURE")
    _problem(garbage, 415, "unusable_input")
