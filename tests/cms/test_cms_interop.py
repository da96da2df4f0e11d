"""CMS interoperability with the OpenSSL 3 command line tool.

Findings with OpenSSL 3.0.x (Debian 12 ships 3.0.19), asserted below:

* ECDSA P-256 and RSA CMS made by eseal verify with ``openssl cms -verify``; OpenSSL-made ones
  verify in eseal.
* SM2 CMS cannot be *verified* by OpenSSL 3.0: ``CMS_SignerInfo_verify`` runs
  ``EVP_DigestVerify*`` on the SM2 key without setting a distinguishing ID, so the Z value is
  computed over an **empty** ID instead of GB/T 35276's default ``1234567812345678`` (and
  ``openssl cms`` has no option to set one for verification). With ``-CAfile`` the chain check
  fails first, for the same reason, on the SM2 certificate signatures. Re-signing the very same
  signed attributes with an empty ID makes OpenSSL accept the CMS, which pins the cause to the ID.
  The GB/T 35275 content types are unknown to OpenSSL altogether ("content type not signed data").
  eseal's SM2 CMS is therefore checked independently with raw asn1crypto + gmalg (test_cms_sm2.py).
* OpenSSL 3.0 cannot *make* SM2 CMS: ``cms_sd_asn1_ctrl`` only fills in
  SignerInfo.signatureAlgorithm for EC, DSA and RSA keys; SM2 keys are their own key type in 3.x,
  so the field stays empty and encoding fails with "illegal zero content" (generic provider-based
  CMS signing arrived in OpenSSL 3.2). An SM2 signature made by OpenSSL (``pkeyutl`` with
  ``distid``) over eseal-built signed attributes does verify in eseal.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import cms

from core.errors import CryptoError
from gmpki import sm2
from gmpki.cms import CmsAlgorithm, CmsFlavour, UnsupportedAlgorithm, sign_detached, verify_detached
from hsm_adapters.keystore import KeyStore
from signer.cms_signing import sign_detached_cms

from .conftest import PycaPki, Sm2Pki, run_openssl

CONTENT = b"interop content \x00\x01\x02 with binary bytes\r\n" * 40
DISTID = "distid:1234567812345678"


def _openssl_version(openssl: str) -> tuple[int, int]:
    out = subprocess.run([openssl, "version"], capture_output=True, text=True, check=True).stdout
    major, minor = out.split()[1].split(".")[:2]
    return int(major), int(minor)


def _write(tmp_path: Path, der: bytes, content: bytes = CONTENT) -> tuple[Path, Path]:
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "content.bin").write_bytes(content)
    return tmp_path / "sig.der", tmp_path / "content.bin"


def _openssl_verify(
    openssl: str, sig: Path, content: Path, *extra: str | Path
) -> subprocess.CompletedProcess[bytes]:
    return run_openssl(
        openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content, "-out",
        sig.with_suffix(".out"), *extra,
    )  # fmt: skip


@pytest.mark.parametrize("which", ["ec_pki", "rsa_pki"])
def test_eseal_ecdsa_and_rsa_cms_verify_in_openssl(
    which: str, openssl: str, keystore: KeyStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pki: PycaPki = request.getfixturevalue(which)
    der = sign_detached_cms(keystore, pki.key_id, [pki.leaf_der, pki.ca_der], CONTENT)
    v = verify_detached(der, CONTENT)
    assert v.ok and v.digest_algorithm == "sha256"
    assert v.signature_algorithm == ("ecdsa" if which == "ec_pki" else "rsa")
    sig, content = _write(tmp_path, der)
    ok = _openssl_verify(openssl, sig, content, "-CAfile", pki.ca_pem, "-purpose", "any")
    assert ok.returncode == 0, ok.stderr
    assert b"Verification successful" in ok.stderr
    assert sig.with_suffix(".out").read_bytes() == CONTENT
    content.write_bytes(CONTENT[:-1] + b"?")
    bad = _openssl_verify(openssl, sig, content, "-CAfile", pki.ca_pem, "-purpose", "any")
    assert bad.returncode != 0 and b"Verification failure" in bad.stderr


@pytest.mark.parametrize(
    "newkey", [("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"), ("-newkey", "rsa:2048")]
)
def test_openssl_ecdsa_and_rsa_cms_verify_in_eseal(
    openssl: str, tmp_path: Path, newkey: tuple[str, ...]
) -> None:
    made = run_openssl(
        openssl, "req", "-x509", *newkey, "-nodes", "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem",
        "-subj", "/CN=openssl signer", "-days", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "content.bin").write_bytes(CONTENT)
    signed = run_openssl(
        openssl, "cms", "-sign", "-binary", "-md", "sha256", "-signer", tmp_path / "c.pem", "-inkey",
        tmp_path / "k.pem", "-in", tmp_path / "content.bin", "-outform", "DER", "-out", tmp_path / "s.der",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    der = (tmp_path / "s.der").read_bytes()
    v = verify_detached(der, CONTENT)
    assert v.ok and v.signing_time is not None
    tampered = verify_detached(der, CONTENT.replace(b"binary", b"BINARY"))
    assert not tampered.digest_ok and tampered.signature_ok


def test_openssl_rsa_pss_cms_is_an_unsupported_algorithm(openssl: str, tmp_path: Path) -> None:
    made = run_openssl(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "k.pem", "-out",
        tmp_path / "c.pem", "-subj", "/CN=pss", "-days", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "content.bin").write_bytes(CONTENT)
    signed = run_openssl(
        openssl, "cms", "-sign", "-binary", "-md", "sha256", "-signer", tmp_path / "c.pem", "-inkey",
        tmp_path / "k.pem", "-keyopt", "rsa_padding_mode:pss", "-in", tmp_path / "content.bin", "-outform",
        "DER", "-out", tmp_path / "s.der",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    with pytest.raises(UnsupportedAlgorithm):
        verify_detached((tmp_path / "s.der").read_bytes(), CONTENT)


def test_openssl_30_verifies_sm2_cms_only_with_an_empty_distid(
    openssl: str, keystore: KeyStore, sm2_pki: Sm2Pki, tmp_path: Path
) -> None:
    (tmp_path / "root.pem").write_text(sm2_pki.root.to_pem())
    der = sign_detached_cms(
        keystore, sm2_pki.signer_key_id, [sm2_pki.signer, sm2_pki.root], CONTENT, flavour=CmsFlavour.RFC5652
    )
    assert verify_detached(der, CONTENT).ok
    sig, content = _write(tmp_path, der)
    full = _openssl_verify(openssl, sig, content, "-CAfile", tmp_path / "root.pem", "-purpose", "any")
    if full.returncode == 0:  # an OpenSSL that uses the GB/T default ID: plain interoperability
        return
    assert _openssl_version(openssl) < (3, 2), full.stderr
    # The certificate chain fails first: eseal's SM2 certificates are signed with the default ID.
    assert b"certificate signature failure" in full.stderr
    no_chain = _openssl_verify(openssl, sig, content, "-noverify")
    assert no_chain.returncode != 0 and b"verification failure" in no_chain.stderr

    # Same signed attributes, SM2 signature re-made over an empty ID: now OpenSSL 3.0 accepts it.
    info = cms.ContentInfo.load(der)
    si = info["content"]["signer_infos"][0]
    message = b"\x31" + si["signed_attrs"].dump()[1:]
    key = sm2_pki.other_key  # any key whose certificate we can place in the CMS
    si["sid"] = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value={"issuer": sm2_pki.other.asn1.issuer, "serial_number": sm2_pki.other.serial},
    )
    info["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=sm2_pki.other.asn1)]
    si["signature"] = sm2.sign(key, message, uid=b"")
    empty_id = info.dump(force=True)
    sig.write_bytes(empty_id)
    accepted = _openssl_verify(openssl, sig, content, "-noverify")
    assert accepted.returncode == 0, accepted.stderr
    # ...and eseal, which follows GB/T 35276 (default ID), rejects exactly that signature.
    v = verify_detached(empty_id, CONTENT)
    assert v.digest_ok and not v.signature_ok

    # The GB/T 35275 content types are unknown to OpenSSL.
    sig.write_bytes(sign_detached_cms(keystore, sm2_pki.signer_key_id, [sm2_pki.signer], CONTENT))
    gm = _openssl_verify(openssl, sig, content, "-noverify")
    assert gm.returncode != 0 and b"content type not signed data" in gm.stderr


def test_openssl_30_cannot_make_sm2_cms(openssl: str, tmp_path: Path) -> None:
    assert run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", tmp_path / "k.pem").returncode == 0
    made = run_openssl(
        openssl, "req", "-x509", "-new", "-key", tmp_path / "k.pem", "-sm3", "-sigopt", DISTID, "-subj",
        "/CN=openssl sm2 signer", "-days", "2", "-out", tmp_path / "c.pem",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "content.bin").write_bytes(CONTENT)
    signed = run_openssl(
        openssl, "cms", "-sign", "-binary", "-md", "sm3", "-signer", tmp_path / "c.pem", "-inkey",
        tmp_path / "k.pem", "-keyopt", DISTID, "-in", tmp_path / "content.bin", "-outform", "DER", "-out",
        tmp_path / "s.der",
    )  # fmt: skip
    if signed.returncode == 0:  # OpenSSL 3.2+: what it makes must verify here
        assert verify_detached((tmp_path / "s.der").read_bytes(), CONTENT).ok
        return
    assert _openssl_version(openssl) < (3, 2), signed.stderr
    assert b"illegal zero content" in signed.stderr


def test_openssl_made_sm2_signature_in_cms_verifies_in_eseal(openssl: str, tmp_path: Path) -> None:
    assert run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", tmp_path / "k.pem").returncode == 0
    made = run_openssl(
        openssl, "req", "-x509", "-new", "-key", tmp_path / "k.pem", "-sm3", "-sigopt", DISTID, "-subj",
        "/CN=openssl sm2 signer", "-days", "2", "-outform", "DER", "-out", tmp_path / "c.der",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    def openssl_sign(distid: tuple[str, ...]) -> Callable[[bytes], bytes]:
        def sign(message: bytes) -> bytes:
            (tmp_path / "m.bin").write_bytes(message)
            res = run_openssl(
                openssl, "pkeyutl", "-sign", "-inkey", tmp_path / "k.pem", "-rawin",
                "-in", tmp_path / "m.bin", "-digest", "sm3", *distid,
            )  # fmt: skip
            assert res.returncode == 0, res.stderr
            return res.stdout

        return sign

    cert = (tmp_path / "c.der").read_bytes()
    for flavour in CmsFlavour:
        der = sign_detached(
            CONTENT,
            sign=openssl_sign(("-pkeyopt", DISTID)),
            algorithm=CmsAlgorithm.SM2,
            certificates=[cert],
            flavour=flavour,
        )
        v = verify_detached(der, CONTENT)
        assert v.ok and v.flavour is flavour
    # OpenSSL's default (empty ID) signature is not GB/T 35276 SM2: the builder refuses it.
    with pytest.raises(CryptoError):
        sign_detached(CONTENT, sign=openssl_sign(()), algorithm=CmsAlgorithm.SM2, certificates=[cert])
