"""Every third-party sample gets the verdict and check results ../shared/interop/README.md states."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from verify import Indication, Result, SubIndication, UnusableInput, verify_bytes
from verify.report import DocumentReport

pytestmark = pytest.mark.interop

P, F, IND, S = Result.PASSED, Result.FAILED, Result.INDETERMINATE, Result.SKIPPED

SEAL_ONLY = {
    "format.parse": P,
    "seal.maker_signature": P,
    "seal.maker_certificate_validity": P,
    "seal.maker_certificate_chain": IND,  # no anchor for the ofdrw root: never "valid"
    "seal.status": S,
    "timestamp.token": S,
}
SIGNED_VALUE_V4 = {
    "format.parse": P,
    "seal.maker_signature": P,
    "seal.maker_certificate_validity": P,
    "seal.maker_certificate_chain": IND,
    "seal.validity_period": P,
    "seal.status": S,
    "signer.signature": P,
    "signer.in_seal_certificate_list": P,
    "signer.certificate_validity": P,
    "signer.certificate_chain": IND,
    "signer.certificate_revocation": S,
    "document.data_hash": S,  # no detached data given
    "timestamp.token": S,
}
TAX_INVOICE = {
    **SIGNED_VALUE_V4,
    "document.data_hash": P,
    "document.references": P,
    "document.seal_file_match": S,  # tax invoices carry no Seal.esl (P6)
    "document.coverage": P,
}
EXPIRED_DOC = {
    **TAX_INVOICE,
    "seal.validity_period": F,  # signed 2026-08-04, seal valid until 2022-04-22
    "signer.certificate_validity": F,  # USER expired 2022-04-21
    "document.seal_file_match": P,
}

USER_SERIAL, SB_SERIAL = "1719D2DAB60", "1719D2E201D"
UTC = dt.UTC


def _one(report: DocumentReport) -> dict[str, Result]:
    (sig,) = report.signatures
    return sig.results()


def test_every_interop_file_is_covered(interop_dir: Path) -> None:
    names = {p.name for p in interop_dir.iterdir() if p.is_file()}
    assert names == set(EXPECTATIONS), "add an expectation for every interop file"


def check_user_v1(report: DocumentReport) -> None:
    assert (report.format, report.indication) == ("seal", Indication.INDETERMINATE)
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    assert _one(report) == SEAL_ONLY
    sig = report.signatures[0]
    assert sig.version == 1 and sig.seal is not None
    assert (sig.seal.es_id, sig.seal.name, sig.seal.type) == (
        "40C8CDD24DEF43388B86E62CCE1D6832",
        "OFDRW测试用印章",
        1,
    )
    assert sig.seal.maker is not None and sig.seal.maker.serial == SB_SERIAL
    assert sig.seal.valid_to.date() == dt.date(2022, 4, 22)
    assert "GM/T 0031" in sig.check("seal.maker_signature").message_en


def check_user_v4(report: DocumentReport) -> None:
    assert (report.format, report.indication) == ("seal", Indication.INDETERMINATE)
    assert _one(report) == SEAL_ONLY
    sig = report.signatures[0]
    assert sig.version == 4 and sig.seal is not None
    assert (sig.seal.es_id, sig.seal.name, sig.seal.type) == (
        "51f044b76510434e9bc67a1185c2fba5",
        "OFD R&W 测试用印章",
        3,
    )
    assert sig.seal.sm3 == "a2690aeb532bc737d407dece753fc5aef6d31c867d2ce7d7f4f7b2c63235a76f"
    assert (sig.seal.valid_from, sig.seal.valid_to) == (
        dt.datetime(2020, 4, 22, 2, 9, tzinfo=UTC),
        dt.datetime(2022, 4, 22, 2, 9, tzinfo=UTC),
    )
    assert "SES_SealInfo" in sig.check("seal.maker_signature").message_en


def check_signed_value(report: DocumentReport) -> None:
    assert (report.format, report.indication) == ("ses", Indication.INDETERMINATE)
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    assert _one(report) == SIGNED_VALUE_V4
    sig = report.signatures[0]
    assert sig.signing_time == dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=UTC)
    assert sig.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert sig.signer is not None and sig.signer.serial == USER_SERIAL
    assert (
        sig.seal is not None
        and sig.seal.sm3 == "a2690aeb532bc737d407dece753fc5aef6d31c867d2ce7d7f4f7b2c63235a76f"
    )


def check_tax_invoice(report: DocumentReport) -> None:
    assert (report.format, report.signed, report.indication) == ("ofd", True, Indication.INDETERMINATE)
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    assert _one(report) == TAX_INVOICE
    sig = report.signatures[0]
    assert (sig.id, sig.type, sig.version) == ("1", "seal", 4)
    assert sig.signing_time == dt.datetime(2020, 10, 10, 7, 11, 20, tzinfo=UTC)
    assert "13" in sig.check("document.references").message_en
    assert "Doc_0/Signs/Sign_0/Signature.xml" in sig.check("document.data_hash").message_en
    assert sig.seal is not None and sig.seal.es_id == "50011200000399"
    assert sig.seal.maker is not None and "国家税务总局电子印章测试系统" in sig.seal.maker.subject
    assert sig.signer is not None and "全国统一发票监制章国家税务总局重庆市税务局" in sig.signer.subject
    assert "税务测试CA2(SM2)" in sig.check("signer.certificate_chain").message_zh
    assert [(s.page_ref, s.page_index, s.boundary) for s in sig.stamps] == [("1", 0, (90.0, 8.0, 30.0, 20.0))]


def check_expired_doc(report: DocumentReport) -> None:
    assert (report.format, report.signed, report.indication) == ("ofd", True, Indication.FAILED)
    assert report.sub_indication is SubIndication.SEAL_EXPIRED
    assert _one(report) == EXPIRED_DOC
    sig = report.signatures[0]
    assert sig.signing_time == dt.datetime(2026, 8, 4, 2, 8, 9, tzinfo=UTC)
    seal_msg = sig.check("seal.validity_period")
    assert "2026-08-04 02:08:09Z" in seal_msg.message_en and "2022-04-22 02:09:00Z" in seal_msg.message_en
    cert_msg = sig.check("signer.certificate_validity")
    assert "serial 0x1719D2DAB60" in cert_msg.message_en and "2022-04-21 14:39:08Z" in cert_msg.message_en
    assert "已过期" in cert_msg.message_zh
    assert "5" in sig.check("document.references").message_en


def check_helloworld(report: DocumentReport) -> None:
    assert (report.format, report.signed, report.indication) == ("ofd", False, Indication.NOT_SIGNED)
    assert report.signatures == () and report.checks == ()


def _unusable(data: bytes) -> None:
    with pytest.raises(UnusableInput):
        verify_bytes(data)


EXPECTATIONS: dict[str, Callable[[DocumentReport], None] | None] = {
    "ofdrw-gm__UserV1.esl": check_user_v1,
    "ofdrw-gm__UserV4.esl": check_user_v4,
    "ofdrw-gm__SignedValueV4.dat": check_signed_value,
    "ofdrw-sign__v4signed.ofd": check_tax_invoice,
    "ofdrw-reader__SESV4SignDoc.ofd": check_expired_doc,
    "ofdrw-sign__helloworld.ofd": check_helloworld,
    "ofdrw-gm__USER.p12": None,  # a key store, not a signed object
    "README.md": None,
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_interop_verdicts(interop_dir: Path, name: str) -> None:
    data = (interop_dir / name).read_bytes()
    expectation = EXPECTATIONS[name]
    if expectation is None:
        _unusable(data)
        return
    report = verify_bytes(data)
    expectation(report)
    _assert_json_schema(report)


def test_detached_data_decides_data_hash(interop_file: Callable[[str], bytes]) -> None:
    data = interop_file("ofdrw-gm__SignedValueV4.dat")
    report = verify_bytes(data, detached_data=b"any real content")
    (sig,) = report.signatures
    assert sig.results() == {**SIGNED_VALUE_V4, "document.data_hash": F}
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    assert "0" * 64 in sig.check("document.data_hash").message_en


def test_results_do_not_depend_on_validation_time(interop_file: Callable[[str], bytes]) -> None:
    # Time checks use the signing time and createDate, never "now" (every ofdrw cert is expired today).
    data = interop_file("ofdrw-sign__v4signed.ofd")
    for at in (dt.datetime(2021, 1, 1, tzinfo=UTC), dt.datetime(2040, 1, 1, tzinfo=UTC)):
        assert _one(verify_bytes(data, at=at)) == TAX_INVOICE


def _assert_json_schema(report: DocumentReport) -> None:
    doc = json.loads(report.dumps())
    assert {"format", "signed", "indication", "sub_indication", "signatures"} <= set(doc)
    assert doc["indication"] in {"PASSED", "FAILED", "INDETERMINATE", "NOT_SIGNED"}
    for sig in doc["signatures"]:
        keys = {
            "id",
            "type",
            "version",
            "signing_time",
            "indication",
            "sub_indication",
            "seal",
            "signer",
            "checks",
        }
        assert keys <= set(sig)
        assert sig["type"] in {"seal", "sign"}
        if sig["seal"] is not None:
            assert {"es_id", "name", "type", "valid_from", "valid_to", "maker"} <= set(sig["seal"])
            assert sig["seal"]["valid_from"].endswith("Z")
            if sig["seal"]["maker"] is not None:
                assert set(sig["seal"]["maker"]) == {"subject", "serial"}
        if sig["signer"] is not None:
            assert set(sig["signer"]) == {"subject", "serial"}
        for check in sig["checks"]:
            assert set(check) == {"id", "result", "message_zh", "message_en"}
            assert check["result"] in {"passed", "failed", "warning", "indeterminate", "skipped"}
            assert check["message_zh"] and check["message_en"]
