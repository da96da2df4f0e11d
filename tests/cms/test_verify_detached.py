"""The verification engine on a CMS SignedData with its detached data (``verify.detached_cms``).

CMS made by eseal's signer (SM2 in both flavours, ECDSA P-256, RSA) and by the OpenSSL command line
are verified through :func:`verify.verify_bytes`, the same entry point as every other format, and
judged check by check: a flipped data byte is the data hash's failure alone, a flipped signature
byte the signature's alone, a missing data file or anchor leaves the verdict indeterminate.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.errors import ConfigurationError, EsealError
from gmpki.cms import CmsAlgorithm, CmsFlavour, build_signed_data, digest_content, parse_signed_data
from gmpki.signing import InMemorySigner
from hsm_adapters.keystore import KeyStore
from signer.cms_signing import sign_detached_cms
from signer.tsa import TimeStampAuthority
from verify import (
    DocumentReport,
    FileTrustSource,
    Indication,
    Result,
    SubIndication,
    TrustSource,
    UnusableInput,
    detect,
    verify_bytes,
)
from verify.detached_cms import CMS_CHECKS
from verify.engine import InputKind
from verify.interop import InteropTrustSource

from .conftest import PycaPki, Sm2Pki, run_openssl

DATA = "行政许可决定书：准予许可。\n".encode() * 50 + bytes(range(256))
# Every check of a good signature without time-stamp or CRL: the two with nothing to look at skip.
BASELINE = {
    "format.parse": Result.PASSED,
    "signer.signature": Result.PASSED,
    "signer.certificate_validity": Result.PASSED,
    "signer.certificate_chain": Result.PASSED,
    "signer.certificate_revocation": Result.SKIPPED,
    "document.data_hash": Result.PASSED,
    "timestamp.token": Result.SKIPPED,
}
KINDS = ("sm2", "sm2-rfc5652", "ecdsa", "rsa")


def _sign(kind: str, keystore: KeyStore, sm2_pki: Sm2Pki, ec_pki: PycaPki, rsa_pki: PycaPki) -> bytes:
    if kind.startswith("sm2"):
        flavour = CmsFlavour.RFC5652 if kind == "sm2-rfc5652" else None
        chain: list[bytes] = [sm2_pki.signer.der, sm2_pki.root.der]
        return sign_detached_cms(keystore, sm2_pki.signer_key_id, chain, io.BytesIO(DATA), flavour=flavour)
    pki = ec_pki if kind == "ecdsa" else rsa_pki
    return sign_detached_cms(keystore, pki.key_id, [pki.leaf_der, pki.ca_der], DATA)


def _trust(kind: str, sm2_pki: Sm2Pki, ec_pki: PycaPki, rsa_pki: PycaPki) -> TrustSource:
    if kind.startswith("sm2"):
        return FileTrustSource((sm2_pki.root,))
    return InteropTrustSource(None, ((ec_pki if kind == "ecdsa" else rsa_pki).ca_der,))


@pytest.fixture(scope="module")
def signed(keystore: KeyStore, sm2_pki: Sm2Pki, ec_pki: PycaPki, rsa_pki: PycaPki) -> dict[str, bytes]:
    return {kind: _sign(kind, keystore, sm2_pki, ec_pki, rsa_pki) for kind in KINDS}


@pytest.fixture(scope="module")
def trusts(sm2_pki: Sm2Pki, ec_pki: PycaPki, rsa_pki: PycaPki) -> dict[str, TrustSource]:
    return {kind: _trust(kind, sm2_pki, ec_pki, rsa_pki) for kind in KINDS}


def _only_changes(report: DocumentReport, **changed: Result) -> None:
    (sig,) = report.signatures
    expected = {**BASELINE, **{k.replace("__", "."): v for k, v in changed.items()}}
    assert sig.results() == expected, [c.to_json() for c in sig.checks]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("kind", KINDS)
def test_eseal_cms_verifies(kind: str, signed: dict[str, bytes], trusts: dict[str, TrustSource]) -> None:
    cms = signed[kind]
    assert detect(cms) is InputKind.CMS
    report = verify_bytes(cms, detached_data=DATA, trust=trusts[kind])
    assert (report.format, report.signed, report.indication, report.sub_indication) == (
        "cms",
        True,
        Indication.PASSED,
        None,
    )
    _only_changes(report)
    (sig,) = report.signatures
    assert [c.id for c in sig.checks] == list(CMS_CHECKS)
    assert (sig.type, sig.seal, sig.version) == ("sign", None, None)
    assert sig.signer is not None and sig.signing_time is not None
    digest = "SM3" if kind.startswith("sm2") else "SHA-256"
    assert digest in sig.check("document.data_hash").message_en
    standard = "GB/T 35275" if kind == "sm2" else "RFC 5652"
    assert standard in sig.check("format.parse").message_en
    report.dumps()


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_data_byte_fails_the_data_hash_only(
    kind: str, signed: dict[str, bytes], trusts: dict[str, TrustSource]
) -> None:
    report = verify_bytes(signed[kind], detached_data=_flip(DATA, len(DATA) // 2), trust=trusts[kind])
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    _only_changes(report, document__data_hash=Result.FAILED)
    assert "messageDigest" in report.signatures[0].check("document.data_hash").message_en


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_signature_byte_fails_the_signature_only(
    kind: str, signed: dict[str, bytes], trusts: dict[str, TrustSource]
) -> None:
    cms = signed[kind]
    value = parse_signed_data(cms).signer.signature
    at = cms.index(value) + len(value) - 1  # the last byte of s (SM2, ECDSA) or of the RSA block
    report = verify_bytes(_flip(cms, at), detached_data=DATA, trust=trusts[kind])
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.SIG_CRYPTO_FAILURE)
    _only_changes(report, signer__signature=Result.FAILED)


@pytest.mark.parametrize("kind", KINDS)
def test_without_data_the_data_hash_is_indeterminate(
    kind: str, signed: dict[str, bytes], trusts: dict[str, TrustSource]
) -> None:
    report = verify_bytes(signed[kind], trust=trusts[kind])
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.SIGNED_DATA_NOT_FOUND,
    )
    # The signature over the signed attributes is still checked; what it covers is not.
    _only_changes(report, document__data_hash=Result.INDETERMINATE)
    message = report.signatures[0].check("document.data_hash").message_en
    assert "supply the signed data" in message and "--data" in message


@pytest.mark.parametrize("kind", KINDS)
def test_without_an_anchor_the_chain_is_indeterminate(
    kind: str, signed: dict[str, bytes], sm2_pki: Sm2Pki, ec_pki: PycaPki
) -> None:
    # No trust at all, and trust of the other family only (SM2 root for ECDSA/RSA and vice versa).
    other: TrustSource = (
        InteropTrustSource(None, (ec_pki.ca_der,))
        if kind.startswith("sm2")
        else FileTrustSource((sm2_pki.root,))
    )
    for trust in (None, other):
        report = verify_bytes(signed[kind], detached_data=DATA, trust=trust)
        assert (report.indication, report.sub_indication) == (
            Indication.INDETERMINATE,
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
        _only_changes(report, signer__certificate_chain=Result.INDETERMINATE)


def test_an_unrelated_anchor_of_the_same_family_does_not_chain(
    signed: dict[str, bytes], ec_pki: PycaPki, rsa_pki: PycaPki
) -> None:
    unrelated = InteropTrustSource(None, (rsa_pki.ca_der,))
    report = verify_bytes(signed["ecdsa"], detached_data=DATA, trust=unrelated)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )


def test_time_stamped_sm2_cms(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    tsa = TimeStampAuthority(keystore, sm2_pki.tsa, sm2_pki.tsa_key_id)
    cms = sign_detached_cms(keystore, sm2_pki.signer_key_id, [sm2_pki.signer, sm2_pki.root], DATA, tsa=tsa)
    report = verify_bytes(cms, detached_data=DATA, trust=FileTrustSource((sm2_pki.root,)))
    assert report.indication is Indication.PASSED
    _only_changes(report, timestamp__token=Result.PASSED)
    (sig,) = report.signatures
    assert "time-stamp time" in sig.check("signer.certificate_validity").message_en
    # The certificate is judged at the proven time, so a far later validation changes nothing.
    later = verify_bytes(
        cms,
        detached_data=DATA,
        trust=FileTrustSource((sm2_pki.root,)),
        at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3650),
    )
    assert later.indication is Indication.PASSED
    # Without an anchor for its TSA the token proves nothing (and the chain is unknown anyway).
    untrusted = verify_bytes(cms, detached_data=DATA)
    assert untrusted.signatures[0].check("timestamp.token").result is Result.INDETERMINATE


def test_sm2_crl_revocation(sm2_pki: Sm2Pki, signed: dict[str, bytes]) -> None:
    from gmpki.crl import RevokedCertificate, build_crl

    def crl(*revoked: RevokedCertificate) -> FileTrustSource:
        now = dt.datetime.now(dt.UTC)
        made = build_crl(
            signer=InMemorySigner(sm2_pki.root_key),
            issuer=sm2_pki.root,
            this_update=now,
            next_update=now + dt.timedelta(days=1),
            revoked=revoked,
            crl_number=1,
        )
        return FileTrustSource((sm2_pki.root,), (), (made,))

    report = verify_bytes(signed["sm2"], detached_data=DATA, trust=crl())
    _only_changes(report, signer__certificate_revocation=Result.PASSED)
    # Revoked before the signing time.
    gone = RevokedCertificate(sm2_pki.signer.serial, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    report = verify_bytes(signed["sm2"], detached_data=DATA, trust=crl(gone))
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.REVOKED)


def test_cms_embedding_its_content(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    digest = digest_content(DATA)
    cms = build_signed_data(
        sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
        algorithm=CmsAlgorithm.SM2,
        certificates=[sm2_pki.signer.der],
        content_digest=digest,
        econtent=DATA,
    )
    trust = FileTrustSource((sm2_pki.root,))
    report = verify_bytes(cms, trust=trust)
    assert report.indication is Indication.PASSED
    assert "embedded content" in report.signatures[0].check("document.data_hash").message_en
    # Data supplied besides: checked in the embedded content's place.
    assert verify_bytes(cms, detached_data=DATA, trust=trust).indication is Indication.PASSED
    other = verify_bytes(cms, detached_data=DATA + b"!", trust=trust)
    assert (other.indication, other.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)


def test_pem_cms_is_recognised(signed: dict[str, bytes], trusts: dict[str, TrustSource]) -> None:
    import base64

    body = base64.encodebytes(signed["ecdsa"]).decode()
    pem = f"-----BEGIN CMS-----\n{body}-----END CMS-----\n".encode()
    assert detect(pem) is InputKind.CMS
    report = verify_bytes(pem, detached_data=DATA, trust=trusts["ecdsa"])
    assert report.indication is Indication.PASSED
    assert "PEM" in report.signatures[0].check("format.parse").message_en
    bad = verify_bytes(b"-----BEGIN PKCS7-----\n!!!!\n-----END PKCS7-----\n", detached_data=DATA)
    assert (bad.indication, bad.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)


# --- an independent producer ------------------------------------------------------------------------------
@pytest.mark.parametrize("outform", ["DER", "PEM"])
def test_openssl_made_cms_verifies(openssl: str, tmp_path: Path, outform: str) -> None:
    made = run_openssl(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem", "-outform", "PEM",
        "-subj", "/CN=openssl cms signer", "-days", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "data.bin").write_bytes(DATA)
    signed = run_openssl(
        openssl, "cms", "-sign", "-binary", "-md", "sha256", "-signer", tmp_path / "c.pem", "-inkey",
        tmp_path / "k.pem", "-in", tmp_path / "data.bin", "-outform", outform, "-out", tmp_path / "s.p7s",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    cms = (tmp_path / "s.p7s").read_bytes()
    anchor = InteropTrustSource.from_paths([tmp_path / "c.pem"])  # the self-signed signer itself
    report = verify_bytes(cms, detached_data=DATA, trust=anchor)
    assert report.indication is Indication.PASSED, report.dumps()
    _only_changes(report)
    assert "ECDSA" in report.signatures[0].check("signer.signature").message_en
    tampered = verify_bytes(cms, detached_data=_flip(DATA, 0), trust=anchor)
    assert tampered.sub_indication is SubIndication.HASH_FAILURE


# --- damaged input ----------------------------------------------------------------------------------------
def test_truncated_cms_is_a_format_failure(signed: dict[str, bytes]) -> None:
    for cut in (20, len(signed["sm2"]) // 2, len(signed["sm2"]) - 1):
        data = signed["sm2"][:cut]
        assert detect(data) is InputKind.CMS
        report = verify_bytes(data, detached_data=DATA)
        assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
        (sig,) = report.signatures
        assert sig.check("format.parse").result is Result.FAILED
        assert all(c.result is Result.SKIPPED for c in sig.checks[1:])


def test_garbage_der_is_unusable_input() -> None:
    for data in (b"\x30\x03\x02\x01\x00", b"\x30\x82\xff\xff" + b"\x00" * 40, b"\x30"):
        assert detect(data) is InputKind.UNKNOWN
        with pytest.raises(UnusableInput):
            verify_bytes(data, detached_data=DATA)


def test_a_signer_certificate_the_cms_does_not_carry(keystore: KeyStore, sm2_pki: Sm2Pki) -> None:
    cms = build_signed_data(
        sign=lambda m: keystore.sign(sm2_pki.signer_key_id, m),
        algorithm=CmsAlgorithm.SM2,
        certificates=[sm2_pki.signer.der],
        content_digest=digest_content(DATA),
        include_certificates=False,
    )
    report = verify_bytes(cms, detached_data=DATA, trust=FileTrustSource((sm2_pki.root,)))
    assert report.sub_indication is SubIndication.FORMAT_FAILURE
    assert "not found" in report.signatures[0].check("format.parse").message_en


# --- fuzzing: mutated CMS never crash or hang the verifier -------------------------------------------------
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(KINDS),
    # Mostly past the outer header: a CMS without its ContentInfo header is simply not recognised.
    flips=st.lists(
        st.tuples(st.floats(0.01, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.one_of(st.none(), st.floats(0.01, 1, exclude_max=True)),
    with_data=st.booleans(),
)
def test_fuzz_mutated_cms(
    signed: dict[str, bytes],
    trusts: dict[str, TrustSource],
    kind: str,
    flips: list[tuple[float, int]],
    cut: float | None,
    with_data: bool,
) -> None:
    original = signed[kind]
    data = bytearray(original)
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    started = time.monotonic()
    try:
        report = verify_bytes(bytes(data), detached_data=DATA if with_data else None, trust=trusts[kind])
    except EsealError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # a typed refusal (no longer a ContentInfo, ...) is fine
    assert isinstance(report, DocumentReport) and report.format == "cms"
    assert time.monotonic() - started < 10
    report.dumps()
    event(f"{report.indication.value} {report.sub_indication.value if report.sub_indication else ''}")
    if report.indication is Indication.PASSED:
        # What the signature covers cannot have changed: the signed attributes, the signature value
        # and the signer certificate as read are the original ones.
        mutated, source = parse_signed_data(bytes(data)).signer, parse_signed_data(original).signer
        assert (mutated.signed_attributes, mutated.signature, mutated.certificate.dump()) == (
            source.signed_attributes,
            source.signature,
            source.certificate.dump(),
        )


def test_one_trust_bundle_of_mixed_key_types(
    tmp_path: Path, signed: dict[str, bytes], sm2_pki: Sm2Pki, ec_pki: PycaPki, rsa_pki: PycaPki
) -> None:
    """What ``eseal verify --trust`` reads: SM2 CA certificates anchor SM2 chains, the others the
    ECDSA/RSA ones; an end-entity certificate of any key type is refused."""
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(sm2_pki.root.to_pem().encode() + ec_pki.ca_pem.read_bytes())
    trust = InteropTrustSource.from_any_paths([bundle, rsa_pki.ca_pem])
    now = dt.datetime.now(dt.UTC)
    assert [c.der for c in trust.trust_anchors(now)] == [sm2_pki.root.der]
    assert trust.interop_anchors(now) == (ec_pki.ca_der, rsa_pki.ca_der)
    for kind in KINDS:
        assert verify_bytes(signed[kind], detached_data=DATA, trust=trust).indication is Indication.PASSED
    sm2_leaf = tmp_path / "sm2-leaf.pem"
    sm2_leaf.write_text(sm2_pki.signer.to_pem())
    for leaf in (ec_pki.leaf_pem, sm2_leaf):
        with pytest.raises(ConfigurationError):
            InteropTrustSource.from_any_paths([leaf])
    with pytest.raises(ConfigurationError):
        InteropTrustSource.from_any_paths([tmp_path / "missing.pem"])
