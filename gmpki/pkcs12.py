"""Import an SM2 private key and its certificate from a PKCS#12 (PFX) file.

pyca/cryptography can open the PFX but refuses SM2 keys, and OpenSSL 3 reads the legacy RC2-40
certificate bags that Chinese CA tools still produce only with its legacy provider. So the whole
container is read here: the PKCS#12 KDF (RFC 7292 appendix B), the MAC, the PBE ciphers
(RC2-40/128 through :mod:`gmpki.rc2`, 3DES through cryptography's ``decrepit`` module, PBES2 with
PBKDF2 and AES-CBC or SM4-CBC), and the key bag decoded with asn1crypto (PKCS#8 with an
ECPrivateKey on the SM2 curve).

Errors: :class:`WrongPassword` when the MAC (or, without a MAC, decryption) fails;
:class:`MalformedData` for anything structurally wrong; :class:`CertificateError` when the key does
not match the certificate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from asn1crypto import core, keys, pkcs12
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData, WrongPassword

from . import oids, rc2, sm2, sm3, sm4
from .der import DEFAULT_MAX_SIZE, asn1_guard, load_der
from .x509 import Certificate, certificate_from_asn1

oids.register()

DEFAULT_MAX_ITERATIONS: Final = 1_000_000  # bounds the CPU a hostile file can make us spend
_MAX_NESTING: Final = 4


class Pkcs12Contents(NamedTuple):
    key: sm2.SM2PrivateKey
    certificate: Certificate
    extra_certificates: list[Certificate]


class _DecryptionFailed(Exception):
    """Padding or format failure after decryption: a wrong password unless the MAC proved otherwise."""


# --- hashes ----------------------------------------------------------------------------------------
def _hash(name: str) -> tuple[Callable[[bytes], bytes], int, int]:
    """(digest function, output size u, block size v) for the KDF and MAC."""
    if name == oids.NAME_SM3:
        return sm3.sm3, 32, 64
    if name not in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        raise MalformedData(
            f"PKCS#12 不支持的摘要算法 {name}", f"Unsupported PKCS#12 digest algorithm {name}"
        )
    constructor = getattr(hashlib, name)
    h = constructor()

    def digest(data: bytes) -> bytes:
        return bytes(constructor(data).digest())

    return digest, h.digest_size, h.block_size


def _hmac(name: str, key: bytes, data: bytes) -> bytes:
    if name == oids.NAME_SM3:
        if "sm3" in hashlib.algorithms_available:
            return hmac.new(key, data, "sm3").digest()
        return sm3.sm3_hmac(key, data)  # pragma: no cover - interpreters without OpenSSL SM3
    return hmac.new(key, data, name).digest()


def bmp_password(password: str) -> bytes:
    """The PKCS#12 password encoding: BMPString (UTF-16BE) with a two-byte NUL terminator."""
    return password.encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, iterations: int, purpose: int, size: int
) -> bytes:
    """RFC 7292 appendix B.2. ``purpose``: 1 key, 2 IV, 3 MAC key. ``password`` already BMP-encoded."""
    digest, u, v = _hash(hash_name)

    def fill(data: bytes) -> bytes:
        if not data:
            return b""
        length = v * ((len(data) + v - 1) // v)
        return (data * (length // len(data) + 1))[:length]

    d = bytes([purpose]) * v
    i_buf = bytearray(fill(salt) + fill(password))
    out = bytearray()
    while True:
        a = digest(d + bytes(i_buf))
        for _ in range(iterations - 1):
            a = digest(a)
        out += a
        if len(out) >= size:
            return bytes(out[:size])
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        for j in range(0, len(i_buf), v):
            block = (int.from_bytes(i_buf[j : j + v], "big") + b) % (1 << (8 * v))
            i_buf[j : j + v] = block.to_bytes(v, "big")


# --- ciphers ---------------------------------------------------------------------------------------
def _unpad(data: bytes, block: int) -> bytes:
    if not data or len(data) % block:
        raise _DecryptionFailed
    pad = data[-1]
    if not 1 <= pad <= block or data[-pad:] != bytes([pad]) * pad:
        raise _DecryptionFailed
    return data[:-pad]


def _cbc(algorithm: BlockCipherAlgorithm, iv: bytes, data: bytes) -> bytes:
    block = algorithm.block_size // 8
    if not data or len(data) % block or len(iv) != block:
        raise _DecryptionFailed
    decryptor = Cipher(algorithm, modes.CBC(iv)).decryptor()
    return _unpad(decryptor.update(data) + decryptor.finalize(), block)


_PKCS12_PBE: Final[dict[str, tuple[str, int, int]]] = {
    # name -> (cipher, key bytes, effective key bits for RC2)
    "pkcs12_sha1_rc2_40": ("rc2", 5, 40),
    "pkcs12_sha1_rc2_128": ("rc2", 16, 128),
    "pkcs12_sha1_tripledes_3key": ("3des", 24, 0),
    "pkcs12_sha1_tripledes_2key": ("3des", 16, 0),
}

_PBES2_CIPHERS: Final[dict[str, tuple[str, int]]] = {
    "aes128_cbc": ("aes", 16),
    "aes192_cbc": ("aes", 24),
    "aes256_cbc": ("aes", 32),
    "tripledes_3key": ("3des", 24),
    oids.NAME_SM4_CBC: ("sm4", 16),
}


def _check_iterations(iterations: int, max_iterations: int) -> int:
    if not 1 <= iterations <= max_iterations:
        raise MalformedData(
            f"PKCS#12 迭代次数 {iterations} 超出允许范围（1..{max_iterations}）",
            f"PKCS#12 iteration count {iterations} outside 1..{max_iterations}",
        )
    return iterations


def _decrypt(algorithm: Any, data: bytes, password: str, max_iterations: int) -> bytes:
    with asn1_guard("PKCS#12 加密算法参数", "PKCS#12 encryption parameters"):
        name = algorithm["algorithm"].native
        params = algorithm["parameters"]
    if name in _PKCS12_PBE:
        cipher, key_len, eff_bits = _PKCS12_PBE[name]
        with asn1_guard("PKCS#12 加密算法参数", "PKCS#12 encryption parameters"):
            salt = bytes(params["salt"].native)
            iterations = _check_iterations(params["iterations"].native, max_iterations)
        pw = bmp_password(password)
        key = pkcs12_kdf("sha1", pw, salt, iterations, 1, key_len)
        iv = pkcs12_kdf("sha1", pw, salt, iterations, 2, 8)
        if cipher == "rc2":
            try:
                return rc2.cbc_decrypt(key, eff_bits, iv, data)
            except CryptoError as exc:
                raise _DecryptionFailed from exc
        if key_len == 16:
            key = key + key[:8]  # two-key 3DES: K1 K2 K1
        return _cbc(TripleDES(key), iv, data)
    if name == "pbes2":
        return _decrypt_pbes2(params, data, password, max_iterations)
    raise MalformedData(
        f"PKCS#12 不支持的加密算法 {name}", f"Unsupported PKCS#12 encryption algorithm {name}"
    )


def _decrypt_pbes2(params: Any, data: bytes, password: str, max_iterations: int) -> bytes:
    with asn1_guard("PBES2 参数", "PBES2 parameters"):
        kdf = params["key_derivation_func"]
        scheme = params["encryption_scheme"]
        if kdf["algorithm"].native != "pbkdf2":
            raise MalformedData(
                f"不支持的密钥派生算法 {kdf['algorithm'].native}",
                f"Unsupported key derivation {kdf['algorithm'].native}",
            )
        kdf_params = kdf["parameters"]
        salt_choice = kdf_params["salt"]
        if salt_choice.name != "specified":
            raise MalformedData("PBKDF2 盐值格式不支持", "Unsupported PBKDF2 salt form")
        salt = bytes(salt_choice.chosen.native)
        iterations = _check_iterations(kdf_params["iteration_count"].native, max_iterations)
        prf = kdf_params["prf"]["algorithm"].dotted
        prf_name = {
            "1.2.840.113549.2.7": "sha1",
            "1.2.840.113549.2.8": "sha224",
            "1.2.840.113549.2.9": "sha256",
            "1.2.840.113549.2.10": "sha384",
            "1.2.840.113549.2.11": "sha512",
            oids.HMAC_SM3: "sm3",
            oids.HMAC_SM3_GMT0091: "sm3",
        }.get(prf)
        cipher_name = scheme["algorithm"].native
        iv_value = scheme["parameters"].native
        declared_len = kdf_params["key_length"].native
    if prf_name is None:
        raise MalformedData(f"不支持的 PBKDF2 伪随机函数 {prf}", f"Unsupported PBKDF2 PRF {prf}")
    if cipher_name not in _PBES2_CIPHERS:
        raise MalformedData(
            f"不支持的 PBES2 加密算法 {cipher_name}", f"Unsupported PBES2 cipher {cipher_name}"
        )
    cipher, key_len = _PBES2_CIPHERS[cipher_name]
    if declared_len is not None and declared_len != key_len:
        raise MalformedData("PBKDF2 密钥长度与加密算法不符", "PBKDF2 key length does not fit the cipher")
    if not isinstance(iv_value, bytes):
        raise MalformedData("PBES2 缺少初始向量", "PBES2 initialisation vector missing")
    if prf_name == "sm3" and "sm3" not in hashlib.algorithms_available:  # pragma: no cover
        raise MalformedData("此环境不支持 HMAC-SM3 的 PBKDF2", "PBKDF2 with HMAC-SM3 unavailable here")
    key = hashlib.pbkdf2_hmac(prf_name, password.encode("utf-8"), salt, iterations, key_len)
    if cipher == "sm4":
        if len(iv_value) != sm4.BLOCK_SIZE:
            raise _DecryptionFailed
        try:
            return sm4.cbc_decrypt(key, iv_value, data)
        except (CryptoError, InvalidInput) as exc:
            raise _DecryptionFailed from exc
    algorithm: BlockCipherAlgorithm = algorithms.AES(key) if cipher == "aes" else TripleDES(key)
    return _cbc(algorithm, iv_value, data)


# --- container -------------------------------------------------------------------------------------
def _verify_mac(pfx: pkcs12.Pfx, content: bytes, password: str, max_iterations: int) -> bool:
    """True if a MAC is present and matches; WrongPassword if present and wrong; False if absent."""
    mac_data = pfx["mac_data"]
    if isinstance(mac_data, core.Void):
        return False
    with asn1_guard("PKCS#12 MAC", "PKCS#12 MAC"):
        hash_name = mac_data["mac"]["digest_algorithm"]["algorithm"].native
        expected = bytes(mac_data["mac"]["digest"].native)
        salt = bytes(mac_data["mac_salt"].native)
        iterations = _check_iterations(mac_data["iterations"].native, max_iterations)
    _, u, _ = _hash(hash_name)
    # OpenSSL encodes an empty password as no bytes at all, other tools as the bare terminator.
    candidates = [bmp_password(password)] + ([b""] if password == "" else [])
    for pw in candidates:
        mac_key = pkcs12_kdf(hash_name, pw, salt, iterations, 3, u)
        if hmac.compare_digest(_hmac(hash_name, mac_key, content), expected):
            return True
    raise WrongPassword("PKCS#12 口令错误或文件已损坏", "Wrong PKCS#12 password, or the file is corrupt")


class _Collected:
    def __init__(self) -> None:
        self.keys: list[keys.PrivateKeyInfo] = []
        self.certs: list[tuple[bytes, asn1_x509.Certificate]] = []


def _collect_bags(
    safe_contents: pkcs12.SafeContents, out: _Collected, password: str, max_iterations: int, depth: int
) -> None:
    if depth > _MAX_NESTING:
        raise MalformedData("PKCS#12 嵌套过深", "PKCS#12 bags nested too deeply")
    for bag in safe_contents:
        with asn1_guard("PKCS#12 包", "PKCS#12 bag"):
            bag_id = bag["bag_id"].native
            value = bag["bag_value"]
        if bag_id == "key_bag":
            out.keys.append(value)
        elif bag_id == "pkcs8_shrouded_key_bag":
            with asn1_guard("PKCS#12 私钥包", "PKCS#12 key bag"):
                encrypted = bytes(value["encrypted_data"].native)
                algorithm = value["encryption_algorithm"]
            plain = _decrypt(algorithm, encrypted, password, max_iterations)
            try:
                out.keys.append(
                    load_der(keys.PrivateKeyInfo, plain, what_zh="PKCS#8 私钥", what_en="PKCS#8 key")
                )
            except MalformedData as exc:
                raise _DecryptionFailed from exc
        elif bag_id == "cert_bag":
            with asn1_guard("PKCS#12 证书包", "PKCS#12 certificate bag"):
                if value["cert_id"].native != "x509":
                    continue
                der = bytes(value["cert_value"])
            cert = load_der(asn1_x509.Certificate, der, what_zh="证书", what_en="certificate")
            out.certs.append((der, cert))
        elif bag_id == "safe_contents":
            _collect_bags(value, out, password, max_iterations, depth + 1)
        # crl_bag, secret_bag and unknown bags carry nothing we import


def _sm2_key(info: keys.PrivateKeyInfo) -> sm2.SM2PrivateKey:
    with asn1_guard("PKCS#8 私钥", "PKCS#8 private key"):
        algorithm = info["private_key_algorithm"]
        if algorithm["algorithm"].dotted != oids.EC_PUBLIC_KEY:
            raise MalformedData("私钥不是 SM2 私钥", "Private key is not an SM2 key")
        ec_key = info["private_key"].parsed
        curve = None
        params = algorithm["parameters"]
        if params.name == "named":
            curve = params.chosen.dotted
        inner = ec_key["parameters"]
        if not isinstance(inner, core.Void) and inner.name == "named":
            if curve is not None and inner.chosen.dotted != curve:
                raise MalformedData("私钥中的曲线参数不一致", "Inconsistent curve parameters in private key")
            curve = inner.chosen.dotted
        if curve != oids.SM2_CURVE:
            raise MalformedData("私钥不是 SM2 曲线上的私钥", "Private key is not on the SM2 curve")
        d = ec_key["private_key"].native
        embedded = ec_key["public_key"].native if not isinstance(ec_key["public_key"], core.Void) else None
    if not isinstance(d, int) or not 1 <= d < sm2.N:
        raise MalformedData("SM2 私钥值超出范围", "SM2 private key value out of range")
    try:
        key = sm2.SM2PrivateKey(d.to_bytes(32, "big"))
    except InvalidInput as exc:
        raise MalformedData(
            f"SM2 私钥无效：{exc.message_zh}", f"Invalid SM2 private key: {exc.message_en}"
        ) from exc
    if embedded is not None and bytes(embedded) != key.public_key.point:
        raise MalformedData(
            "私钥中附带的公钥与私钥不匹配", "Public key embedded in the private key does not match it"
        )
    return key


def load_pkcs12(
    data: bytes,
    password: str | bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> Pkcs12Contents:
    """Read one SM2 key, its certificate and any further certificates from a PKCS#12 file.

    Certificates in the file other than the key's are returned as ``extra_certificates``;
    ones that are not SM2 certificates are skipped (an SM2 key cannot need them for its chain).
    """
    if isinstance(password, bytes | bytearray):
        try:
            password = bytes(password).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("口令必须为 UTF-8 文本", "Password must be UTF-8 text") from exc
    pfx = load_der(pkcs12.Pfx, data, max_size=max_size, what_zh="PKCS#12 文件", what_en="PKCS#12 file")
    with asn1_guard("PKCS#12 文件", "PKCS#12 file"):
        if pfx["version"].native != "v3":
            raise MalformedData("PKCS#12 版本必须为 3", "PKCS#12 version must be 3")
        auth_safe = pfx["auth_safe"]
        if auth_safe["content_type"].native != "data":
            raise MalformedData(
                "仅支持口令完整性模式的 PKCS#12", "Only password-integrity PKCS#12 files are supported"
            )
        content = bytes(auth_safe["content"].native)
    mac_verified = _verify_mac(pfx, content, password, max_iterations)
    authenticated_safe = load_der(
        pkcs12.AuthenticatedSafe,
        content,
        max_size=max_size,
        what_zh="PKCS#12 内容",
        what_en="PKCS#12 content",
    )
    collected = _Collected()
    try:
        for info in authenticated_safe:
            with asn1_guard("PKCS#12 内容", "PKCS#12 content"):
                content_type = info["content_type"].native
                if content_type == "data":
                    raw = bytes(info["content"].native)
                    algorithm = None
                elif content_type == "encrypted_data":
                    eci = info["content"]["encrypted_content_info"]
                    algorithm = eci["content_encryption_algorithm"]
                    raw = bytes(eci["encrypted_content"].native or b"")
                else:
                    raise MalformedData(
                        f"不支持的 PKCS#12 内容类型 {content_type}",
                        f"Unsupported PKCS#12 content type {content_type}",
                    )
            if algorithm is not None:
                raw = _decrypt(algorithm, raw, password, max_iterations)
                try:
                    safe = load_der(pkcs12.SafeContents, raw, max_size=max_size)
                except MalformedData as exc:
                    raise _DecryptionFailed from exc
            else:
                safe = load_der(pkcs12.SafeContents, raw, max_size=max_size)
            _collect_bags(safe, collected, password, max_iterations, 0)
    except _DecryptionFailed as exc:
        if mac_verified:
            raise MalformedData(
                "PKCS#12 内容解密后格式错误", "PKCS#12 content malformed after decryption"
            ) from exc
        raise WrongPassword("PKCS#12 口令错误", "Wrong PKCS#12 password") from exc
    return _assemble(collected)


def _assemble(collected: _Collected) -> Pkcs12Contents:
    if len(collected.keys) != 1:
        raise MalformedData(
            f"PKCS#12 中应有一个私钥，实际为 {len(collected.keys)} 个",
            f"Expected one private key in the PKCS#12 file, found {len(collected.keys)}",
        )
    key = _sm2_key(collected.keys[0])
    certs: list[Certificate] = []
    for der, asn1_cert in collected.certs:
        try:
            certs.append(certificate_from_asn1(asn1_cert, der))
        except CertificateError:
            continue  # not an SM2 certificate
    matching = [c for c in certs if c.public_key == key.public_key]
    if not matching:
        raise CertificateError(
            "PKCS#12 中没有与私钥匹配的 SM2 证书",
            "No SM2 certificate in the PKCS#12 file matches its private key",
        )
    cert = matching[0]
    extras = [c for c in certs if c is not cert and c.der != cert.der]
    return Pkcs12Contents(key=key, certificate=cert, extra_certificates=extras)
