"""RC2 (decryption of legacy PKCS#12 bags): RFC 2268 vectors, OpenSSL and pyca as references."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import RC2 as PycaRC2
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from core.errors import CryptoError, InvalidInput
from gmpki import rc2
from tests.gmpki.conftest import load_vectors, run_openssl

RFC_VECTORS = load_vectors("rc2_rfc2268.json")["vectors"]


@pytest.mark.parametrize(("key", "bits", "plain", "cipher"), RFC_VECTORS)
def test_rfc2268_vectors(key: str, bits: int, plain: str, cipher: str) -> None:
    engine = rc2.RC2(bytes.fromhex(key), bits)
    assert engine.encrypt_block(bytes.fromhex(plain)).hex() == cipher
    assert engine.decrypt_block(bytes.fromhex(cipher)).hex() == plain


def test_effective_bits_matter() -> None:
    key = bytes.fromhex("88bca90e90875a7f0f79c384627bafb2")
    block = bytes(8)
    assert rc2.RC2(key, 64).encrypt_block(block) != rc2.RC2(key, 128).encrypt_block(block)


def _pyca_encrypt(key: bytes, iv: bytes, padded: bytes) -> bytes:
    enc = Cipher(PycaRC2(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def _pad(data: bytes) -> bytes:
    n = 8 - len(data) % 8
    return data + bytes([n]) * n


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 100])
def test_cbc_against_pyca_rc2_128(length: int) -> None:
    key, iv, data = os.urandom(16), os.urandom(8), os.urandom(length)
    assert rc2.cbc_decrypt(key, 128, iv, _pyca_encrypt(key, iv, _pad(data))) == data


@pytest.mark.parametrize("length", [1, 16, 37])
def test_cbc_rc2_40_against_openssl_legacy(openssl_legacy: str, tmp_path: Path, length: int) -> None:
    key, iv, data = os.urandom(5), os.urandom(8), os.urandom(length)
    (tmp_path / "p").write_bytes(data)
    res = run_openssl(
        openssl_legacy,
        "enc",
        "-rc2-40-cbc",
        "-K",
        key.hex(),
        "-iv",
        iv.hex(),
        "-in",
        tmp_path / "p",
        "-provider",
        "legacy",
        "-provider",
        "default",
    )
    assert res.returncode == 0, res.stderr
    assert rc2.cbc_decrypt(key, 40, iv, res.stdout) == data


def test_cbc_errors() -> None:
    key, iv = os.urandom(5), os.urandom(8)
    with pytest.raises(CryptoError):
        rc2.cbc_decrypt(key, 40, iv, b"")
    with pytest.raises(CryptoError):
        rc2.cbc_decrypt(key, 40, iv, bytes(12))
    key128 = os.urandom(16)
    for bad_tail in (b"\x00", b"\x09", b"\x02\x03"):
        block = bytes(8 - len(bad_tail)) + bad_tail
        with pytest.raises(CryptoError):
            rc2.cbc_decrypt(key128, 128, iv, _pyca_encrypt(key128, iv, block))
    with pytest.raises(InvalidInput):
        rc2.cbc_decrypt(key, 40, iv[:7], bytes(8))
    with pytest.raises(InvalidInput):
        rc2.RC2(b"", 40)
    with pytest.raises(InvalidInput):
        rc2.RC2(key, 0)
    with pytest.raises(InvalidInput):
        rc2.RC2(key, 40).decrypt_block(bytes(7))
