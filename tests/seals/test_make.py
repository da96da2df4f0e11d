"""Making seals and SES signatures: strict DER, byte-exact round trips, and an independent check of
the output (a test-local DER walker and gmalg's pure-Python SM2, not the project's parser or SM2)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import gmalg
import pytest
from asn1crypto import core
from PIL import Image

from core.errors import CryptoError, InvalidInput, MalformedData, NotUsable
from gmpki import seal as S
from gmpki import ses_v4, sm2, sm3

from .conftest import Party, Tlv, shape, walk_der
from .conftest import der_tlv as tlv

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
SEAL_SHAPE = "30{30{30{16,02,16},16,30{02,0C,02,30{%s},18,18,18},30{16,04,02,02}},04,06,03}"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 0, 0, 255)).save(out, format="PNG")
    return out.getvalue()


def _seal_info(holder: Party, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "es_id": "33010000000001",
        "name": "测试专用章",
        "seal_type": 2,
        "certs": [holder.cert_der],
        "create_date": T0,
        "valid_start": T0,
        "valid_end": T0 + dt.timedelta(days=365),
        "picture_type": "PNG",
        "picture_data": _png(),
        "picture_width": 40,
        "picture_height": 40,
        "vid": "eseal",
    }
    args.update(overrides)
    return S.build_seal_info(**args)


def _gmalg_verify(cert_der: bytes, message: bytes, signature_bits: Tlv, data: bytes) -> bool:
    """Verify with gmalg over ``message``; the signature comes out of a BIT STRING via walk_der."""
    content = signature_bits.content(data)
    assert content[0] == 0  # no unused bits
    der = content[1:]
    sig = walk_der(der)
    r, s = (n.content(der) for n in sig.children)
    cert = walk_der(cert_der)
    # tbsCertificate: version, serial, algorithm, issuer, validity, subject, subjectPublicKeyInfo
    spki = cert.children[0].children[6]
    point = spki.children[1].content(cert_der)[1:]
    assert len(point) == 65
    return bool(gmalg.SM2(pk=point, uid=b"1234567812345678").verify(message, r, s))


@pytest.fixture(scope="module")
def made_seal(maker: Party, holder: Party) -> tuple[bytes, bytes]:
    info = _seal_info(holder)
    return info, S.make_seal(info, maker.cert_der, maker.signer)


def test_made_seal_round_trip(made_seal: tuple[bytes, bytes], maker: Party, holder: Party) -> None:
    info, seal_bytes = made_seal
    seal = S.parse_seal(seal_bytes)
    assert S.detect_seal_version(seal_bytes) == 4
    assert seal.raw == seal_bytes and seal.signed_bytes == seal.seal_info_bytes == info
    assert (seal.version, seal.header_id, seal.header_version, seal.vid) == (4, "ES", 4, "eseal")
    assert (seal.es_id, seal.name, seal.seal_type) == ("33010000000001", "测试专用章", 2)
    assert seal.cert_list_type == 1 and seal.cert_list == (holder.cert_der,)
    assert seal.create_date == T0.replace(microsecond=0)  # no fractions on the wire
    assert seal.valid_end == T0.replace(microsecond=0) + dt.timedelta(days=365)
    assert (seal.picture_type, seal.picture_data, seal.picture_width) == ("PNG", _png(), 40)
    assert seal.maker_cert_der == maker.cert_der
    assert seal.signature_algorithm == S.SM2_WITH_SM3 and seal.time_stamp is None
    assert S.verify_maker_signature(seal)
    assert S.cert_list_contains(seal, holder.cert_der) is True
    assert S.cert_list_contains(seal, maker.cert_der) is False
    assert info.count(b"\x18\x0f20250301083015Z") == 2  # createDate, validStart: no fractions


def test_made_seal_independent_check(made_seal: tuple[bytes, bytes], maker: Party) -> None:
    info, seal_bytes = made_seal
    tree = walk_der(seal_bytes)
    assert tree.end == len(seal_bytes)
    assert shape(tree) == SEAL_SHAPE % "04"
    first = tree.children[0]
    assert first.raw(seal_bytes) == info
    assert tree.children[1].content(seal_bytes) == maker.cert_der
    assert tree.children[2].raw(seal_bytes) == bytes.fromhex("06082a811ccf55018375")
    assert _gmalg_verify(maker.cert_der, first.raw(seal_bytes), tree.children[3], seal_bytes)
    # and the v1 construction over the same bytes is not what was signed
    v1_body = first.raw(seal_bytes) + tree.children[1].raw(seal_bytes) + tree.children[2].raw(seal_bytes)
    v1_message = b"\x30\x83" + len(v1_body).to_bytes(3, "big") + v1_body
    assert not _gmalg_verify(maker.cert_der, v1_message, tree.children[3], seal_bytes)


def test_made_ses_signature(made_seal: tuple[bytes, bytes], maker: Party, holder: Party) -> None:
    _, seal_bytes = made_seal
    digest = sm3.sm3(b"<Signature/>")
    data = S.make_ses_signature(
        seal_bytes, digest, "/Doc_0/Signs/Sign_0/Signature.xml", holder.cert_der, holder.signer, T0
    )
    sig = S.parse_ses_signature(data)
    assert S.detect_signature_version(data) == 4
    assert sig.raw == data and sig.seal.raw == seal_bytes
    assert (sig.version, sig.tbs_version, sig.data_hash) == (4, 4, digest)
    assert sig.time_info == T0.replace(microsecond=0) and sig.time_info_raw == b"20250301083015Z"
    assert sig.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert sig.signer_cert_der == holder.cert_der and sig.time_stamp is None and sig.ext_datas == ()
    assert S.verify_signer_signature(sig) and S.verify_maker_signature(sig.seal)

    tree = walk_der(data)
    seal_shape = SEAL_SHAPE % "04"
    assert shape(tree) == f"30{{30{{02,{seal_shape},18,03,16}},04,06,03}}"
    tbs = tree.children[0]
    assert tbs.raw(data) == sig.tbs_bytes
    assert tbs.children[1].raw(data) == seal_bytes  # embedded verbatim
    assert tbs.children[3].content(data) == b"\x00" + digest
    assert _gmalg_verify(holder.cert_der, tbs.raw(data), tree.children[3], data)
    assert _gmalg_verify(
        maker.cert_der, tbs.children[1].children[0].raw(data), tbs.children[1].children[3], data
    )


def test_made_signature_with_ext_datas_and_time_stamp(made_seal: tuple[bytes, bytes], holder: Party) -> None:
    _, seal_bytes = made_seal
    seen: list[bytes] = []

    def tsa(signature: bytes) -> bytes:
        seen.append(signature)
        return b"token:" + sm3.sm3(signature)

    ext = S.SealExtension("1.2.156.112600.7.1", critical=True, value=b"\x01\x02")
    data = S.make_ses_signature(seal_bytes, bytes(32), "/x", holder.cert_der, holder.signer, T0, [ext], tsa)
    sig = S.parse_ses_signature(data)
    assert seen == [sig.signature]
    assert sig.time_stamp == b"token:" + sm3.sm3(sig.signature)
    assert sig.ext_datas == (ext,) and sig.warnings == ()
    tree = walk_der(data)
    assert [c.tag for c in tree.children] == [0x30, 0x04, 0x06, 0x03, 0xA0]
    assert [c.tag for c in tree.children[0].children] == [0x02, 0x30, 0x18, 0x03, 0x16, 0xA0]
    assert shape(tree.children[0].children[5]) == "A0{30{30{06,01,04}}}"
    assert S.verify_signer_signature(sig)  # the time-stamp is outside TBS_Sign


def test_v5_seal_with_time_stamp(maker: Party, holder: Party) -> None:
    info = _seal_info(holder, version=5, vid="OFDR&WTestV5")
    data = S.make_seal(info, maker.cert_der, maker.signer, time_stamp=b"\x01\x02\x03")
    assert data.endswith(bytes.fromhex("a006030400010203"))  # ofdrw's dummy time-stamp (P12)
    seal = S.parse_seal(data)
    assert S.detect_seal_version(data) == 5
    assert (seal.version, seal.header_version, seal.time_stamp) == (5, 5, b"\x01\x02\x03")
    assert seal.signed_bytes == info and S.verify_maker_signature(seal)
    sig = S.parse_ses_signature(
        S.make_ses_signature(data, bytes(32), "/p", holder.cert_der, holder.signer, T0)
    )
    assert (sig.version, sig.tbs_version) == (5, 5) and S.verify_signer_signature(sig)
    with pytest.raises(InvalidInput):
        S.make_seal(_seal_info(holder), maker.cert_der, maker.signer, time_stamp=b"\x01")


def test_extensions_critical_flags(maker: Party, holder: Party) -> None:
    exts = [
        S.SealExtension("1.2.156.10197.6.7.2.2.1", critical=False, value=b"2.1"),
        S.SealExtension("1.2.3.4.5", critical=True, value=b"must understand"),
    ]
    info = _seal_info(holder, extensions=exts)
    assert bytes.fromhex("0101000403322e31") in info  # FALSE is written, like every producer
    seal = S.parse_seal(S.make_seal(info, maker.cert_der, maker.signer))
    assert seal.extensions == tuple(exts)
    assert seal.unknown_critical_extensions == ("1.2.3.4.5",) and seal.has_unknown_critical_extension
    assert S.verify_maker_signature(seal)

    # strict-DER producers omit the FALSE: still read, and reported as not encoded
    decoded = ses_v4.SESSealInfo.load(info)
    decoded["ext_datas"] = ses_v4.ExtensionDatas([{"extn_id": "1.2.3.9", "extn_value": b"v"}])
    strict = decoded.dump(force=True)
    seal = S.parse_seal(S.make_seal(strict, maker.cert_der, maker.signer))
    assert seal.extensions == (S.SealExtension("1.2.3.9", False, b"v", critical_encoded=False),)
    assert not seal.has_unknown_critical_extension and S.verify_maker_signature(seal)


def test_lenient_inputs_real_dimension_and_time_forms(maker: Party, holder: Party) -> None:
    decoded = ses_v4.SESSealInfo.load(_seal_info(holder))
    # REAL 40 = 5 * 2^3 (binary form) and "20.5" (decimal NR2 form)
    decoded["picture"]["width"] = ses_v4.Dimension(name="real", value=core.Real(contents=b"\x80\x03\x05"))
    decoded["picture"]["height"] = ses_v4.Dimension(name="real", value=core.Real(contents=b"\x0220.5"))
    decoded["property"]["create_date"] = core.GeneralizedTime.load(b"\x18\x1320250301163015.5+0800")
    info = decoded.dump()  # not force=True: asn1crypto cannot re-encode a REAL it never decoded
    assert b"\x09\x03\x80\x03\x05" in info and b"\x09\x05\x0220.5" in info
    seal = S.parse_seal(S.make_seal(info, maker.cert_der, maker.signer))
    assert (seal.picture_width, seal.picture_height) == (40.0, 20.5)
    assert seal.create_date == dt.datetime(2025, 3, 1, 8, 30, 15, 500000, tzinfo=UTC)
    assert "picture_dimension_real" in seal.warnings
    assert S.verify_maker_signature(seal)


def test_untagged_optional_parts_are_read(made_seal: tuple[bytes, bytes], holder: Party) -> None:
    """Other producers write TBS_Sign.extDatas and the time-stamp without the [0] (P4)."""
    _, seal_bytes = made_seal

    ext = bytes(ses_v4.ExtensionDatas([{"extn_id": "1.2.3", "critical": False, "extn_value": b"x"}]).dump())
    tbs_body = (
        b"\x02\x01\x04"
        + seal_bytes
        + bytes(core.GeneralizedTime(T0.replace(microsecond=0)).dump())
        + b"\x03\x21\x00"
        + bytes(32)
        + b"\x16\x02/x"
        + ext
    )
    tbs = tlv(0x30, tbs_body)
    signature = holder.signer.sign(tbs)
    body = (
        tbs
        + tlv(0x04, holder.cert_der)
        + bytes.fromhex("06082a811ccf55018375")
        + tlv(0x03, b"\x00" + signature)
        + tlv(0x03, b"\x00TST")
    )
    sig = S.parse_ses_signature(tlv(0x30, body))
    assert sig.ext_datas == (S.SealExtension("1.2.3", False, b"x"),)
    assert sig.time_stamp == b"TST"
    assert set(sig.warnings) == {"ext_datas_untagged", "time_stamp_untagged"}
    assert sig.tbs_bytes == tbs and S.verify_signer_signature(sig)


def test_making_refuses_bad_requests(
    made_seal: tuple[bytes, bytes], maker: Party, holder: Party, stranger: Party, seal_v1: bytes
) -> None:
    info, seal_bytes = made_seal
    with pytest.raises(InvalidInput):  # key does not match the certificate
        S.make_seal(info, maker.cert_der, holder.signer)
    with pytest.raises(NotUsable):
        S.make_ses_signature(seal_bytes, bytes(32), "/p", stranger.cert_der, stranger.signer, T0)
    unlisted = S.make_ses_signature(
        seal_bytes, bytes(32), "/p", stranger.cert_der, stranger.signer, T0, require_listed_signer=False
    )
    parsed = S.parse_ses_signature(unlisted)
    assert S.verify_signer_signature(parsed) and S.cert_list_contains(parsed.seal, stranger.cert_der) is False
    with pytest.raises(InvalidInput):
        S.make_ses_signature(seal_bytes, bytes(31), "/p", holder.cert_der, holder.signer, T0)
    with pytest.raises(InvalidInput):
        S.make_ses_signature(
            seal_bytes, bytes(32), "/p", holder.cert_der, holder.signer, T0.replace(tzinfo=None)
        )
    with pytest.raises(InvalidInput):
        S.make_ses_signature(seal_v1, bytes(32), "/p", holder.cert_der, holder.signer, T0)
    with pytest.raises(InvalidInput):
        _seal_info(holder, certs=[])
    with pytest.raises(InvalidInput):
        _seal_info(holder, es_id="印章")
    with pytest.raises(InvalidInput):
        _seal_info(holder, valid_end=T0 - dt.timedelta(days=1))
    with pytest.raises(MalformedData):
        S.make_seal(info + b"\x00", maker.cert_der, maker.signer)


class _BrokenSigner:
    """A signer whose key does not produce valid signatures (a misbehaving HSM)."""

    def __init__(self, party: Party) -> None:
        self.public_key = party.signer.public_key
        self._party = party

    def sign(self, message: bytes) -> bytes:
        return self._party.signer.sign(message + b"!")


def test_made_signatures_are_self_checked(
    made_seal: tuple[bytes, bytes], maker: Party, holder: Party
) -> None:
    info, seal_bytes = made_seal
    with pytest.raises(CryptoError):
        S.make_seal(info, maker.cert_der, _BrokenSigner(maker))
    with pytest.raises(CryptoError):
        S.make_ses_signature(seal_bytes, bytes(32), "/p", holder.cert_der, _BrokenSigner(holder), T0)
    assert sm2.verify(holder.signer.public_key, b"m", holder.signer.sign(b"m"))
