"""SM2 detached CMS (GB/T 35275 and RFC 5652 with SM OIDs): structure, verification, tampering,
and an independent check with raw asn1crypto, hashlib/gmalg SM3 and gmalg SM2."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import gmalg
import pytest
from asn1crypto import algos, cms, core

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData
from gmpki import oids, sm2, sm3
from gmpki.cms import (
    CmsAlgorithm,
    CmsFlavour,
    UnsupportedAlgorithm,
    build_signed_data,
    digest_content,
    parse_signed_data,
    sign_detached,
    verify_detached,
)
from gmpki.signing import InMemorySigner
from hsm_adapters.keystore import KeyStore

from .conftest import Sm2Pki

CONTENT = "电子印章 detached CMS test content\n".encode() * 50


def _sign(keystore: KeyStore, pki: Sm2Pki, content: bytes = CONTENT, **kw: object) -> bytes:
    return sign_detached(
        content,
        sign=lambda m: keystore.sign(pki.signer_key_id, m),
        algorithm=CmsAlgorithm.SM2,
        certificates=[pki.signer.der, pki.root.der],
        **kw,  # type: ignore[arg-type]
    )


def _signer_info(der: bytes) -> cms.SignerInfo:
    return cms.ContentInfo.load(der)["content"]["signer_infos"][0]


def test_gbt35275_structure_is_exactly_as_specified(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    when = datetime(2026, 3, 1, 8, 30, 0, tzinfo=UTC)
    der = _sign(keystore, sm2_pki, signing_time=when)
    info = cms.ContentInfo.load(der)
    assert info["content_type"].dotted == oids.GM_SIGNED_DATA
    sd = info["content"]
    assert sd["version"].native == "v1"
    assert [a["algorithm"].dotted for a in sd["digest_algorithms"]] == [oids.SM3]
    encap = sd["encap_content_info"]
    assert encap["content_type"].dotted == oids.GM_DATA
    assert isinstance(encap["content"], core.Void)  # detached
    # certificates is a SET OF: DER orders it by encoding, so compare as a set.
    assert {c.chosen.dump() for c in sd["certificates"]} == {sm2_pki.signer.der, sm2_pki.root.der}
    si = sd["signer_infos"][0]
    assert si["sid"].chosen["serial_number"].native == sm2_pki.signer.serial
    assert si["digest_algorithm"]["algorithm"].dotted == oids.SM3
    assert si["signature_algorithm"]["algorithm"].dotted == oids.SM2_SIGN
    attrs = {a["type"].dotted: a["values"][0] for a in si["signed_attrs"]}
    assert set(attrs) == {"1.2.840.113549.1.9.3", "1.2.840.113549.1.9.4", "1.2.840.113549.1.9.5"}
    assert attrs["1.2.840.113549.1.9.3"].dotted == oids.GM_DATA
    assert attrs["1.2.840.113549.1.9.4"].native == sm3.sm3(CONTENT)
    assert attrs["1.2.840.113549.1.9.5"].native == when
    # SET OF in DER order: OpenSSL and other verifiers re-sort before hashing.
    encodings = [a.dump() for a in si["signed_attrs"]]
    assert encodings == sorted(encodings)


def test_sm2_cms_verifies_in_eseal_both_flavours_and_streams(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    for flavour, outer, sig_oid in (
        (CmsFlavour.GBT35275, oids.GM_SIGNED_DATA, oids.SM2_SIGN),
        (CmsFlavour.RFC5652, "1.2.840.113549.1.7.2", oids.SM2_WITH_SM3),
    ):
        der = _sign(keystore, sm2_pki, flavour=flavour)
        assert cms.ContentInfo.load(der)["content_type"].dotted == outer
        for content in (CONTENT, io.BytesIO(CONTENT)):
            v = verify_detached(der, content)
            assert v.ok and v.digest_ok and v.signature_ok
            assert v.flavour is flavour
            assert v.digest_algorithm == "sm3" and v.signature_algorithm == "sm2"
            assert v.signature_algorithm_oid == sig_oid
            assert v.signer_certificate == sm2_pki.signer.der
            assert "某市市场监督管理局" in v.signer_subject
            assert v.message_digest == v.computed_digest == sm3.sm3(CONTENT)
            assert set(v.certificates) == {sm2_pki.signer.der, sm2_pki.root.der}


def test_large_file_signed_and_verified_from_disk(
    keystore: KeyStore, sm2_pki: Sm2Pki, tmp_path: Path
) -> None:
    path = tmp_path / "licence.ofd"
    path.write_bytes(bytes(range(256)) * (5 * 4096 + 3))  # ~5 MiB: several read chunks
    with path.open("rb") as f:
        der = sign_detached(
            f,
            sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
            algorithm=CmsAlgorithm.SM2,
            certificates=[sm2_pki.signer.der],
        )
    with path.open("rb") as f:
        v = verify_detached(der, f)
    assert v.ok and v.message_digest == sm3.sm3(path.read_bytes())
    with path.open("r+b") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"\xff")
    with path.open("rb") as f:
        assert not verify_detached(der, f).digest_ok


def test_independent_check_with_asn1crypto_and_gmalg(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    """Re-derive everything without gmpki: raw asn1crypto, gmalg SM3 and gmalg SM2 (with Z)."""
    der = _sign(keystore, sm2_pki)
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    signed = si["signed_attrs"].dump()
    assert signed[0] == 0xA0
    message = b"\x31" + signed[1:]
    digest = {a["type"].native: a["values"][0].native for a in si["signed_attrs"]}["message_digest"]
    assert digest == _gmalg_sm3(CONTENT)
    rs = algos.DSASignature.load(si["signature"].native).native
    r, s = rs["r"], rs["s"]
    verifier = gmalg.SM2(pk=sm2_pki.signer.public_key.point, uid=b"1234567812345678")
    assert verifier.verify(message, r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    assert not verifier.verify(
        message[:-1] + bytes([message[-1] ^ 1]), r.to_bytes(32, "big"), s.to_bytes(32, "big")
    )


def _gmalg_sm3(data: bytes) -> bytes:
    h = gmalg.SM3()
    h.update(data)
    return bytes(h.value())


def test_tampered_content_fails_only_the_digest(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    der = _sign(keystore, sm2_pki)
    tampered = bytearray(CONTENT)
    tampered[100] ^= 0x01
    v = verify_detached(der, bytes(tampered))
    assert not v.digest_ok and v.signature_ok and not v.ok


def test_tampered_signed_attributes_fail_only_the_signature(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    der = bytearray(_sign(keystore, sm2_pki, signing_time=datetime(2026, 3, 1, 8, 30, tzinfo=UTC)))
    at = bytes(der).index(b"260301083000Z")  # the signingTime UTCTime, inside the signed attributes
    der[at + 11] = ord("1")  # 08:30:00 -> 08:30:01: still a valid time
    v = verify_detached(bytes(der), CONTENT)
    assert v.digest_ok and not v.signature_ok
    assert v.signing_time == datetime(2026, 3, 1, 8, 30, 1, tzinfo=UTC)


def test_tampered_signature_value_fails(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    der = _sign(keystore, sm2_pki)
    ci = cms.ContentInfo.load(der)
    si = ci["content"]["signer_infos"][0]
    r, s = sm2.decode_signature(si["signature"].native)
    si["signature"] = sm2.encode_signature(r, s ^ 1)
    v = verify_detached(ci.dump(force=True), CONTENT)
    assert v.digest_ok and not v.signature_ok


def test_wrong_certificate_same_issuer_and_serial_fails_signature(
    keystore: KeyStore, sm2_pki: Sm2Pki
) -> None:
    """A certificate swapped in with the signer's issuer and serial but another key."""
    from tests.gmpki.conftest import forge_certificate

    forged = forge_certificate(
        sm2_pki.other,
        InMemorySigner(sm2_pki.root_key),
        serial_number=sm2_pki.signer.serial,
    )
    ci = cms.ContentInfo.load(_sign(keystore, sm2_pki))
    ci["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=forged.asn1)]
    v = verify_detached(ci.dump(force=True), CONTENT)
    assert v.digest_ok and not v.signature_ok
    assert v.signer_certificate == forged.der


def test_missing_signer_certificate_is_a_certificate_error(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    ci = cms.ContentInfo.load(_sign(keystore, sm2_pki))
    ci["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=sm2_pki.other.asn1)]
    der = ci.dump(force=True)
    with pytest.raises(CertificateError):
        verify_detached(der, CONTENT)
    # The right certificate supplied out of band makes it verifiable again.
    assert verify_detached(der, CONTENT, extra_certificates=[sm2_pki.signer.der]).ok


def test_key_and_certificate_mismatch_is_refused_when_building(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    with pytest.raises(CryptoError):
        sign_detached(
            CONTENT,
            sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
            algorithm=CmsAlgorithm.SM2,
            certificates=[sm2_pki.other.der],
        )
    with pytest.raises(InvalidInput):
        sign_detached(
            CONTENT, sign=InMemorySigner(sm2_pki.other_key).sign, algorithm=CmsAlgorithm.SM2, certificates=[]
        )


def test_signature_algorithm_oid_variants_are_accepted(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    """Tools write SM2-1, SM2-with-SM3 or the bare SM2 OID; the signature covers none of them."""
    for flavour in CmsFlavour:
        for oid in (oids.SM2_SIGN, oids.SM2_WITH_SM3, oids.SM2_CURVE):
            ci = cms.ContentInfo.load(_sign(keystore, sm2_pki, flavour=flavour))
            si = ci["content"]["signer_infos"][0]
            si["signature_algorithm"] = algos.SignedDigestAlgorithm(
                {"algorithm": oid, "parameters": core.Null()}
            )
            v = verify_detached(ci.dump(force=True), CONTENT)
            assert v.ok and v.signature_algorithm_oid == oid


def test_rfc5652_outer_with_gm_inner_oids_is_read(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    """Some tools wrap GB/T 35275 SignedData in the PKCS#7 content type: read as RFC 5652."""
    der = _sign(keystore, sm2_pki)
    assert der[4:16] == bytes.fromhex("060a2a811ccf550601040202")
    swapped = der[:4] + bytes.fromhex("06092a864886f70d010702") + der[16:]
    swapped = bytes([0x30, 0x82]) + (len(swapped) - 4).to_bytes(2, "big") + swapped[4:]
    v = verify_detached(swapped, CONTENT)
    assert v.ok and v.flavour is CmsFlavour.RFC5652 and v.content_type == oids.GM_DATA


def test_no_signed_attributes_sm2_signs_the_content(sm2_pki: Sm2Pki) -> None:
    """RFC 5652 5.4 without signed attributes: the SM2 signature (with Z) covers the content."""
    ci = cms.ContentInfo.load(
        sign_detached(
            CONTENT,
            sign=InMemorySigner(sm2_pki.other_key).sign,
            algorithm=CmsAlgorithm.SM2,
            certificates=[sm2_pki.other.der],
        )
    )
    si = ci["content"]["signer_infos"][0]
    del si["signed_attrs"]
    si["signature"] = sm2.sign(sm2_pki.other_key, CONTENT)
    der = ci.dump(force=True)
    v = verify_detached(der, CONTENT)
    assert v.ok and v.message_digest is None and v.signing_time is None
    assert not verify_detached(der, CONTENT + b"!").ok


def test_signed_attributes_verified_as_read_not_re_encoded(sm2_pki: Sm2Pki) -> None:
    """An unsorted SET OF (not DER) signed as-is verifies; a DER re-encoding of it would not."""
    key = sm2_pki.other_key
    der = sign_detached(
        CONTENT, sign=InMemorySigner(key).sign, algorithm=CmsAlgorithm.SM2, certificates=[sm2_pki.other.der]
    )
    si = _signer_info(der)
    attrs = [a.dump() for a in si["signed_attrs"]]
    original = si["signed_attrs"].dump()
    old_signature = bytes(si["signature"].native)
    # Reordering keeps the length, so the bytes can be swapped in place (asn1crypto would re-sort).
    unsorted = original[: len(original) - sum(map(len, attrs))] + b"".join(reversed(attrs))
    as_read = b"\x31" + unsorted[1:]
    canonical = b"\x31" + original[1:]
    assert as_read != canonical
    while len(signature := sm2.sign(key, as_read)) != len(old_signature):
        pass
    patched = der.replace(original, unsorted).replace(old_signature, signature)
    assert parse_signed_data(patched).signer.signed_attributes == as_read
    assert verify_detached(patched, CONTENT).ok
    assert not sm2.verify(key.public_key, canonical, signature)


def test_build_rejects_bad_arguments(sm2_pki: Sm2Pki) -> None:
    signer = InMemorySigner(sm2_pki.other_key)
    with pytest.raises(InvalidInput):
        build_signed_data(
            sign=signer.sign,
            algorithm=CmsAlgorithm.SM2,
            certificates=[sm2_pki.other.der],
            content_digest=b"short",
        )
    with pytest.raises(InvalidInput):
        build_signed_data(
            sign=signer.sign,
            algorithm=CmsAlgorithm.EC_P256,
            certificates=[sm2_pki.other.der],
            content_digest=bytes(32),
            flavour=CmsFlavour.GBT35275,
        )
    with pytest.raises(UnsupportedAlgorithm):
        digest_content(b"x", "1.2.840.113549.2.5")


def test_embedded_content_is_not_detached(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    der = build_signed_data(
        sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
        algorithm=CmsAlgorithm.SM2,
        certificates=[sm2_pki.signer.der],
        content_digest=sm3.sm3(CONTENT),
        econtent=CONTENT,
    )
    with pytest.raises(MalformedData):
        verify_detached(der, CONTENT)
    from gmpki.cms import verify_signed_data

    assert verify_signed_data(parse_signed_data(der)).ok
