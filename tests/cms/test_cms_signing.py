"""signer.cms_signing: key-store keys (SM2, P-256, RSA), signature time-stamps from the built-in TSA."""

from __future__ import annotations

import hashlib
import io

import pytest
from asn1crypto import cms

from core.errors import InvalidInput, InvalidSignature, KeyNotFound
from gmpki import sm3
from gmpki.cms import CmsAlgorithm, CmsFlavour, verify_detached
from gmpki.tsp import parse_token
from hsm_adapters.keystore import KeyStore
from signer.cms_signing import sign_detached_cms, verify_detached_cms
from signer.tsa import TimeStampAuthority

from .conftest import PycaPki, Sm2Pki

CONTENT = b"%PDF-1.7 pretend document\n" * 100


@pytest.fixture(scope="module")
def tsa(keystore: KeyStore, sm2_pki: Sm2Pki) -> TimeStampAuthority:
    return TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)


def test_sm2_with_signature_time_stamp(keystore: KeyStore, sm2_pki: Sm2Pki, tsa: TimeStampAuthority) -> None:
    der = sign_detached_cms(
        keystore, sm2_pki.signer_key_id, [sm2_pki.signer, sm2_pki.root], io.BytesIO(CONTENT), tsa=tsa
    )
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    unsigned = si["unsigned_attrs"]
    assert [a["type"].dotted for a in unsigned] == ["1.2.840.113549.1.9.16.2.14"]
    verification, stamps = verify_detached_cms(der, CONTENT, tsa_trust_anchors=[sm2_pki.root])
    assert verification.ok and verification.flavour is CmsFlavour.GBT35275
    (stamp,) = stamps
    # RFC 3161 appendix A: the token's imprint is the SM3 of the signature value.
    assert stamp.hashed_message == sm3.sm3(bytes(si["signature"].native))
    assert stamp.hash_algorithm == "sm3"
    assert stamp.tsa_certificate == sm2_pki.tsa.der
    assert verification.signing_time is not None
    assert abs((stamp.gen_time - verification.signing_time).total_seconds()) <= 2


def test_time_stamp_of_another_signature_is_refused(
    keystore: KeyStore, sm2_pki: Sm2Pki, tsa: TimeStampAuthority
) -> None:
    first = sign_detached_cms(keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT, tsa=tsa)
    second = sign_detached_cms(keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT + b"2", tsa=tsa)
    info = cms.ContentInfo.load(second)
    foreign = cms.ContentInfo.load(first)["content"]["signer_infos"][0]["unsigned_attrs"]
    info["content"]["signer_infos"][0]["unsigned_attrs"] = foreign
    transplanted = info.dump(force=True)
    assert verify_detached(transplanted, CONTENT + b"2").ok  # unsigned attributes are not signed...
    with pytest.raises(InvalidSignature):  # ...but the token covers the other signature value
        verify_detached_cms(transplanted, CONTENT + b"2")


@pytest.mark.parametrize("which", ["ec_pki", "rsa_pki"])
def test_ecdsa_and_rsa_keys_with_sha256_time_stamps(
    which: str, keystore: KeyStore, tsa: TimeStampAuthority, request: pytest.FixtureRequest
) -> None:
    pki: PycaPki = request.getfixturevalue(which)
    der = sign_detached_cms(keystore, pki.key_id, [pki.leaf_der, pki.ca_der], CONTENT, tsa=tsa)
    verification, (stamp,) = verify_detached_cms(der, CONTENT)
    assert verification.ok and verification.flavour is CmsFlavour.RFC5652
    assert stamp.hash_algorithm == "sha256"
    assert stamp.hashed_message == hashlib.sha256(verification.signature_value).digest()
    assert parse_token(verification.timestamp_tokens[0]).serial_number == stamp.serial_number


def test_algorithm_must_match_the_key(keystore: KeyStore, sm2_pki: Sm2Pki, ec_pki: PycaPki) -> None:
    with pytest.raises(InvalidInput):
        sign_detached_cms(keystore, ec_pki.key_id, [ec_pki.leaf_der], CONTENT, algorithm=CmsAlgorithm.SM2)
    with pytest.raises(InvalidInput):
        sign_detached_cms(keystore, ec_pki.key_id, [ec_pki.leaf_der], CONTENT, flavour=CmsFlavour.GBT35275)
    with pytest.raises(KeyNotFound):
        sign_detached_cms(keystore, "0" * 32, [sm2_pki.signer], CONTENT)
    der = sign_detached_cms(
        keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT, algorithm=CmsAlgorithm.SM2
    )
    assert verify_detached_cms(der, CONTENT)[0].ok
