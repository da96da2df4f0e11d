"""GM/T 0031 ("v1") SES signatures. No third-party v1 signature exists in the corpus, so these are
assembled here by hand around the real v1 seal, following spec §3.1, and signed with a fresh key."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import MalformedData
from gmpki import seal as S

from .conftest import Party
from .conftest import der_tlv as _tlv

SM2_OID_TLV = bytes.fromhex("06082a811ccf55018375")


def _v1_signature(
    seal: bytes, party: Party, time_info: bytes, *, time_tag: int = 0x03, hash_tag: int = 0x03
) -> tuple[bytes, bytes]:
    def wrapped(tag: int, value: bytes) -> bytes:
        return _tlv(tag, (b"\x00" if tag == 0x03 else b"") + value)

    tbs = _tlv(
        0x30,
        b"\x02\x01\x01"
        + seal
        + wrapped(time_tag, time_info)
        + wrapped(hash_tag, bytes(range(32)))
        + _tlv(0x16, b"/Doc_0/Signs/Sign_0/Signature.xml")
        + _tlv(0x04, party.cert_der)
        + SM2_OID_TLV,
    )
    signature = party.signer.sign(tbs)
    return _tlv(0x30, tbs + _tlv(0x03, b"\x00" + signature)), tbs


def test_v1_signature_with_encoded_utctime(seal_v1: bytes, holder: Party) -> None:
    data, tbs = _v1_signature(seal_v1, holder, b"\x17\x0d201012111403Z")
    assert S.detect_signature_version(data) == 1
    sig = S.parse_ses_signature(data)
    assert (sig.version, sig.tbs_version) == (1, 1)
    assert sig.seal.raw == seal_v1 and sig.seal.version == 1
    assert sig.time_info == dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=dt.UTC)
    assert sig.data_hash == bytes(range(32))
    assert sig.signer_cert_der == holder.cert_der and sig.signature_algorithm == S.SM2_WITH_SM3
    assert sig.tbs_bytes == tbs and sig.time_stamp is None and sig.ext_datas == ()
    assert S.verify_signer_signature(sig) and S.verify_maker_signature(sig.seal)
    assert S.cert_list_contains(sig.seal, sig.signer_cert_der) is False  # a fresh key, not USER


def test_v1_signature_lenient_time_forms(seal_v1: bytes, holder: Party) -> None:
    data, _ = _v1_signature(seal_v1, holder, b"2020-10-12 19:14:03", time_tag=0x04, hash_tag=0x04)
    sig = S.parse_ses_signature(data)
    # ofdrw's local clock text: read as UTC+8 and said so
    assert sig.time_info == dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=dt.UTC)
    assert "time_info_assumed_utc8" in sig.warnings
    assert sig.data_hash == bytes(range(32)) and S.verify_signer_signature(sig)

    data, _ = _v1_signature(seal_v1, holder, b"no time here")
    sig = S.parse_ses_signature(data)
    assert sig.time_info is None and sig.time_info_raw == b"no time here"
    assert "time_info_unparsed" in sig.warnings and S.verify_signer_signature(sig)


def test_v1_signature_tampered_tbs_fails(seal_v1: bytes, holder: Party) -> None:
    data, _ = _v1_signature(seal_v1, holder, b"\x17\x0d201012111403Z")
    at = data.index(b"/Doc_0")
    tampered = S.parse_ses_signature(data[:at] + b"/Doc_1" + data[at + 6 :])
    assert S.check_signer_signature(tampered) is S.SignatureCheck.INVALID
    assert S.check_maker_signature(tampered.seal) is S.SignatureCheck.VALID


def test_v1_signature_rejects_bad_shapes(seal_v1: bytes, seal_v4: bytes, holder: Party) -> None:
    # a v1 signature around a v4 seal, and a v1 dataHash of the wrong size
    with pytest.raises(MalformedData):
        S.parse_ses_signature(_v1_signature(seal_v4, holder, b"\x17\x0d201012111403Z")[0])
    tbs = _tlv(
        0x30,
        b"\x02\x01\x01"
        + seal_v1
        + _tlv(0x03, b"\x00x")
        + _tlv(0x03, b"\x00" + bytes(20))
        + _tlv(0x16, b"/p")
        + _tlv(0x04, holder.cert_der)
        + SM2_OID_TLV,
    )
    with pytest.raises(MalformedData):
        S.parse_ses_signature(_tlv(0x30, tbs + _tlv(0x03, b"\x00" + holder.signer.sign(tbs))))
