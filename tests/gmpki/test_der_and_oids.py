"""The safe DER loader and the SM OID registration; hostile input to every gmpki parser."""

from __future__ import annotations

import importlib

import pytest
from asn1crypto import algos, cms, core, keys
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509

from core.errors import InputTooLarge, MalformedData
from gmpki import oids
from gmpki.crl import load_crl
from gmpki.der import asn1_guard, load_der, pem_blocks
from gmpki.pkcs12 import load_pkcs12
from gmpki.x509 import load_certificate
from tests.gmpki.conftest import Pki


# --- OIDs -------------------------------------------------------------------------------------------
def test_registration_is_idempotent_and_complete() -> None:
    oids.register()
    importlib.reload(oids)  # a second import-time registration must not fail or duplicate
    oids.register()
    assert keys.NamedCurve.map(oids.SM2_CURVE) == "sm2p256v1"
    assert keys.NamedCurve.unmap("sm2p256v1") == oids.SM2_CURVE
    assert algos.DigestAlgorithmId.map(oids.SM3) == "sm3"
    assert algos.SignedDigestAlgorithmId.unmap("sm2sm3") == oids.SM2_WITH_SM3
    assert cms.ContentType.map(oids.GM_SIGNED_DATA) == "sm2_signed_data"
    assert cms.ContentType.map(oids.GM_KEY_AGREEMENT_INFO) == "sm2_key_agreement_info"


def test_signature_and_hash_algo_answer_for_sm2_and_still_for_others() -> None:
    sm = algos.SignedDigestAlgorithm({"algorithm": "sm2sm3"})
    assert (sm.signature_algo, sm.hash_algo) == ("sm2", "sm3")
    sm1 = algos.SignedDigestAlgorithm({"algorithm": oids.NAME_SM2_SIGN})
    assert (sm1.signature_algo, sm1.hash_algo) == ("sm2", "sm3")
    rsa = algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
    assert (rsa.signature_algo, rsa.hash_algo) == ("rsassa_pkcs1v15", "sha256")
    with pytest.raises(ValueError):
        _ = algos.SignedDigestAlgorithm({"algorithm": "1.2.3.4"}).signature_algo


def test_gm_signed_data_content_info_parses_as_signed_data() -> None:
    inner = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sm3"}],
            "encap_content_info": {"content_type": "sm2_data"},
            "signer_infos": [],
        }
    )
    info = cms.ContentInfo({"content_type": "sm2_signed_data", "content": inner})
    again = load_der(cms.ContentInfo, info.dump())
    assert again["content_type"].dotted == oids.GM_SIGNED_DATA
    assert isinstance(again["content"], cms.SignedData)
    assert again["content"]["digest_algorithms"][0]["algorithm"].dotted == oids.SM3


# --- the loader -------------------------------------------------------------------------------------
def test_load_der_accepts_exact_input(pki: Pki) -> None:
    cert = load_der(asn1_x509.Certificate, pki.root.cert.der)
    assert cert.dump() == pki.root.cert.der


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedData),
        (b"\x30", MalformedData),
        (b"\x30\x03\x02\x01", MalformedData),  # truncated
        (b"\x30\x00\x00", MalformedData),  # trailing byte
        (b"\x04\x00", MalformedData),  # wrong tag (OCTET STRING for SEQUENCE)
        (b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01", MalformedData),  # declared 2 GiB
        (b"\x30\x89" + b"\xff" * 9, MalformedData),  # length of length beyond reason
        (b"\x30\x80" * 2000, MalformedData),  # deep nesting of indefinite lengths
        (b"\x30" * 10 + b"\x00" * 10, MalformedData),
    ],
)
def test_load_der_rejects_hostile_bytes(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_der(asn1_x509.Certificate, data)


def test_load_der_size_limit_and_type() -> None:
    with pytest.raises(InputTooLarge):
        load_der(core.OctetString, b"\x04\x05hello", max_size=6)
    assert load_der(core.OctetString, b"\x04\x05hello", max_size=7).native == b"hello"
    with pytest.raises(MalformedData):
        load_der(core.OctetString, "\x04\x00")  # type: ignore[arg-type]


def test_lazy_errors_surface_at_load(pki: Pki) -> None:
    """A broken extension value deep inside: asn1crypto would only fail on access; we fail at load."""
    der = bytearray(pki.department.cert.der)
    ski = pki.department.cert.subject_key_id
    assert ski is not None
    pos = bytes(der).index(b"\x04\x14" + ski)  # OCTET STRING inside the SKI extension value
    der[pos] = 0x02  # now an INTEGER where an OCTET STRING is expected
    lazy = asn1_x509.Certificate.load(bytes(der))  # asn1crypto itself accepts it ...
    assert lazy["tbs_certificate"]["serial_number"].native == pki.department.cert.serial
    with pytest.raises(MalformedData):  # ... the front door does not
        load_der(asn1_x509.Certificate, bytes(der))


def test_guard_maps_library_errors() -> None:
    with pytest.raises(MalformedData) as info, asn1_guard("测试", "test"):
        raise ValueError("x" * 500)
    assert "test" in info.value.message_en and len(info.value.message_en) < 300


def test_pem_blocks() -> None:
    with pytest.raises(MalformedData):
        pem_blocks(b"no armour here", labels=("CERTIFICATE",))
    with pytest.raises(MalformedData):
        pem_blocks(b"-----BEGIN CERTIFICATE-----\nA!A\n-----END CERTIFICATE-----\n", labels=("CERTIFICATE",))
    one = b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"
    assert pem_blocks(one, labels=("X509 CRL",)) == [b"\x30\x00"]
    with pytest.raises(InputTooLarge):
        pem_blocks(one * 3, labels=("X509 CRL",), max_blocks=2)


# --- each entry point on hostile variants of valid input ---------------------------------------------
def _variants(good: bytes) -> list[bytes]:
    return [
        good[:-1],
        good[: len(good) // 2],
        good + b"\x00",
        good + good,
        b"\x31" + good[1:],  # SET for SEQUENCE
        good[:1] + b"\x84\xff\xff\xff\xff" + good[4:],  # absurd declared length
        good[:1] + b"\x80" + good[4:],  # indefinite length without end-of-contents
    ]


def test_certificate_entry_point_on_hostile_variants(pki: Pki) -> None:
    for bad in _variants(pki.maker.cert.der):
        with pytest.raises(MalformedData):
            load_certificate(bad)
    with pytest.raises(InputTooLarge):
        load_certificate(pki.maker.cert.der, max_size=100)


def test_crl_entry_point_on_hostile_variants(pki: Pki) -> None:
    from datetime import timedelta

    from gmpki.crl import RevokedCertificate, build_crl

    crl = build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=1),
        crl_number=1,
        revoked=[RevokedCertificate(5, pki.now, "superseded")],
    )
    assert load_der(asn1_crl.CertificateList, crl.der).dump() == crl.der
    for bad in _variants(crl.der):
        with pytest.raises(MalformedData):
            load_crl(bad)


def test_pkcs12_entry_point_on_hostile_variants(pki: Pki) -> None:
    for bad in [b"", b"\x30\x03\x02\x01\x03", b"\x30\x00", pki.root.cert.der]:
        with pytest.raises(MalformedData):
            load_pkcs12(bad, "x")
