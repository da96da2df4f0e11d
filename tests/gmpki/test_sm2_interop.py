"""SM2 signatures against independent implementations: gmalg (pure Python) and the OpenSSL 3 CLI.

OpenSSL 3.0's CLI signs and verifies with an empty signer ID unless told otherwise; the forms that
work with the GB/T 35276 default ID on OpenSSL 3.0.19 are
``openssl pkeyutl -sign|-verify -rawin -digest sm3 -pkeyopt distid:1234567812345678`` and
``openssl dgst -sm3 -sign|-verify ... -sigopt distid:1234567812345678``.
"""

from __future__ import annotations

from pathlib import Path

import gmalg
import pytest
from asn1crypto import keys, pem

from gmpki import sm2
from gmpki.x509 import sm2_public_key_from_spki, sm2_spki
from tests.gmpki.conftest import run_openssl

DISTID = "distid:1234567812345678"


def _pad(value: int) -> bytes:
    return value.to_bytes(32, "big")


# --- gmalg -----------------------------------------------------------------------------------------
def test_our_signature_verifies_under_gmalg() -> None:
    key = sm2.SM2PrivateKey.generate()
    msg = b"cross-implementation: eseal -> gmalg"
    r, s = sm2.decode_signature(sm2.sign(key, msg))
    verifier = gmalg.SM2(pk=key.public_key.point, uid=sm2.DEFAULT_ID)
    assert verifier.verify(msg, _pad(r), _pad(s))
    assert not verifier.verify(msg + b"x", _pad(r), _pad(s))


def test_gmalg_signature_verifies_under_ours() -> None:
    key = sm2.SM2PrivateKey.generate()
    msg = b"cross-implementation: gmalg -> eseal"
    signer = gmalg.SM2(key.secret_bytes(), sm2.DEFAULT_ID, key.public_key.point)
    r, s = signer.sign(msg)
    der = sm2.raw_to_der(r + s)
    assert sm2.verify(key.public_key, msg, der)
    assert not sm2.verify(key.public_key, msg[:-1], der)


# --- OpenSSL CLI -----------------------------------------------------------------------------------
def _public_pem(key: sm2.SM2PublicKey) -> bytes:
    armored: bytes = pem.armor("PUBLIC KEY", sm2_spki(key).dump())
    return armored


def test_our_signature_verifies_under_openssl(openssl: str, tmp_path: Path) -> None:
    key = sm2.SM2PrivateKey.generate()
    msg = b"eseal signs, OpenSSL verifies\n" * 3
    (tmp_path / "pub.pem").write_bytes(_public_pem(key.public_key))
    (tmp_path / "msg").write_bytes(msg)
    (tmp_path / "sig.der").write_bytes(sm2.sign(key, msg))
    args: list[str | Path] = ["-pubin", "-inkey", tmp_path / "pub.pem", "-rawin", "-in", tmp_path / "msg"]
    ok = run_openssl(
        openssl,
        "pkeyutl",
        "-verify",
        *args,
        "-sigfile",
        tmp_path / "sig.der",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
    )
    assert ok.returncode == 0, ok.stderr
    assert b"Signature Verified Successfully" in ok.stdout
    dgst = run_openssl(
        openssl,
        "dgst",
        "-sm3",
        "-verify",
        tmp_path / "pub.pem",
        "-sigopt",
        DISTID,
        "-signature",
        tmp_path / "sig.der",
        tmp_path / "msg",
    )
    assert dgst.returncode == 0, dgst.stderr
    # tampered message: OpenSSL refuses too
    (tmp_path / "msg").write_bytes(msg + b"!")
    bad = run_openssl(
        openssl,
        "pkeyutl",
        "-verify",
        *args,
        "-sigfile",
        tmp_path / "sig.der",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
    )
    assert bad.returncode != 0


