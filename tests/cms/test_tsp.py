"""RFC 3161 with the built-in SM2 TSA (no HTTP): requests from OpenSSL, tokens, rejections, checks.

``openssl ts -verify`` cannot verify the SM2 tokens on OpenSSL 3.0 (asserted below): PKCS7
signature verification there hands SM3(signed attributes) to the SM2 key with no Z pre-hash, and
the chain check uses an empty SM2 ID. ``openssl ts -reply -text`` parses them fine.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import algos, cms, tsp

from core.errors import CertificateError, ConfigurationError, InvalidSignature, MalformedData
from gmpki import oids, sm3
from gmpki.cms import CmsAlgorithm, parse_signed_data
from gmpki.path_validation import PathValidationError
from gmpki.signing import InMemorySigner
from gmpki.tsp import (
    FailureInfo,
    TimestampRejected,
    build_request,
    build_token,
    build_tst_info,
    parse_request,
    parse_response,
    parse_token,
    verify_token,
)
from hsm_adapters.keystore import KeyStore
from signer.tsa import DEFAULT_POLICY_OID, SerialNumbers, TimeStampAuthority

from .conftest import Sm2Pki, run_openssl

DATA = "需要时间戳的数据 data to time-stamp\n".encode()


@pytest.fixture(scope="module")
def tsa(keystore: KeyStore, sm2_pki: Sm2Pki) -> TimeStampAuthority:
    return TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)


def _openssl_query(openssl: str, tmp_path: Path, digest: str, *extra: str) -> bytes:
    (tmp_path / "data.bin").write_bytes(DATA)
    res = run_openssl(
        openssl,
        "ts",
        "-query",
        "-data",
        tmp_path / "data.bin",
        f"-{digest}",
        *extra,
        "-out",
        tmp_path / "q.tsq",
    )
    assert res.returncode == 0, res.stderr
    return (tmp_path / "q.tsq").read_bytes()


@pytest.mark.parametrize("digest", ["sha256", "sm3"])
def test_openssl_query_gets_a_token_that_verifies(
    digest: str, openssl: str, tsa: TimeStampAuthority, sm2_pki: Sm2Pki, tmp_path: Path
) -> None:
    query = _openssl_query(openssl, tmp_path, digest, "-cert")
    request = parse_request(query)
    assert request.cert_req and request.nonce is not None
    before = datetime.now(UTC).replace(microsecond=0)
    response = parse_response(tsa.respond(query))
    assert response.granted and response.status == "granted" and response.token is not None
    result = verify_token(response.token, DATA, nonce=request.nonce, trust_anchors=[sm2_pki.root])
    assert result.nonce == request.nonce
    assert result.hash_algorithm == digest
    assert result.hashed_message == (sm3.sm3(DATA) if digest == "sm3" else hashlib.sha256(DATA).digest())
    assert before <= result.gen_time <= datetime.now(UTC)
    assert result.accuracy == timedelta(seconds=1)
    assert result.policy == DEFAULT_POLICY_OID
    assert result.tsa_certificate == sm2_pki.tsa.der
    assert result.signature_algorithm == "sm2"
    # RFC 3161: the imprint is echoed byte for byte, the token is id-signedData with TSTInfo.
    info = parse_token(response.token).tst_info
    assert info["message_imprint"].dump() == request.message_imprint_der
    assert cms.ContentInfo.load(response.token)["content_type"].dotted == "1.2.840.113549.1.7.2"
    # openssl parses the reply and shows the same facts.
    (tmp_path / "r.tsr").write_bytes(tsa.respond(query))
    text = run_openssl(openssl, "ts", "-reply", "-in", tmp_path / "r.tsr", "-text")
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "Status: Granted." in out
    assert f"Nonce: 0x{request.nonce:X}" in out.replace("0x0", "0x")
    assert f"Hash Algorithm: {digest}" in out
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in out
    assert "Accuracy: 0x01 seconds" in out


def test_openssl_30_ts_verify_accepts_sm2_tokens_only_without_z(
    openssl: str, keystore: KeyStore, tsa: TimeStampAuthority, sm2_pki: Sm2Pki, tmp_path: Path
) -> None:
    """Everything but the Z pre-hash is what ``openssl ts -verify`` expects.

    OpenSSL 3.0 verifies the token's SM2 signature over SM3(signed attributes) with no Z (PKCS7
    code hands the plain digest to the key), and its X.509 chain check uses an empty SM2 ID.
    Trusting the TSA certificate directly (``-partial_chain``) skips the chain check; the real
    token then fails only the signature, and the same token re-signed without Z passes entirely:
    imprint, nonce, ESS signingCertificateV2 (SM3) and the TSA certificate's EKU all check out.
    """
    query = _openssl_query(openssl, tmp_path, "sm3", "-cert")
    reply = tsa.respond(query)
    (tmp_path / "r.tsr").write_bytes(reply)
    (tmp_path / "root.pem").write_text(sm2_pki.root.to_pem())
    (tmp_path / "tsa.pem").write_text(sm2_pki.tsa.to_pem())

    def ts_verify(*trust: str | Path) -> subprocess.CompletedProcess[bytes]:
        return run_openssl(
            openssl, "ts", "-verify", "-in", tmp_path / "r.tsr", "-queryfile", tmp_path / "q.tsq", *trust
        )

    chained = ts_verify("-CAfile", tmp_path / "root.pem")
    if chained.returncode == 0:  # an OpenSSL with GB/T SM2 semantics: plain interoperability
        return
    version = subprocess.run([openssl, "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(("OpenSSL 3.0", "OpenSSL 3.1")), chained.stderr
    assert b"certificate signature failure" in chained.stderr
    direct = ts_verify("-CAfile", tmp_path / "tsa.pem", "-partial_chain")
    assert direct.returncode != 0 and b"PKCS7_signatureVerify:signature failure" in direct.stderr

    response = tsp.TimeStampResp.load(reply)
    si = response["time_stamp_token"]["content"]["signer_infos"][0]
    attributes = b"\x31" + si["signed_attrs"].dump()[1:]
    si["signature"] = keystore.sign_digest(sm2_pki.tsa_key_id, sm3.sm3(attributes))  # no Z
    (tmp_path / "r.tsr").write_bytes(response.dump(force=True))
    without_z = ts_verify("-CAfile", tmp_path / "tsa.pem", "-partial_chain")
    assert without_z.returncode == 0, without_z.stderr
    assert b"Verification: OK" in without_z.stdout
    # eseal holds to GB/T 32918 / 35276 (Z with the default ID) and refuses that signature.
    token = response["time_stamp_token"].dump()
    with pytest.raises(InvalidSignature):
        verify_token(token, DATA)


def test_nonce_echo_serials_unique_and_increasing(tsa: TimeStampAuthority) -> None:
    digest = sm3.sm3(DATA)
    serials = []
    for nonce in (1, 2**63 + 5, 7):
        token = tsa.timestamp(digest, "sm3", nonce=nonce)
        result = verify_token(token, digest=digest, nonce=nonce)
        serials.append(result.serial_number)
    assert serials == sorted(serials) and len(set(serials)) == 3
    with pytest.raises(InvalidSignature):
        verify_token(tsa.timestamp(digest, nonce=8), digest=digest, nonce=9)


def test_serial_numbers_are_strictly_increasing_and_instance_tagged() -> None:
    a, b = SerialNumbers(instance_id=1), SerialNumbers(instance_id=2)
    values = [a.next() for _ in range(1000)]
    assert all(x < y for x, y in itertools.pairwise(values))
    assert {v & 0xFFFFFFFF for v in values} == {1}
    assert not set(values) & {b.next() for _ in range(1000)}
    assert max(values).bit_length() < 160


def _rejection(tsa: TimeStampAuthority, query: bytes) -> tuple[str, frozenset[str], tuple[str, ...]]:
    response = parse_response(tsa.respond(query))
    assert not response.granted and response.token is None
    return response.status, response.failure_info, response.status_text


def test_md5_is_rejected_bad_alg(openssl: str, tsa: TimeStampAuthority, tmp_path: Path) -> None:
    status, failure, text = _rejection(tsa, _openssl_query(openssl, tmp_path, "md5", "-cert"))
    assert status == "rejection" and failure == {"bad_alg"}
    assert "md5" in text[1]
    (tmp_path / "r.tsr").write_bytes(tsa.respond((tmp_path / "q.tsq").read_bytes()))
    shown = run_openssl(openssl, "ts", "-reply", "-in", tmp_path / "r.tsr", "-text")
    assert shown.returncode == 0 and b"Status: Rejected" in shown.stdout
    assert b"unrecognized or unsupported algorithm" in shown.stdout


def test_sha1_and_unknown_hashes_are_rejected_bad_alg(tsa: TimeStampAuthority) -> None:
    for oid in ("1.3.14.3.2.26", "1.2.3.4.5"):
        imprint = tsp.MessageImprint(
            {"hash_algorithm": algos.DigestAlgorithm({"algorithm": oid}), "hashed_message": bytes(20)}
        )
        query = tsp.TimeStampReq({"version": "v1", "message_imprint": imprint}).dump()
        assert _rejection(tsa, query)[1] == {"bad_alg"}


@pytest.mark.parametrize(
    "query", [b"", b"garbage", b"\x30\x03\x02\x01\x01", bytes.fromhex("3080") + b"\x00" * 10, b"\x30" * 70000]
)
def test_garbage_is_rejected_bad_data_format(tsa: TimeStampAuthority, query: bytes) -> None:
    status, failure, _text = _rejection(tsa, query)
    assert status == "rejection" and failure == {"bad_data_format"}


def test_wrong_digest_length_policy_and_extensions_are_rejected(tsa: TimeStampAuthority) -> None:
    short = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(31)},
        }
    ).dump()
    assert _rejection(tsa, short)[1] == {"bad_data_format"}
    other_policy = build_request(sm3.sm3(DATA), "sm3", policy="1.2.3.4")
    assert _rejection(tsa, other_policy)[1] == {"unaccepted_policy"}
    assert parse_response(tsa.respond(build_request(sm3.sm3(DATA), "sm3", policy=DEFAULT_POLICY_OID))).granted
    req = tsp.TimeStampReq.load(build_request(sm3.sm3(DATA), "sm3"))
    req["extensions"] = [{"extn_id": "1.2.3.4.5.6", "critical": False, "extn_value": b"\x05\x00"}]
    assert _rejection(tsa, req.dump(force=True))[1] == {"unaccepted_extensions"}
    v2 = tsp.TimeStampReq.load(build_request(sm3.sm3(DATA), "sm3"))
    v2["version"] = "v2"
    assert _rejection(tsa, v2.dump(force=True))[1] == {"bad_data_format"}


def test_cert_req_false_leaves_the_certificate_out(tsa: TimeStampAuthority, sm2_pki: Sm2Pki) -> None:
    digest = hashlib.sha256(DATA).digest()
    response = parse_response(tsa.respond(build_request(digest, "sha256", nonce=3, cert_req=False)))
    assert response.token is not None
    assert len(cms.ContentInfo.load(response.token)["content"]["certificates"]) == 0
    with pytest.raises(CertificateError):
        verify_token(response.token, digest=digest)
    assert verify_token(response.token, digest=digest, certificates=[sm2_pki.tsa.der]).nonce == 3


def test_token_tampering_and_mismatches_fail(tsa: TimeStampAuthority, sm2_pki: Sm2Pki) -> None:
    digest = sm3.sm3(DATA)
    token = tsa.timestamp(digest)
    with pytest.raises(InvalidSignature):
        verify_token(token, DATA + b"x")
    with pytest.raises(InvalidSignature):  # the imprint digest itself edited: messageDigest fails
        verify_token(token.replace(digest, bytes(32)), digest=bytes(32))
    # genTime is inside TSTInfo: changing it breaks the messageDigest check.
    gen = parse_token(token).gen_time.strftime("%Y%m%d%H%M%SZ").encode()
    later = (parse_token(token).gen_time + timedelta(seconds=1)).strftime("%Y%m%d%H%M%SZ").encode()
    with pytest.raises(InvalidSignature, match="TSTInfo"):
        verify_token(token.replace(gen, later), digest=digest)
    # A token from a TSA whose root is not trusted fails path validation.
    with pytest.raises(PathValidationError):
        verify_token(token, digest=digest, trust_anchors=[sm2_pki.other])


def test_token_by_a_certificate_without_timestamping_eku_fails(
    keystore: KeyStore, sm2_pki: Sm2Pki, tsa: TimeStampAuthority
) -> None:
    digest = sm3.sm3(DATA)
    request = parse_request(build_request(digest, "sm3"))
    tst = build_tst_info(
        policy=DEFAULT_POLICY_OID,
        message_imprint_der=request.message_imprint_der,
        serial_number=5,
        gen_time=datetime.now(UTC),
    )
    token = build_token(
        tst,
        sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
        algorithm=CmsAlgorithm.SM2,
        tsa_certificate=sm2_pki.signer.der,
    )
    assert parse_signed_data(token).signer.certificate.dump() == sm2_pki.signer.der
    with pytest.raises(CertificateError, match="extendedKeyUsage"):
        verify_token(token, digest=digest)
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(keystore, sm2_pki.signer, sm2_pki.signer_key_id)

    # timeStamping present but not critical, or not the sole purpose: refused too (RFC 3161 2.3).
    from asn1crypto import x509 as asn1_x509

    from tests.gmpki.conftest import forge_certificate, replace_extension

    root_signer = InMemorySigner(sm2_pki.root_key)
    for purposes, critical in (
        ([oids.EKU_TIME_STAMPING], False),
        ([oids.EKU_TIME_STAMPING, "code_signing"], True),
    ):
        eku = asn1_x509.ExtKeyUsageSyntax(purposes)
        cert = forge_certificate(
            sm2_pki.other,
            root_signer,
            extensions=replace_extension(sm2_pki.other, "extended_key_usage", eku, critical),
        )
        bad = build_token(
            tst,
            sign=InMemorySigner(sm2_pki.other_key).sign,
            algorithm=CmsAlgorithm.SM2,
            tsa_certificate=cert.der,
        )
        with pytest.raises(CertificateError, match="critical with timeStamping as its only purpose"):
            verify_token(bad, digest=digest)


def test_token_without_or_with_a_wrong_ess_binding_is_refused(
    keystore: KeyStore, tsa: TimeStampAuthority, sm2_pki: Sm2Pki
) -> None:
    digest = sm3.sm3(DATA)
    for change in ("drop", "other-cert"):
        info = cms.ContentInfo.load(tsa.timestamp(digest))
        si = info["content"]["signer_infos"][0]
        attrs = list(si["signed_attrs"])
        if change == "drop":
            attrs = [a for a in attrs if a["type"].dotted != "1.2.840.113549.1.9.16.2.47"]
        else:
            for a in attrs:
                if a["type"].dotted == "1.2.840.113549.1.9.16.2.47":
                    a["values"][0]["certs"][0]["cert_hash"] = sm3.sm3(sm2_pki.other.der)
        si["signed_attrs"] = cms.CMSAttributes([cms.CMSAttribute.load(a.dump(force=True)) for a in attrs])
        # Re-signed by the TSA key, so that only the ESS binding is wrong.
        si["signature"] = keystore.sign(sm2_pki.tsa_key_id, b"\x31" + si["signed_attrs"].dump(force=True)[1:])
        token = info.dump(force=True)
        assert parse_signed_data(token).signer.signed_attributes is not None
        error = MalformedData if change == "drop" else InvalidSignature
        with pytest.raises(error, match="ESS"):
            verify_token(token, digest=digest)


def test_expired_tsa_certificate_answers_system_failure(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    late = TimeStampAuthority(
        keystore,
        sm2_pki.tsa,
        sm2_pki.tsa_key_id,
        clock=lambda: sm2_pki.tsa.not_after + timedelta(days=1),
    )
    query = build_request(sm3.sm3(DATA))
    assert _rejection(late, query)[1] == {"system_failure"}
    with pytest.raises(TimestampRejected) as info:
        late.issue(parse_request(query))
    assert info.value.failure is FailureInfo.SYSTEM_FAILURE


def test_sm3_and_sha256_are_the_only_accepted_hashes(tsa: TimeStampAuthority) -> None:
    for name, size in (("sha384", 48), ("sha512", 64)):
        assert _rejection(tsa, build_request(bytes(size), name))[1] == {"bad_alg"}
    assert oids.SM3 in {parse_request(build_request(bytes(32), "sm3")).hash_algorithm}
