"""Revocation of the PAdES interop (ECDSA) certificates, on both backends.

The registry signs a CRL for its PAdES interop root (ECDSA P-256 in the key store); the registry
trust source hands it to the verifier, which checks ECDSA PDF and CMS signatures against it with
the SM2 path's rules: not revoked → PASSED; revoked after the claimed signing time → REVOKED_NO_POE;
revoked before it → REVOKED; a time-stamp from before the revocation → PASSED. OpenSSL reads and
verifies the CRL independently, and the route serves it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import pem as asn1_pem

from core.db import transaction, utcnow
from core.errors import Conflict
from hsm_adapters.keystore import KeyAlgorithm
from seal_registry.lifecycle import SealState as RegistryState
from seal_registry.models import PkiCertificate, Seal
from seal_registry.peers import FederatedTrustSource
from seal_registry.pki import (
    CertRole,
    current_certificate,
    current_interop_crl,
    init_pades,
    issue_pades_certificate,
    revoke_certificate,
)
from seal_registry.trust_source import RegistryTrustSource
from signer.cms_signing import sign_detached_cms
from signer.pdf_sealing import pades_timestamp_authority, seal_pdf
from tests.api.conftest import LiveServer
from tests.gmpki.conftest import openssl_path, run_openssl
from tests.pdf.conftest import make_pdf
from verify import Indication, Result, SubIndication, verify_bytes
from verify.report import DocumentReport
from verify.trust import MemoTrustSource

from ..registry.conftest import ACTOR, Registry
from .conftest import DATA, after_the_second_of

REVOCATION = "signer.certificate_revocation"


@dataclass(frozen=True)
class Interop:
    registry: Registry
    seal: Seal
    certificate: PkiCertificate  # the department's ECDSA PAdES certificate
    root_der: bytes
    tsa_der: bytes

    @property
    def chain(self) -> list[bytes]:
        return [self.certificate.der, self.root_der]

    def cms(self, *, signing_time: dt.datetime | None = None, stamped: bool = False) -> bytes:
        assert self.certificate.key_id is not None
        tsa = None
        if stamped:
            with self.registry.sessions() as s:
                tsa = pades_timestamp_authority(s, self.registry.keystore)
        return sign_detached_cms(
            self.registry.keystore,
            self.certificate.key_id,
            self.chain,
            DATA,
            signing_time=signing_time,
            tsa=tsa,
        )

    def pdf(self, *, stamped: bool = False) -> bytes:
        options: dict[str, object] = {}
        with transaction(self.registry.sessions) as s:
            if stamped:
                options = {"pades_level": "B-T", "tsa": pades_timestamp_authority(s, self.registry.keystore)}
            return seal_pdf(
                s,
                self.registry.keystore,
                make_pdf(),
                es_id=self.seal.es_id,
                department_id=self.registry.department.id,
                x_mm=20,
                y_mm=30,
                key_kind="ecdsa",
                actor=ACTOR,
                **options,  # type: ignore[arg-type]
            )

    def revoke(self, reason: str = "key_compromise") -> None:
        with transaction(self.registry.sessions) as s:
            revoke_certificate(s, self.certificate.id, reason=reason, actor=ACTOR)


@pytest.fixture
def interop(registry: Registry) -> Interop:
    with transaction(registry.sessions) as s:
        init_pades(s, registry.keystore, registry.settings, actor=ACTOR)
    with transaction(registry.sessions) as s:
        dept = s.merge(registry.department)
        cert = issue_pades_certificate(
            s, registry.keystore, dept, algorithm=KeyAlgorithm.EC_P256, actor=ACTOR
        )
        s.flush()
        s.expunge(cert)
    with registry.sessions() as s:
        root = current_certificate(s, CertRole.PADES_ROOT).der
        tsa = current_certificate(s, CertRole.PADES_TSA).der
    return Interop(registry, registry.seal_in(RegistryState.ISSUED), cert, root, tsa)


def _source(registry: Registry) -> RegistryTrustSource:
    return RegistryTrustSource(registry.sessions, registry.keystore, region_code="110000")


def _revocation(report: DocumentReport) -> tuple[Result, SubIndication | None]:
    check = report.signatures[0].check(REVOCATION)
    return check.result, check.sub_indication


def test_ecdsa_pdf_and_cms_follow_the_interop_crl(interop: Interop) -> None:
    trust = _source(interop.registry)
    pdf, cms = interop.pdf(), interop.cms()
    for report in (verify_bytes(pdf, trust=trust), verify_bytes(cms, detached_data=DATA, trust=trust)):
        assert report.indication is Indication.PASSED, report.dumps()
        assert _revocation(report) == (Result.PASSED, None)
        assert "per CRL" in report.signatures[0].check(REVOCATION).message_en
    after_the_second_of(utcnow())  # CRL times have whole seconds
    interop.revoke()
    # The cached view is rebuilt on the (audited) revocation: later than the claimed signing time
    for report in (verify_bytes(pdf, trust=trust), verify_bytes(cms, detached_data=DATA, trust=trust)):
        assert (report.indication, report.sub_indication) == (
            Indication.INDETERMINATE,
            SubIndication.REVOKED_NO_POE,
        ), report.dumps()
        assert _revocation(report) == (Result.INDETERMINATE, SubIndication.REVOKED_NO_POE)
    # A signature claiming a time after the revocation (made with the key directly): REVOKED
    with interop.registry.sessions() as s:
        revoked_at = s.get(PkiCertificate, interop.certificate.id).revoked_at  # type: ignore[union-attr]
    assert revoked_at is not None
    late = interop.cms(signing_time=revoked_at.replace(microsecond=0) + dt.timedelta(seconds=2))
    report = verify_bytes(late, detached_data=DATA, trust=trust)
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.REVOKED)
    assert _revocation(report) == (Result.FAILED, SubIndication.REVOKED)
    # The federated source (the service's) answers the same
    federated = FederatedTrustSource(
        interop.registry.sessions, interop.registry.keystore, region_code="110000"
    )
    assert _revocation(verify_bytes(late, detached_data=DATA, trust=federated)) == (
        Result.FAILED,
        SubIndication.REVOKED,
    )
    assert _revocation(verify_bytes(pdf, trust=federated))[1] is SubIndication.REVOKED_NO_POE


def test_a_time_stamp_before_the_revocation_keeps_the_signature(interop: Interop) -> None:
    trust = _source(interop.registry)
    pdf, cms = interop.pdf(stamped=True), interop.cms(stamped=True)
    after_the_second_of(utcnow())
    interop.revoke()
    for report in (verify_bytes(pdf, trust=trust), verify_bytes(cms, detached_data=DATA, trust=trust)):
        assert report.signatures[0].check("timestamp.token").result is Result.PASSED, report.dumps()
        assert _revocation(report) == (Result.PASSED, None), report.dumps()
        assert "after the time-stamp" in report.signatures[0].check(REVOCATION).message_en
        assert report.indication is Indication.PASSED


def test_without_an_interop_crl_revocation_is_skipped_as_before(interop: Interop) -> None:
    # No key store: the registry signs no CRL, so nothing covers the interop root
    trust = RegistryTrustSource(interop.registry.sessions, None, region_code="110000")
    report = verify_bytes(interop.cms(), detached_data=DATA, trust=trust)
    assert _revocation(report)[0] is Result.SKIPPED
    assert report.signatures[0].check("signer.certificate_chain").result is Result.PASSED


def test_memo_and_view_pass_the_interop_crl_through(interop: Interop) -> None:
    source = _source(interop.registry)
    now = utcnow()
    (first,) = MemoTrustSource(source).interop_crls(now)
    assert source.consistent_view().interop_crls(now) == (first,)  # kept: no rebuild per request
    interop.revoke()
    (second,) = MemoTrustSource(source).interop_crls(now)
    listed = asn1_crl.CertificateList.load(second)["tbs_cert_list"]["revoked_certificates"]
    assert [e["user_certificate"].native for e in listed] == [int(interop.certificate.serial_hex, 16)]
    assert asn1_crl.CertificateList.load(first)["tbs_cert_list"]["revoked_certificates"].native in (None, [])


def test_the_interop_crl_is_standard_and_the_root_stays(interop: Interop, tmp_path: Path) -> None:
    interop.revoke("superseded")
    with interop.registry.sessions() as s:
        der = current_interop_crl(s, interop.registry.keystore)
        pades_root_id = current_certificate(s, CertRole.PADES_ROOT).id
    with transaction(interop.registry.sessions) as s, pytest.raises(Conflict):
        revoke_certificate(s, pades_root_id, reason="key_compromise", actor=ACTOR)
    openssl = openssl_path()
    if openssl is None:
        pytest.skip("OpenSSL 3 command line tool not found")
    (tmp_path / "interop.crl").write_bytes(der)
    (tmp_path / "root.pem").write_bytes(asn1_pem.armor("CERTIFICATE", interop.root_der))
    text = run_openssl(openssl, "crl", "-inform", "DER", "-in", tmp_path / "interop.crl", "-text", "-noout")
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "ecdsa-with-SHA256" in out and "X509v3 CRL Number" in out and "Superseded" in out
    assert interop.certificate.serial_hex.upper().lstrip("0") in out.replace(":", "").upper()
    checked = run_openssl(
        openssl,
        "crl",
        "-inform",
        "DER",
        "-in",
        tmp_path / "interop.crl",
        "-CAfile",
        tmp_path / "root.pem",
        "-noout",
    )
    assert checked.returncode == 0 and b"verify OK" in checked.stdout + checked.stderr, checked.stderr
    # Another CA does not verify it
    (tmp_path / "tsa.pem").write_bytes(asn1_pem.armor("CERTIFICATE", interop.tsa_der))
    wrong = run_openssl(
        openssl,
        "crl",
        "-inform",
        "DER",
        "-in",
        tmp_path / "interop.crl",
        "-CAfile",
        tmp_path / "tsa.pem",
        "-noout",
    )
    assert b"verify OK" not in wrong.stdout + wrong.stderr


def test_interop_crl_route(live_server: LiveServer) -> None:
    with live_server.client() as c:
        response = c.get("/v1/ca/crl/interop")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pkix-crl"
        crl = asn1_crl.CertificateList.load(response.content)
        assert crl["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
        roots = c.get("/v1/ca/certificates").json()
    (root,) = [r for r in roots if r["role"] == "pades_root"]
    assert crl.issuer.human_friendly and root["subject"]
    with live_server.client() as c:
        sm2 = asn1_crl.CertificateList.load(c.get("/v1/ca/crl").content)
    assert sm2.issuer != crl.issuer


def test_offline_trust_files_take_the_interop_crl(interop: Interop, tmp_path: Path) -> None:
    from gmpki.crl_interop import interop_crl_pem
    from verify.interop import InteropTrustSource

    cms = interop.cms()
    after_the_second_of(utcnow())
    interop.revoke()
    with interop.registry.sessions() as s:
        der = current_interop_crl(s, interop.registry.keystore)
    (tmp_path / "pades-root.pem").write_bytes(asn1_pem.armor("CERTIFICATE", interop.root_der))
    (tmp_path / "interop.crl").write_text(interop_crl_pem(der))  # PEM, as `eseal ca crl --interop` writes
    offline = InteropTrustSource.from_any_paths(
        [tmp_path / "pades-root.pem"], crls=[tmp_path / "interop.crl"]
    )
    assert offline.interop_crls(utcnow()) == (der,) and offline.crls(utcnow()) == ()
    report = verify_bytes(cms, detached_data=DATA, trust=offline)
    assert _revocation(report) == (Result.INDETERMINATE, SubIndication.REVOKED_NO_POE), report.dumps()
    # Only the anchor: no CRL covers the issuer, so revocation is skipped as before
    bare = InteropTrustSource.from_any_paths([tmp_path / "pades-root.pem"])
    assert _revocation(verify_bytes(cms, detached_data=DATA, trust=bare))[0] is Result.SKIPPED


def test_a_cold_source_signs_the_interop_crl_once(interop: Interop, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any

    from seal_registry import pki

    source = _source(interop.registry)
    built: list[int] = []
    sign = pki.sign_interop_crl

    def counting(*args: Any, **kwargs: Any) -> bytes:
        built.append(1)
        time.sleep(0.05)  # widen the window in which the others arrive
        return sign(*args, **kwargs)

    monkeypatch.setattr(pki, "sign_interop_crl", counting)
    barrier = threading.Barrier(16)

    def ask(_: int) -> bytes:
        barrier.wait()
        (der,) = source.interop_crls(utcnow())
        return der

    with ThreadPoolExecutor(16) as pool:
        ders = set(pool.map(ask, range(16)))
    assert len(ders) == 1 and built == [1]
    interop.revoke()  # an audited change: a new view, a new key, one more signature
    assert source.interop_crls(utcnow()) != tuple(ders) and built == [1, 1]


def test_sm2_pdf_time_stamped_before_the_revocation_keeps_the_signature(interop: Interop) -> None:
    """The SM2 PDF path follows the same rule as SM2 CMS and the ECDSA paths."""
    from signer.pdf_sealing import timestamp_authority_for

    registry = interop.registry
    trust = _source(registry)
    with transaction(registry.sessions) as s:
        tsa = timestamp_authority_for(s, registry.keystore, "sm2")
        pdf = seal_pdf(
            s,
            registry.keystore,
            make_pdf(),
            es_id=interop.seal.es_id,
            department_id=registry.department.id,
            x_mm=20,
            y_mm=30,
            key_kind="sm2",
            pades_level="B-T",  # type: ignore[arg-type]
            tsa=tsa,
            actor=ACTOR,
        )
    assert verify_bytes(pdf, trust=trust).indication is Indication.PASSED
    after_the_second_of(utcnow())
    with transaction(registry.sessions) as s:
        revoke_certificate(s, interop.seal.signer_certificate_id, reason="key_compromise", actor=ACTOR)
    report = verify_bytes(pdf, trust=trust)
    assert report.signatures[0].check("timestamp.token").result is Result.PASSED, report.dumps()
    assert _revocation(report) == (Result.PASSED, None), report.dumps()
    assert report.indication is Indication.PASSED