def test_openssl_signature_verifies_under_ours(openssl: str, tmp_path: Path) -> None:
    gen = run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", tmp_path / "k.pem")
    assert gen.returncode == 0, gen.stderr
    pub = run_openssl(openssl, "pkey", "-in", tmp_path / "k.pem", "-pubout", "-outform", "DER")
    assert pub.returncode == 0, pub.stderr
    public_key = sm2_public_key_from_spki(keys.PublicKeyInfo.load(pub.stdout))
    msg = b"OpenSSL signs, eseal verifies"
    (tmp_path / "msg").write_bytes(msg)
    for tool in ("pkeyutl", "dgst"):
        if tool == "pkeyutl":
            res = run_openssl(
                openssl,
                "pkeyutl",
                "-sign",
                "-inkey",
                tmp_path / "k.pem",
                "-rawin",
                "-in",
                tmp_path / "msg",
                "-digest",
                "sm3",
                "-pkeyopt",
                DISTID,
            )
        else:
            res = run_openssl(
                openssl, "dgst", "-sm3", "-sign", tmp_path / "k.pem", "-sigopt", DISTID, tmp_path / "msg"
            )
        assert res.returncode == 0, res.stderr
        assert sm2.verify(public_key, msg, res.stdout), tool
        assert not sm2.verify(public_key, msg + b" ", res.stdout), tool
    # Without distid OpenSSL 3.0 uses an empty ID: not what GB/T 35276 prescribes, and not ours.
    plain = run_openssl(
        openssl,
        "pkeyutl",
        "-sign",
        "-inkey",
        tmp_path / "k.pem",
        "-rawin",
        "-in",
        tmp_path / "msg",
        "-digest",
        "sm3",
    )
    assert plain.returncode == 0, plain.stderr
    assert not sm2.verify(public_key, msg, plain.stdout)
    assert sm2.verify(public_key, msg, plain.stdout, uid=b"")


# --- malformed and malleated signatures ------------------------------------------------------------
@pytest.fixture(scope="module")
def signed() -> tuple[sm2.SM2PublicKey, bytes, int, int]:
    key = sm2.SM2PrivateKey.generate()
    msg = b"the message"
    r, s = sm2.decode_signature(sm2.sign(key, msg))
    return key.public_key, msg, r, s


def _int(value: int, length: int | None = None) -> bytes:
    body = (
        value.to_bytes(value.bit_length() // 8 + 1, "big")
        if length is None
        else value.to_bytes(length, "big")
    )
    return b"\x02" + bytes([len(body)]) + body


def _seq(body: bytes) -> bytes:
    return b"\x30" + bytes([len(body)]) + body


def test_valid_baseline(signed: tuple[sm2.SM2PublicKey, bytes, int, int]) -> None:
    pub, msg, r, s = signed
    assert sm2.verify(pub, msg, sm2.encode_signature(r, s))
    assert sm2.verify(pub, msg, _seq(_int(r) + _int(s)))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda r, s: _seq(_int(0) + _int(s)), id="r=0"),
        pytest.param(lambda r, s: _seq(_int(r) + _int(0)), id="s=0"),
        pytest.param(lambda r, s: _seq(_int(r) + _int(s + sm2.N)), id="s+n"),
        pytest.param(lambda r, s: _seq(_int(r + sm2.N) + _int(s)), id="r+n"),
        pytest.param(lambda r, s: _seq(_int(r) + _int(sm2.N - s)), id="n-s"),
        pytest.param(
            lambda r, s: (
                _seq(b"\x02\x21\x00" + r.to_bytes(32, "big") + _int(s))
                if r >> 255 == 0
                else _seq(b"\x02\x22\x00\x00" + r.to_bytes(32, "big") + _int(s))
            ),
            id="r padded with a redundant zero",
        ),
        pytest.param(
            lambda r, s: b"\x30\x81" + bytes([len(_int(r) + _int(s))]) + _int(r) + _int(s),
            id="long-form length",
        ),
        pytest.param(lambda r, s: b"\x30\x80" + _int(r) + _int(s) + b"\x00\x00", id="indefinite length"),
        pytest.param(lambda r, s: _seq(_int(r) + _int(s)) + b"\x00", id="trailing byte"),
        pytest.param(lambda r, s: _seq(_int(r) + _int(s) + b"\x05\x00"), id="extra element"),
        pytest.param(lambda r, s: b"\x31" + _seq(_int(r) + _int(s))[1:], id="SET instead of SEQUENCE"),
        pytest.param(lambda r, s: _seq(_int(r)), id="missing s"),
        pytest.param(lambda r, s: r.to_bytes(32, "big") + s.to_bytes(32, "big"), id="raw r||s"),
        pytest.param(lambda r, s: _seq(b"\x02\x01\x80" + _int(s)), id="negative r"),
    ],
)
def test_malformed_or_malleated_signatures_are_rejected(
    signed: tuple[sm2.SM2PublicKey, bytes, int, int], mutate: object
) -> None:
    pub, msg, r, s = signed
    assert callable(mutate)
    sig = mutate(r, s)
    assert sig != sm2.encode_signature(r, s)
    assert not sm2.verify(pub, msg, sig)


def test_tampered_message_and_wrong_key(signed: tuple[sm2.SM2PublicKey, bytes, int, int]) -> None:
    pub, msg, r, s = signed
    sig = sm2.encode_signature(r, s)
    assert not sm2.verify(pub, msg.replace(b"the", b"The"), sig)
    assert not sm2.verify(sm2.SM2PrivateKey.generate().public_key, msg, sig)
