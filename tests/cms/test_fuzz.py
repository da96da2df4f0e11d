"""Hostile input to the CMS and time-stamp parsers: only typed eseal errors may come out.

Random bytes and mutations (flips, insertions, deletions, truncations, duplications) of valid CMS
signatures, time-stamp requests, responses and tokens; and the TSA's ``respond`` never raises.
Example counts are bounded so the module runs in seconds.
"""

from __future__ import annotations

import contextlib
from typing import Final

import pytest
from asn1crypto import cms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import CertificateError, CryptoError, InputTooLarge, MalformedData
from gmpki import sm3
from gmpki.cms import CmsFlavour, parse_signed_data, verify_detached
from gmpki.tsp import (
    FailureInfo,
    build_rejection,
    build_request,
    parse_request,
    parse_response,
    parse_token,
    verify_token,
)
from hsm_adapters.keystore import KeyStore
from signer.cms_signing import sign_detached_cms
from signer.tsa import TimeStampAuthority
from tests.gmpki.test_fuzz import mutated

from .conftest import PycaPki, Sm2Pki

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CryptoError covers UnsupportedAlgorithm and InvalidSignature (a mutation that still parses).
TYPED: Final = (MalformedData, InputTooLarge, CertificateError, CryptoError)
CONTENT = b"fuzzed content"


@pytest.fixture(scope="module")
def seeds(keystore: KeyStore, sm2_pki: Sm2Pki, ec_pki: PycaPki) -> dict[str, bytes]:
    tsa = TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)
    digest = sm3.sm3(CONTENT)
    request = build_request(digest, "sm3", nonce=99)
    response = tsa.respond(request)
    token = parse_response(response).token
    assert token is not None
    return {
        "sm2": sign_detached_cms(keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT, tsa=tsa),
        "sm2-rfc": sign_detached_cms(
            keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT, flavour=CmsFlavour.RFC5652
        ),
        "ecdsa": sign_detached_cms(keystore, ec_pki.key_id, [ec_pki.leaf_der], CONTENT),
        "request": request,
        "response": response,
        "rejection": build_rejection(FailureInfo.BAD_ALG, "不接受", "not accepted"),
        "token": token,
    }


def _try_cms(data: bytes) -> None:
    try:
        v = verify_detached(data, CONTENT)
    except TYPED:
        return
    # Whatever still parses reports booleans; a mutation can't forge a valid signature.
    assert isinstance(v.digest_ok, bool) and isinstance(v.signature_ok, bool)


def _try_tsp(data: bytes) -> None:
    with contextlib.suppress(*TYPED):
        parse_request(data)
    with contextlib.suppress(*TYPED):
        parse_response(data)
    with contextlib.suppress(*TYPED):
        parse_token(data)
    with contextlib.suppress(*TYPED):
        verify_token(data, CONTENT)


def test_seeds_are_valid(seeds: dict[str, bytes]) -> None:
    for name in ("sm2", "sm2-rfc", "ecdsa"):
        assert verify_detached(seeds[name], CONTENT).ok, name
    assert parse_request(seeds["request"]).nonce == 99
    assert parse_response(seeds["response"]).granted
    assert not parse_response(seeds["rejection"]).granted
    assert verify_token(seeds["token"], CONTENT, nonce=99).nonce == 99
    assert len(parse_signed_data(seeds["sm2"]).signer.timestamp_tokens) == 1


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _try_cms(data)
    _try_tsp(data)


@FUZZ
@given(data=st.data(), name=st.sampled_from(["sm2", "sm2-rfc", "ecdsa"]))
def test_mutated_cms(seeds: dict[str, bytes], data: st.DataObject, name: str) -> None:
    raw = data.draw(mutated(seeds[name]))
    try:
        v = verify_detached(raw, CONTENT)
    except TYPED:
        return
    if v.ok:
        # Only mutations outside the signed bytes can keep it valid (certificates, unsigned parts).
        original = parse_signed_data(seeds[name]).signer
        assert v.signature_value == original.signature or v.signature_algorithm == "ecdsa"


@FUZZ
@given(data=st.data(), name=st.sampled_from(["request", "response", "rejection", "token"]))
def test_mutated_time_stamp_structures(seeds: dict[str, bytes], data: st.DataObject, name: str) -> None:
    _try_tsp(data.draw(mutated(seeds[name])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tsa_respond_never_raises(
    seeds: dict[str, bytes], keystore: KeyStore, sm2_pki: Sm2Pki, data: st.DataObject
) -> None:
    tsa = TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)
    raw = data.draw(st.one_of(mutated(seeds["request"]), st.binary(max_size=200)))
    response = parse_response(tsa.respond(raw))
    if response.granted:
        assert response.token is not None
        assert (
            verify_token(response.token, digest=parse_request(raw).digest).tsa_certificate == sm2_pki.tsa.der
        )
    else:
        assert response.status == "rejection" and len(response.failure_info) == 1


def test_deep_nesting_and_oversize_are_typed() -> None:
    nested = b"\x30\x80" * 5000
    for data in (nested, b"\x30\x84\xff\xff\xff\xff", b"\x30" * (2 * 1024 * 1024)):
        with pytest.raises(TYPED):
            verify_detached(data, CONTENT)
        with pytest.raises(TYPED):
            parse_request(data)
    with pytest.raises(InputTooLarge):
        parse_request(b"\x30\x82\xff\xff" + bytes(0xFFFF))
    with pytest.raises(MalformedData):
        verify_detached(cms.ContentInfo({"content_type": "data", "content": b"x"}).dump(), CONTENT)
