"""PKCS#12 import: the legacy ofdrw file, OpenSSL-made variants, wrong passwords, hostile files."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12

from core.errors import CertificateError, InputTooLarge, InvalidInput, MalformedData, WrongPassword
from gmpki import sm2
from gmpki.pkcs12 import bmp_password, load_pkcs12, pkcs12_kdf
from tests.gmpki.conftest import Pki, load_vectors, run_openssl

KDF_VECTORS = load_vectors("pkcs12_kdf.json")["vectors"]


@pytest.mark.parametrize(("password", "salt", "iterations", "purpose", "expected"), KDF_VECTORS)
def test_pkcs12_kdf_vectors(password: str, salt: str, iterations: int, purpose: int, expected: str) -> None:
    out = pkcs12_kdf(
        "sha1", bmp_password(password), bytes.fromhex(salt), iterations, purpose, len(expected) // 2
    )
    assert out.hex() == expected


def test_bmp_password_encoding() -> None:
    assert bmp_password("smeg") == bytes.fromhex("0073006d006500670000")
    assert bmp_password("口令") == "口令".encode("utf-16-be") + b"\x00\x00"


# --- the interop file -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def user_p12(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-gm__USER.p12").read_bytes()


def test_interop_user_p12_imports(user_p12: bytes) -> None:
    key, cert, extras = load_pkcs12(user_p12, "777777")
    assert cert.common_name == "Test Certificate"
    assert cert.serial == 0x1719D2DAB60
    assert cert.subject == "CN=Test Certificate,L=Hangzhou,ST=Zhejiang,O=OFD R&W,C=CN"
    assert cert.issuer == "CN=OFD Reader and WriterROOT Certificate,L=Hangzhou,ST=Zhejiang,O=OFD R&W,C=CN"
    assert extras == []
    assert key.public_key == cert.public_key
    message = b"signed with the imported USER key"
    signature = sm2.sign(key, message)
    assert sm2.verify(cert.public_key, message, signature)
    assert not sm2.verify(cert.public_key, message + b"!", signature)
    # bytes passwords are accepted as UTF-8
    assert load_pkcs12(user_p12, b"777777").certificate == cert


@pytest.mark.parametrize("password", ["777776", "", "7777777", "７７７７７７"])
def test_interop_wrong_password(user_p12: bytes, password: str) -> None:
    with pytest.raises(WrongPassword):
        load_pkcs12(user_p12, password)


def test_interop_tampered_content_fails_the_mac(user_p12: bytes) -> None:
    pfx = asn1_pkcs12.Pfx.load(user_p12)
    # one byte of the RC2-encrypted certificate bag (the file is BER: find it by a short prefix)
    bag = pfx.authenticated_safe[1]["content"]["encrypted_content_info"]["encrypted_content"].native
    pos = user_p12.index(bag[:12]) + 8
    tampered = bytearray(user_p12)
    tampered[pos] ^= 0x01
    with pytest.raises(WrongPassword):
        load_pkcs12(bytes(tampered), "777777")
    # one byte of the MAC itself
    mac = bytes(pfx["mac_data"]["mac"]["digest"].native)
    tampered = bytearray(user_p12)
    tampered[user_p12.rindex(mac) + 3] ^= 0x80
    with pytest.raises(WrongPassword):
        load_pkcs12(bytes(tampered), "777777")


def test_iteration_cap(user_p12: bytes) -> None:
    with pytest.raises(MalformedData):
        load_pkcs12(user_p12, "777777", max_iterations=1000)


def test_size_cap_and_bad_password_type(user_p12: bytes) -> None:
    with pytest.raises(InputTooLarge):
        load_pkcs12(user_p12, "777777", max_size=1000)
    with pytest.raises(InvalidInput):
        load_pkcs12(user_p12, b"\xff\xfe")


@pytest.mark.parametrize("cut", [1, 10, 100, 600, 1165])
def test_truncated_files(user_p12: bytes, cut: int) -> None:
    with pytest.raises(MalformedData):
        load_pkcs12(user_p12[:cut], "777777")


def test_trailing_garbage(user_p12: bytes) -> None:
    with pytest.raises(MalformedData):
        load_pkcs12(user_p12 + b"\x00", "777777")


# --- files made by OpenSSL --------------------------------------------------------------------------
def _key_and_cert(openssl: str, tmp: Path, name: str) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.pem"
    assert run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", key).returncode == 0
    made = run_openssl(
        openssl,
        "req",
        "-x509",
        "-key",
        key,
        "-sm3",
        "-sigopt",
        "distid:1234567812345678",
        "-days",
        "10",
        "-subj",
        f"/CN={name}",
        "-out",
        cert,
    )
    assert made.returncode == 0, made.stderr
    return key, cert


VARIANTS = {
    "openssl3-default (PBES2 AES-256-CBC, HMAC-SHA256 MAC)": [],
    "legacy (RC2-40 certificates, 3DES key, SHA-1 MAC)": ["-legacy"],
    "PBES2 SM4-CBC with an SM3 MAC": ["-keypbe", "SM4-CBC", "-certpbe", "SM4-CBC", "-macalg", "sm3"],
    "3DES everywhere": ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"],
    "no MAC": ["-nomac"],
    "no encryption": ["-keypbe", "NONE", "-certpbe", "NONE"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_openssl_made_files(openssl: str, tmp_path: Path, pki: Pki, variant: str) -> None:
    args = VARIANTS[variant]
    if "-legacy" in args:
        probe = run_openssl(openssl, "list", "-cipher-algorithms", "-provider", "legacy")
        if probe.returncode != 0:
            pytest.skip("OpenSSL legacy provider unavailable")
    key, cert = _key_and_cert(openssl, tmp_path, "holder")
    (tmp_path / "extra.pem").write_text(pki.root.cert.to_pem())
    out = tmp_path / "f.p12"
    made = run_openssl(
        openssl,
        "pkcs12",
        "-export",
        "-inkey",
        key,
        "-in",
        cert,
        "-certfile",
        tmp_path / "extra.pem",
        "-passout",
        "pass:s3cret口令",
        "-out",
        out,
        *args,
    )
    assert made.returncode == 0, made.stderr
    data = out.read_bytes()
    contents = load_pkcs12(data, "s3cret口令")
    assert contents.certificate.subject == "CN=holder"
    assert contents.key.public_key == contents.certificate.public_key
    assert contents.extra_certificates == [pki.root.cert]
    with pytest.raises(WrongPassword):
        load_pkcs12(data, "s3cret口令x")


def test_empty_password(openssl: str, tmp_path: Path) -> None:
    key, cert = _key_and_cert(openssl, tmp_path, "nopw")
    out = tmp_path / "e.p12"
    made = run_openssl(
        openssl, "pkcs12", "-export", "-inkey", key, "-in", cert, "-passout", "pass:", "-out", out
    )
    assert made.returncode == 0, made.stderr
    assert load_pkcs12(out.read_bytes(), "").certificate.subject == "CN=nopw"
    with pytest.raises(WrongPassword):
        load_pkcs12(out.read_bytes(), "x")


def test_key_without_matching_certificate(openssl: str, tmp_path: Path) -> None:
    key, _ = _key_and_cert(openssl, tmp_path, "a")
    _, other_cert = _key_and_cert(openssl, tmp_path, "b")
    out = tmp_path / "m.p12"
    made = run_openssl(
        openssl,
        "pkcs12",
        "-export",
        "-nocerts",
        "-inkey",
        key,
        "-certfile",
        other_cert,
        "-passout",
        "pass:pw",
        "-out",
        out,
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(CertificateError):
        load_pkcs12(out.read_bytes(), "pw")


def test_certificates_only_file_has_no_key(openssl: str, tmp_path: Path) -> None:
    _, cert = _key_and_cert(openssl, tmp_path, "c")
    out = tmp_path / "c.p12"
    made = run_openssl(
        openssl, "pkcs12", "-export", "-nokeys", "-in", cert, "-passout", "pass:pw", "-out", out
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(MalformedData):
        load_pkcs12(out.read_bytes(), "pw")


def test_non_sm2_key_is_refused(openssl: str, tmp_path: Path) -> None:
    key, cert = tmp_path / "p.key", tmp_path / "p.pem"
    made = run_openssl(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-subj",
        "/CN=p256",
        "-days",
        "1",
        "-out",
        cert,
    )
    assert made.returncode == 0, made.stderr
    out = tmp_path / "p.p12"
    assert (
        run_openssl(
            openssl, "pkcs12", "-export", "-inkey", key, "-in", cert, "-passout", "pass:pw", "-out", out
        ).returncode
        == 0
    )
    with pytest.raises(MalformedData):
        load_pkcs12(out.read_bytes(), "pw")
