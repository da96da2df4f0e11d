"""Seals and SES signatures made by other systems (../shared/interop, see its README): every field as
stated there, and the signature verdicts under the right rule only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from asn1crypto import x509

from gmpki import seal as S
from gmpki import sm2, sm3

pytestmark = pytest.mark.interop

USER_SERIAL = 0x1719D2DAB60
SB_SERIAL = 0x1719D2E201D
UTC = dt.UTC


def _cert(der: bytes) -> x509.Certificate:
    return x509.Certificate.load(der)


def _key(cert_der: bytes) -> sm2.SM2PublicKey:
    point = _cert(cert_der)["tbs_certificate"]["subject_public_key_info"]["public_key"].native
    return sm2.SM2PublicKey(bytes(point))


def _cn(cert_der: bytes) -> str:
    return str(_cert(cert_der).subject.native["common_name"])


def _v1_rule(seal: S.ParsedSeal, raw: bytes) -> bytes:
    """Build the v1 maker message from scratch: SEQUENCE{sealInfo, cert TLV, alg TLV}."""
    cert_tlv = b"\x04\x82" + len(seal.maker_cert_der).to_bytes(2, "big") + seal.maker_cert_der
    alg_tlv = bytes.fromhex("06082a811ccf55018375")
    body = seal.seal_info_bytes + cert_tlv + alg_tlv
    assert cert_tlv in raw and alg_tlv in raw
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def test_user_v1_seal(seal_v1: bytes) -> None:
    seal = S.parse_seal(seal_v1)
    assert S.detect_seal_version(seal_v1) == 1
    assert (seal.version, seal.header_id, seal.header_version, seal.vid) == (1, "ES", 1, "OFDR&WTest")
    assert seal.es_id == "40C8CDD24DEF43388B86E62CCE1D6832"
    assert seal.name == "OFDRW测试用印章"
    assert seal.seal_type == 1
    assert seal.create_date == dt.datetime(2020, 4, 22, 2, 18, 7, tzinfo=UTC)
    assert seal.valid_start == dt.datetime(2020, 4, 22, 2, 18, 7, tzinfo=UTC)
    assert seal.valid_end == dt.datetime(2022, 4, 22, 2, 18, 7, tzinfo=UTC)
    assert (seal.picture_type, seal.picture_width, seal.picture_height) == ("PNG", 40, 40)
    assert len(seal.picture_data) == 15693 and seal.picture_data.startswith(b"\x89PNG")
    assert seal.cert_list_type == 1 and len(seal.cert_list) == 1
    assert _cert(seal.cert_list[0]).serial_number == USER_SERIAL
    assert _cert(seal.maker_cert_der).serial_number == SB_SERIAL
    assert seal.signature_algorithm == "1.2.156.10197.1.501"
    assert seal.time_stamp is None and seal.extensions == () and seal.warnings == ()
    assert seal.raw == seal_v1
    assert seal.seal_info_bytes == seal_v1[4:16385]


def test_user_v1_maker_signature_only_under_v1_rule(seal_v1: bytes) -> None:
    seal = S.parse_seal(seal_v1)
    assert seal.signed_bytes == _v1_rule(seal, seal_v1)
    assert S.check_maker_signature(seal) is S.SignatureCheck.VALID
    # The v4 rule over the same seal (message = SES_SealInfo alone) must not verify.
    key = _key(seal.maker_cert_der)
    assert sm2.verify(key, seal.signed_bytes, seal.signature)
    assert not sm2.verify(key, seal.seal_info_bytes, seal.signature)


def test_user_v4_seal(seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    assert S.detect_seal_version(seal_v4) == 4
    assert sm3.sm3(seal_v4).hex() == "a2690aeb532bc737d407dece753fc5aef6d31c867d2ce7d7f4f7b2c63235a76f"
    assert seal.digest == sm3.sm3(seal_v4)
    assert (seal.version, seal.header_id, seal.header_version, seal.vid) == (4, "ES", 4, "OFDR&WTest")
    assert seal.es_id == "51f044b76510434e9bc67a1185c2fba5"
    assert seal.name == "OFD R&W 测试用印章"
    assert seal.seal_type == 3
    assert seal.create_date == dt.datetime(2020, 4, 22, 2, 9, tzinfo=UTC)
    assert seal.valid_start == dt.datetime(2020, 4, 22, 2, 9, tzinfo=UTC)
    assert seal.valid_end == dt.datetime(2022, 4, 22, 2, 9, tzinfo=UTC)
    assert (seal.picture_type, seal.picture_width, seal.picture_height) == ("PNG", 40, 40)
    assert len(seal.picture_data) == 15693 and seal.picture_data.startswith(b"\x89PNG")
    assert seal.cert_list_type == 1 and len(seal.cert_list) == 1 and seal.cert_digests == ()
    assert _cert(seal.cert_list[0]).serial_number == USER_SERIAL
    assert _cert(seal.maker_cert_der).serial_number == SB_SERIAL
    assert seal.time_stamp is None and seal.extensions == () and not seal.has_unknown_critical_extension
    assert seal.raw == seal_v4
    assert seal.signed_bytes == seal.seal_info_bytes == seal_v4[4:16397]


def test_user_v4_maker_signature_only_under_v4_rule(seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    assert S.verify_maker_signature(seal)
    key = _key(seal.maker_cert_der)
    assert not sm2.verify(key, _v1_rule(seal, seal_v4), seal.signature)


def test_signed_value_v4(seal_v4: bytes, signed_value_v4: bytes) -> None:
    sig = S.parse_ses_signature(signed_value_v4)
    assert S.detect_signature_version(signed_value_v4) == 4
    assert (sig.version, sig.tbs_version) == (4, 4)
    assert sig.seal.raw == seal_v4
    assert sig.time_info == dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=UTC)
    assert sig.time_info_raw == b"20201012111403Z"
    assert sig.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert sig.data_hash == bytes(32)
    assert sig.signature_algorithm == "1.2.156.10197.1.501"
    assert sig.time_stamp is None and sig.ext_datas == () and sig.warnings == ()
    assert _cert(sig.signer_cert_der).serial_number == USER_SERIAL
    assert sig.tbs_bytes == signed_value_v4[4:17109]
    assert S.check_signer_signature(sig) is S.SignatureCheck.VALID
    assert S.check_maker_signature(sig.seal) is S.SignatureCheck.VALID
    assert S.cert_list_contains(sig.seal, sig.signer_cert_der) is True
    assert sig.seal.valid_start <= sig.time_info <= sig.seal.valid_end


def test_tax_bureau_invoice_signature(ofd_entry: Callable[[str, str], bytes]) -> None:
    data = ofd_entry("ofdrw-sign__v4signed.ofd", "Doc_0/Signs/Sign_0/SignedValue.dat")
    sig = S.parse_ses_signature(data)
    seal = sig.seal
    assert seal.es_id == "50011200000399"
    assert (seal.version, seal.vid) == (4, "GOMAIN")
    assert seal.picture_type == "ofd" and seal.picture_data.startswith(b"PK\x03\x04")
    assert (seal.picture_width, seal.picture_height) == (30, 20)
    assert seal.extensions == (
        S.SealExtension("1.2.156.10197.6.7.2.2.1", critical=False, value=b"2.1", critical_encoded=True),
    )
    assert not seal.has_unknown_critical_extension
    # the FALSE was on the wire (01 01 00) and the maker signature covers it as read
    assert seal.signed_bytes.endswith(bytes.fromhex("30163014060a2a811ccf55060702020101010004 03322e31"))
    assert sig.time_info == dt.datetime(2020, 10, 10, 7, 11, 20, tzinfo=UTC)
    signature_xml = ofd_entry("ofdrw-sign__v4signed.ofd", "Doc_0/Signs/Sign_0/Signature.xml")
    assert sig.data_hash == sm3.sm3(signature_xml)
    assert S.verify_signer_signature(sig)
    assert S.verify_maker_signature(seal)
    assert S.cert_list_contains(seal, sig.signer_cert_der) is True
    assert _cn(sig.signer_cert_der) == "全国统一发票监制章国家税务总局重庆市税务局"
    assert _cn(seal.maker_cert_der) == "国家税务总局电子印章测试系统"


def test_reader_doc_signature_and_seal_copy(seal_v4: bytes, ofd_entry: Callable[[str, str], bytes]) -> None:
    name = "ofdrw-reader__SESV4SignDoc.ofd"
    sig = S.parse_ses_signature(ofd_entry(name, "Doc_0/Signs/Sign_0/SignedValue.dat"))
    copy = S.parse_seal(ofd_entry(name, "Doc_0/Signs/Sign_0/Seal.esl"))
    assert copy.raw == sig.seal.raw == seal_v4
    assert S.verify_signer_signature(sig) and S.verify_maker_signature(copy)
    assert sig.time_info is not None
    # cryptographically intact, but signed after the seal expired: the fact a verifier must report
    assert sig.time_info.date() == dt.date(2026, 8, 4) and sig.time_info > sig.seal.valid_end
