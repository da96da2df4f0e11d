"""With a trust anchor made here, a correct seal, SES signature and sealed OFD pass; trust, revocation
and seal status turn them indeterminate or failed for the stated reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from gmpki import sm3
from gmpki.crl import CertificateRevocationList, RevokedCertificate, build_crl
from gmpki.seal import make_ses_signature
from gmpki.x509 import Certificate, now_utc
from verify import (
    FileTrustSource,
    Indication,
    Result,
    SealState,
    SealStatusFact,
    SubIndication,
    verify_bytes,
)
from verify.report import DocumentReport

from .conftest import Pki, seal_ofd

P, F, IND, S, W = Result.PASSED, Result.FAILED, Result.INDETERMINATE, Result.SKIPPED, Result.WARNING
DATA = "审批表：同意。".encode()


def _passed_except_skips(report: DocumentReport, skipped: set[str]) -> None:
    assert report.indication is Indication.PASSED, report.dumps()
    assert report.sub_indication is None
    for sig in report.signatures:
        assert sig.indication is Indication.PASSED
        for check in sig.checks:
            assert check.result is (S if check.id in skipped else P), (check.id, check.message_en)


SES_SKIPS = {"seal.status", "signer.certificate_revocation", "timestamp.token"}


def test_ses_signature_passes_with_anchor(pki: Pki) -> None:
    ses = pki.sign(sm3.sm3(DATA), "approval-form.pdf")
    report = verify_bytes(ses, detached_data=DATA, trust=pki.trust())
    _passed_except_skips(report, SES_SKIPS)
    (sig,) = report.signatures
    assert sig.signer is not None and sig.signer.serial == f"{pki.department.serial:X}"
    assert "测试根 CA" in sig.check("signer.certificate_chain").message_zh


def test_ses_signature_without_anchor_is_indeterminate(pki: Pki) -> None:
    report = verify_bytes(pki.sign(sm3.sm3(DATA), "x"), detached_data=DATA)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
    results = report.signatures[0].results()
    assert results["signer.certificate_chain"] is IND and results["seal.maker_certificate_chain"] is IND
    assert [k for k, v in results.items() if v is F] == []


def test_wrong_detached_data(pki: Pki) -> None:
    report = verify_bytes(pki.sign(sm3.sm3(DATA), "x"), detached_data=DATA + b" ", trust=pki.trust())
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    assert [c.id for c in report.signatures[0].checks if c.result is F] == ["document.data_hash"]


def test_seal_alone_passes_with_anchor(pki: Pki) -> None:
    report = verify_bytes(pki.seal, trust=pki.trust())
    _passed_except_skips(report, {"seal.status", "timestamp.token"})
    assert verify_bytes(pki.seal).indication is Indication.INDETERMINATE


def test_sealed_ofd_passes_with_anchor(
    pki: Pki, interop_file: Callable[[str], bytes], tmp_path: Path
) -> None:
    sealed = seal_ofd(interop_file("ofdrw-sign__helloworld.ofd"), pki)
    (tmp_path / "sealed.ofd").write_bytes(sealed)
    report = verify_bytes((tmp_path / "sealed.ofd").read_bytes(), trust=pki.trust())
    _passed_except_skips(report, SES_SKIPS)
    (sig,) = report.signatures
    assert "5 protected files" in sig.check("document.references").message_en  # 4 original files + Seal.esl
    assert sig.check("document.seal_file_match").result is P
    without = verify_bytes(sealed)
    assert (without.indication, without.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )


def test_signer_not_in_seal_list(pki: Pki, interop_file: Callable[[str], bytes]) -> None:
    sealed = seal_ofd(interop_file("ofdrw-sign__helloworld.ofd"), pki, signer_cert="outsider")
    report = verify_bytes(sealed, trust=pki.trust())
    (sig,) = report.signatures
    assert [c.id for c in sig.checks if c.result is F] == ["signer.in_seal_certificate_list"]
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.SIGNER_NOT_IN_SEAL)
    assert f"0x{pki.outsider.serial:X}" in sig.check("signer.in_seal_certificate_list").message_en


def test_signed_before_seal_validity(pki: Pki) -> None:
    early = pki.created - dt.timedelta(seconds=30)  # the department certificate was already valid
    report = verify_bytes(pki.sign(sm3.sm3(DATA), "x", early), detached_data=DATA, trust=pki.trust())
    (sig,) = report.signatures
    assert [c.id for c in sig.checks if c.result is F] == ["seal.validity_period"]
    assert sig.sub_indication is SubIndication.SEAL_NOT_YET_VALID


# --- revocation ---------------------------------------------------------------------------------------
def _crl(pki: Pki, revoked: Sequence[RevokedCertificate]) -> CertificateRevocationList:
    now = now_utc()
    return build_crl(
        signer=pki.root_signer,
        issuer=pki.root,
        this_update=now - dt.timedelta(minutes=1),
        next_update=now + dt.timedelta(days=7),
        revoked=revoked,
        crl_number=1,
    )


def _with_crl(pki: Pki, crl: CertificateRevocationList) -> FileTrustSource:
    return FileTrustSource((pki.root,), (), (crl,))


def test_revoked_before_signing(pki: Pki) -> None:
    signed_at = now_utc()
    crl = _crl(
        pki,
        [RevokedCertificate(pki.department.serial, signed_at - dt.timedelta(seconds=10), "key_compromise")],
    )
    report = verify_bytes(
        pki.sign(sm3.sm3(DATA), "x", signed_at), detached_data=DATA, trust=_with_crl(pki, crl)
    )
    (sig,) = report.signatures
    assert [c.id for c in sig.checks if c.result is F] == ["signer.certificate_revocation"]
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.REVOKED)
    assert "key_compromise" in sig.check("signer.certificate_revocation").message_en


def test_revoked_after_signing_has_no_proof_of_existence(pki: Pki) -> None:
    signed_at = now_utc() - dt.timedelta(seconds=20)
    crl = _crl(pki, [RevokedCertificate(pki.department.serial, signed_at + dt.timedelta(seconds=10))])
    report = verify_bytes(
        pki.sign(sm3.sm3(DATA), "x", signed_at), detached_data=DATA, trust=_with_crl(pki, crl)
    )
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.REVOKED_NO_POE,
    )


def test_not_revoked(pki: Pki) -> None:
    crl = _crl(pki, [RevokedCertificate(pki.outsider.serial, now_utc() - dt.timedelta(seconds=5))])
    report = verify_bytes(pki.sign(sm3.sm3(DATA), "x"), detached_data=DATA, trust=_with_crl(pki, crl))
    _passed_except_skips(report, {"seal.status", "timestamp.token"})


def test_trust_directory_with_crl(pki: Pki, tmp_path: Path) -> None:
    crl = _crl(pki, [RevokedCertificate(pki.department.serial, now_utc() - dt.timedelta(hours=1))])
    (tmp_path / "root.pem").write_text(pki.root.to_pem())
    (tmp_path / "root.crl").write_bytes(crl.der)
    (tmp_path / "notes.txt").write_text("ignored")
    trust = FileTrustSource.from_paths([tmp_path])
    assert len(trust.anchors) == 1 and len(trust.revocation_lists) == 1
    report = verify_bytes(pki.sign(sm3.sm3(DATA), "x"), detached_data=DATA, trust=trust)
    assert report.sub_indication is SubIndication.REVOKED


def test_trust_files_must_be_ca_certificates(pki: Pki, tmp_path: Path) -> None:
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(pki.department.to_pem())
    with pytest.raises(ConfigurationError):
        FileTrustSource.from_paths([leaf])
    with pytest.raises(ConfigurationError):
        FileTrustSource.from_paths([tmp_path / "missing.pem"])
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match="no trust anchor"):
        FileTrustSource.from_paths([empty])


# --- seal status ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryStub:
    """A trust source that also knows seal states (as the seal registry will)."""

    anchor: Certificate
    fact: SealStatusFact | None
    asked: list[tuple[str, bytes]]

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return (self.anchor,)

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return ()

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return ()

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        self.asked.append((es_id, seal_sm3))
        return self.fact


@pytest.mark.parametrize(
    ("state", "offset", "indication", "sub", "result"),
    [
        (SealState.ACTIVE, -60, Indication.PASSED, None, P),
        (SealState.CANCELLED, -60, Indication.FAILED, SubIndication.SEAL_CANCELLED, F),
        (SealState.SUSPENDED, -60, Indication.FAILED, SubIndication.SEAL_SUSPENDED, F),
        (SealState.CANCELLED, +60, Indication.PASSED, None, W),  # cancelled after the signing time
        (SealState.UNKNOWN, -60, Indication.INDETERMINATE, SubIndication.SEAL_STATUS_UNKNOWN, IND),
    ],
)
def test_seal_status(
    pki: Pki,
    state: SealState,
    offset: int,
    indication: Indication,
    sub: SubIndication | None,
    result: Result,
) -> None:
    signed_at = now_utc()
    ses = make_ses_signature(
        pki.seal, sm3.sm3(DATA), "x", pki.department.der, pki.department_signer, signed_at
    )
    stub = RegistryStub(
        pki.root, SealStatusFact(state, signed_at + dt.timedelta(seconds=offset), "test registry"), []
    )
    report = verify_bytes(ses, detached_data=DATA, trust=stub)
    (sig,) = report.signatures
    assert (sig.indication, sig.sub_indication) == (indication, sub)
    assert sig.check("seal.status").result is result
    assert "test registry" in sig.check("seal.status").message_en
    assert set(stub.asked) == {("TEST-3301-0001", sm3.sm3(pki.seal))}  # now, and when signed if active
