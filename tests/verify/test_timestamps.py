"""Time-stamp tokens on SES signatures, Sign-type signatures and seals: verified (token, imprint, TSA
chain), and a valid one proves when the signature existed — so a certificate that expired, or was
revoked, after that time no longer casts doubt on it. Tokens come from a real TimeStampAuthority."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.db import make_engine, make_session_factory
from gmpki import sm2, sm3
from gmpki.ca import (
    issue_department_certificate,
    issue_root_ca,
    issue_seal_maker_certificate,
    issue_tsa_certificate,
)
from gmpki.cms import parse_signed_data
from gmpki.crl import CertificateRevocationList, RevokedCertificate, build_crl
from gmpki.ofd import OfdPackage
from gmpki.seal import build_seal_info, make_seal, make_ses_signature, parse_ses_signature
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, now_utc
from hsm_adapters.soft import ScryptParams, SoftKeyStore
from signer.tsa import TimeStampAuthority
from verify import (
    FileTrustSource,
    Indication,
    Result,
    SealState,
    SealStatusFact,
    SubIndication,
    verify_bytes,
)
from verify.report import DocumentReport, SignatureReport

from .conftest import PICTURE, SIGN_DIR, Pki, flip, rewrite_entry, seal_ofd, sign_type_ofd

pytestmark = pytest.mark.interop

NOW = now_utc()
T0 = NOW - dt.timedelta(days=200)  # when the documents were signed
EXPIRY = T0 + dt.timedelta(days=20)  # when the department certificate expired
SIGNED_VALUE = f"{SIGN_DIR}/SignedValue.dat"
Stamp = Callable[[bytes], bytes]


def _signer() -> InMemorySigner:
    return InMemorySigner(sm2.SM2PrivateKey.generate())


@dataclass(frozen=True)
class Past:
    pki: Pki  # the department certificate was valid from T0 - 10 days until EXPIRY
    tsa_certificate: Certificate
    foreign_tsa_certificate: Certificate  # issued by a root nobody trusts
    keystore: SoftKeyStore
    key_ids: dict[str, str]

    def stamp(self, at: dt.datetime, *, foreign: bool = False) -> Stamp:
        """A function of a signature value returning a token made at ``at`` by the (foreign) TSA."""
        cert = self.foreign_tsa_certificate if foreign else self.tsa_certificate
        tsa = TimeStampAuthority(
            self.keystore, cert, self.key_ids["foreign" if foreign else "tsa"], clock=lambda: at
        )
        return lambda value: tsa.timestamp(sm3.sm3(value))

    def crl(self, *revoked: RevokedCertificate) -> CertificateRevocationList:
        return build_crl(
            signer=self.pki.root_signer,
            issuer=self.pki.root,
            this_update=NOW - dt.timedelta(hours=1),
            next_update=NOW + dt.timedelta(days=7),
            revoked=revoked,
            crl_number=1,
        )


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Past]:
    tmp = tmp_path_factory.mktemp("timestamps")
    long_ago = NOW - dt.timedelta(days=400)
    root_signer, maker_signer, dept_signer, other_signer, foreign_signer = (_signer() for _ in range(5))
    root = issue_root_ca(root_signer, build_name("时间戳测试根 CA"), not_before=long_ago)
    maker = issue_seal_maker_certificate(
        root_signer, root, maker_signer.public_key, build_name("测试制章系统"), not_before=long_ago
    )
    department = issue_department_certificate(
        root_signer,
        root,
        dept_signer.public_key,
        build_name("短期证书部门"),
        not_before=T0 - dt.timedelta(days=10),
        validity=EXPIRY - (T0 - dt.timedelta(days=10)),
    )
    outsider = issue_department_certificate(
        root_signer, root, other_signer.public_key, build_name("其他部门"), not_before=long_ago
    )
    created = T0 - dt.timedelta(days=5)
    info = build_seal_info(
        es_id="TEST-TSA-0001",
        name="时间戳测试章",
        seal_type=1,
        certs=[department.der],
        create_date=created,
        valid_start=created,
        valid_end=NOW + dt.timedelta(days=300),
        picture_type="PNG",
        picture_data=PICTURE,
        picture_width=40,
        picture_height=40,
        vid="eseal-tests",
    )
    seal = make_seal(info, maker.der, maker_signer)
    root_pem = tmp / "root.pem"
    root_pem.write_text(root.to_pem())
    pki = Pki(
        root,
        root_signer,
        maker,
        maker_signer,
        department,
        dept_signer,
        outsider,
        other_signer,
        seal,
        created,
        root_pem,
    )

    engine = make_engine(f"sqlite:///{tmp / 'keys.db'}")
    keystore = SoftKeyStore(
        make_session_factory(engine), "tsa test", create_tables=True, scrypt_params=ScryptParams(n=2**10)
    )
    tsa_key, foreign_key = sm2.SM2PrivateKey.generate(), sm2.SM2PrivateKey.generate()
    key_ids = {
        "tsa": keystore.import_sm2(tsa_key, "tsa").id,
        "foreign": keystore.import_sm2(foreign_key, "foreign tsa").id,
    }
    tsa_cert = issue_tsa_certificate(
        root_signer, root, tsa_key.public_key, build_name("测试时间戳服务"), not_before=long_ago
    )
    foreign_root = issue_root_ca(foreign_signer, build_name("不受信任的根"), not_before=long_ago)
    foreign_cert = issue_tsa_certificate(
        foreign_signer,
        foreign_root,
        foreign_key.public_key,
        build_name("不受信任的时间戳服务"),
        not_before=long_ago,
    )
    try:
        yield Past(pki, tsa_cert, foreign_cert, keystore, key_ids)
    finally:
        keystore.close()
        engine.dispose()


@pytest.fixture(scope="module")
def helloworld(interop_file: Callable[[str], bytes]) -> bytes:
    return interop_file("ofdrw-sign__helloworld.ofd")


def _sig(report: DocumentReport) -> SignatureReport:
    (sig,) = report.signatures
    return sig


def _not_passed(sig: SignatureReport) -> dict[str, Result]:
    return {k: v for k, v in sig.results().items() if v not in (Result.PASSED, Result.SKIPPED)}


# --- the time-stamp itself ---------------------------------------------------------------------------------
def test_trusted_time_stamp_passes(past: Past, helloworld: bytes) -> None:
    sealed = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)))
    sig = _sig(verify_bytes(sealed, trust=past.pki.trust()))
    assert sig.indication is Indication.PASSED, sig.results()
    token = sig.check("timestamp.token")
    assert token.result is Result.PASSED
    assert "测试时间戳服务" in token.message_en and "imprint covers the signature value" in token.message_en
    validity = sig.check("signer.certificate_validity")
    assert validity.result is Result.PASSED and "time-stamp time" in validity.message_en


def test_time_stamp_from_an_untrusted_tsa_is_indeterminate(past: Past, helloworld: bytes) -> None:
    stamp = past.stamp(T0 + dt.timedelta(minutes=1), foreign=True)
    sig = _sig(
        verify_bytes(seal_ofd(helloworld, past.pki, when=T0, time_stamp=stamp), trust=past.pki.trust())
    )
    assert _not_passed(sig) == {"timestamp.token": Result.INDETERMINATE}
    assert sig.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    assert "TSA is not trusted" in sig.check("timestamp.token").message_en
    # Judged at the claimed time, as without a time-stamp.
    assert "time-stamp" not in sig.check("signer.certificate_validity").message_en


def test_time_stamp_over_other_data_fails(past: Past, helloworld: bytes) -> None:
    stamp = past.stamp(T0 + dt.timedelta(minutes=1))
    sealed = seal_ofd(helloworld, past.pki, when=T0, time_stamp=lambda value: stamp(value + b"!"))
    sig = _sig(verify_bytes(sealed, trust=past.pki.trust()))
    assert _not_passed(sig) == {"timestamp.token": Result.FAILED}
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.SIG_CRYPTO_FAILURE)
    assert "imprint" in sig.check("timestamp.token").message_en


def test_flipped_byte_in_the_token_fails_the_time_stamp_only(past: Past, helloworld: bytes) -> None:
    sealed = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)))
    value = OfdPackage(sealed).read(SIGNED_VALUE)
    token = parse_ses_signature(value).time_stamp
    assert token is not None
    tsa_signature = parse_signed_data(token).signer.signature
    at = value.index(tsa_signature) + len(tsa_signature) - 1
    sig = _sig(
        verify_bytes(rewrite_entry(sealed, SIGNED_VALUE, lambda b: flip(b, at)), trust=past.pki.trust())
    )
    assert _not_passed(sig) == {"timestamp.token": Result.FAILED}
    assert "signature does not verify" in sig.check("timestamp.token").message_en


def test_unparseable_token_is_unverifiable_never_valid(past: Past, helloworld: bytes) -> None:
    # ofdrw's v5 sample carries three dummy bytes where the token belongs.
    sealed = seal_ofd(helloworld, past.pki, when=T0, time_stamp=b"\x01\x02\x03")
    sig = _sig(verify_bytes(sealed, trust=past.pki.trust()))
    assert _not_passed(sig) == {"timestamp.token": Result.INDETERMINATE}
    assert sig.sub_indication is SubIndication.FORMAT_FAILURE
    assert "unverifiable" in sig.check("timestamp.token").message_en


def test_tsa_revoked_before_the_time_stamp_fails(past: Past, helloworld: bytes) -> None:
    stamp_at = T0 + dt.timedelta(minutes=1)
    sealed = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(stamp_at))
    revoked = RevokedCertificate(past.tsa_certificate.serial, T0, "key_compromise")
    trust = FileTrustSource((past.pki.root,), revocation_lists=(past.crl(revoked),))
    sig = _sig(verify_bytes(sealed, trust=trust))
    assert sig.check("timestamp.token").result is Result.FAILED
    assert sig.sub_indication is SubIndication.REVOKED


# --- what a valid time-stamp proves ------------------------------------------------------------------------
def test_certificate_expired_before_the_claimed_time_but_not_before_the_time_stamp(
    past: Past, helloworld: bytes
) -> None:
    claimed = EXPIRY + dt.timedelta(days=40)  # the signer's clock was wrong, or its claim is
    without = _sig(verify_bytes(seal_ofd(helloworld, past.pki, when=claimed), trust=past.pki.trust()))
    assert without.check("signer.certificate_validity").result is Result.FAILED
    assert without.sub_indication is SubIndication.OUT_OF_BOUNDS_NO_POE

    stamped = seal_ofd(helloworld, past.pki, when=claimed, time_stamp=past.stamp(T0 + dt.timedelta(days=1)))
    sig = _sig(verify_bytes(stamped, trust=past.pki.trust()))
    assert sig.check("signer.certificate_validity").result is Result.PASSED
    assert "time-stamp" in sig.check("signer.certificate_validity").message_en
    assert sig.check("signer.certificate_chain").result is Result.PASSED
    assert sig.check("timestamp.token").result is Result.WARNING  # the claim contradicts the proof
    assert "later than it" in sig.check("timestamp.token").message_en
    assert sig.indication is Indication.PASSED


def test_revocation_after_the_time_stamp_no_longer_matters(past: Past, helloworld: bytes) -> None:
    revoked = RevokedCertificate(past.pki.department.serial, T0 + dt.timedelta(days=2), "key_compromise")
    trust = FileTrustSource((past.pki.root,), revocation_lists=(past.crl(revoked),))

    plain = _sig(verify_bytes(seal_ofd(helloworld, past.pki, when=T0), trust=trust))
    assert plain.check("signer.certificate_revocation").result is Result.INDETERMINATE
    assert plain.sub_indication is SubIndication.REVOKED_NO_POE

    stamped = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)))
    sig = _sig(verify_bytes(stamped, trust=trust))
    revocation = sig.check("signer.certificate_revocation")
    assert revocation.result is Result.PASSED and "after the time-stamp" in revocation.message_en
    assert sig.indication is Indication.PASSED, sig.results()


def test_revocation_before_the_time_stamp_stays_in_doubt(past: Past, helloworld: bytes) -> None:
    revoked = RevokedCertificate(past.pki.department.serial, T0 + dt.timedelta(seconds=30), "key_compromise")
    trust = FileTrustSource((past.pki.root,), revocation_lists=(past.crl(revoked),))
    stamped = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)))
    sig = _sig(verify_bytes(stamped, trust=trust))
    assert sig.check("signer.certificate_revocation").result is Result.INDETERMINATE
    assert sig.sub_indication is SubIndication.REVOKED_NO_POE


# --- other carriers ----------------------------------------------------------------------------------------
def test_standalone_ses_signature_with_time_stamp(past: Past) -> None:
    data = b"detached original"
    ses = make_ses_signature(
        past.pki.seal,
        sm3.sm3(data),
        "original.bin",
        past.pki.department.der,
        past.pki.department_signer,
        T0,
        time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)),
    )
    sig = _sig(verify_bytes(ses, detached_data=data, trust=past.pki.trust()))
    assert sig.check("timestamp.token").result is Result.PASSED
    assert sig.indication is Indication.PASSED, sig.results()


def test_sign_type_signature_time_stamp(past: Past, helloworld: bytes) -> None:
    stamp = past.stamp(T0 + dt.timedelta(minutes=1))
    signed = sign_type_ofd(
        helloworld, past.pki.department, past.pki.department_signer, when=T0, signature_timestamp=stamp
    )
    sig = _sig(verify_bytes(signed, trust=past.pki.trust()))
    assert sig.check("timestamp.token").result is Result.PASSED
    assert "time-stamp time" in sig.check("signer.certificate_validity").message_en
    assert sig.indication is Indication.PASSED, sig.results()


def test_seal_time_stamp_over_other_data_only_warns(past: Past, tmp_path: Path) -> None:
    created = T0 - dt.timedelta(days=1)
    info = build_seal_info(
        es_id="TEST-TSA-0005",
        name="五版测试章",
        seal_type=1,
        certs=[past.pki.department.der],
        create_date=created,
        valid_start=created,
        valid_end=NOW + dt.timedelta(days=300),
        picture_type="PNG",
        picture_data=PICTURE,
        picture_width=40,
        picture_height=40,
        vid="eseal-tests",
        version=5,
    )
    token = past.stamp(created)(info)  # made before the maker signature exists: it cannot cover it
    seal = make_seal(info, past.pki.maker.der, past.pki.maker_signer, time_stamp=token)
    sig = _sig(verify_bytes(seal, trust=past.pki.trust()))
    assert sig.check("timestamp.token").result is Result.WARNING
    assert "proves nothing" in sig.check("timestamp.token").message_en
    assert sig.indication is Indication.PASSED, sig.results()


@dataclass(frozen=True)
class _CancelledLater:
    """The past PKI's anchors, and a seal cancelled at ``cancelled_at`` (active before)."""

    base: FileTrustSource
    cancelled_at: dt.datetime

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return self.base.trust_anchors(at)

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return ()

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return ()

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        if at < self.cancelled_at:
            return SealStatusFact(SealState.ACTIVE, T0 - dt.timedelta(days=5), "test registry")
        return SealStatusFact(SealState.CANCELLED, self.cancelled_at, "test registry")


def test_seal_cancelled_after_the_time_stamp(past: Past, helloworld: bytes) -> None:
    trust = _CancelledLater(past.pki.trust(), T0 + dt.timedelta(days=2))
    plain = _sig(verify_bytes(seal_ofd(helloworld, past.pki, when=T0), trust=trust))
    assert plain.check("seal.status").result is Result.WARNING  # only the signer's claim says "before"

    stamped = seal_ofd(helloworld, past.pki, when=T0, time_stamp=past.stamp(T0 + dt.timedelta(minutes=1)))
    sig = _sig(verify_bytes(stamped, trust=trust))
    status = sig.check("seal.status")
    assert status.result is Result.PASSED and "time-stamp proves" in status.message_en
    assert sig.indication is Indication.PASSED, sig.results()

    late = _CancelledLater(past.pki.trust(), T0 + dt.timedelta(seconds=30))  # between claim and proof
    sig = _sig(verify_bytes(stamped, trust=late))
    assert sig.check("seal.status").result is Result.WARNING
