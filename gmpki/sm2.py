"""SM2 signatures (GB/T 32918.2) on the recommended curve (GB/T 32918.5).

Backend: gmssl-pyx (GmSSL 3, native), chosen by measurement (see bench/sm2.py and
``../shared/design/sm-crypto.md``). Signing goes through ``sm2_sign_sm3_digest`` with the Z value
computed once per (key, ID) and cached, which is ~12x faster than the one-call API that recomputes Z.

Encodings at this boundary: signatures are always DER ``SEQUENCE{r, s}`` out; raw ``r‖s`` is
converted explicitly with :func:`raw_to_der` / :func:`der_to_raw`. Public keys are the 65-byte
uncompressed point ``04‖x‖y``; 64-byte ``x‖y`` is accepted on input.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import gmssl_pyx

from core.errors import CryptoError, InvalidInput

from . import sm3 as _sm3

DEFAULT_ID = b"1234567812345678"

# GB/T 32918.5 recommended curve parameters.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

_CURVE_PREFIX = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))


def _is_on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


@dataclass(frozen=True)
class SM2PublicKey:
    """An SM2 public key: the uncompressed point. Validated on construction (on the curve)."""

    point: bytes  # 65 bytes, 04 ‖ x ‖ y
    _z_cache: dict[bytes, bytes] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.point) != 65 or self.point[0] != 0x04:
            raise InvalidInput(
                "SM2 公钥必须为 65 字节未压缩点", "SM2 public key must be a 65-byte uncompressed point"
            )
        if not _is_on_curve(self.x, self.y):
            raise InvalidInput("SM2 公钥不在曲线上", "SM2 public key is not on the curve")

    @classmethod
    def from_bytes(cls, data: bytes) -> SM2PublicKey:
        """Accept ``04‖x‖y`` (65 bytes) or ``x‖y`` (64 bytes)."""
        data = bytes(data)
        if len(data) == 64:
            data = b"\x04" + data
        return cls(data)

    @property
    def x(self) -> int:
        return int.from_bytes(self.point[1:33], "big")

    @property
    def y(self) -> int:
        return int.from_bytes(self.point[33:65], "big")

    @property
    def xy(self) -> bytes:
        """64-byte ``x‖y`` as most native APIs want it."""
        return self.point[1:]

    def z(self, uid: bytes = DEFAULT_ID) -> bytes:
        """Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA), cached per ID."""
        cached = self._z_cache.get(uid)
        if cached is None:
            cached = compute_z(self.point, uid)
            self._z_cache[uid] = cached
        return cached


class SM2PrivateKey:
    """An SM2 private key held in process memory (the soft key store and tests use it).

    The secret is not exposed through ``repr`` or ``str`` so that it never reaches a log.
    """

    __slots__ = ("_d", "public_key")

    def __init__(self, secret: bytes, public_key: SM2PublicKey | None = None) -> None:
        if len(secret) != 32:
            raise InvalidInput("SM2 私钥必须为 32 字节", "SM2 private key must be 32 bytes")
        d = int.from_bytes(secret, "big")
        if not 1 <= d <= N - 2:
            raise InvalidInput("SM2 私钥超出范围", "SM2 private key out of range")
        self._d = bytes(secret)
        self.public_key = public_key if public_key is not None else SM2PublicKey(_derive_public(d))

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        pub, priv = gmssl_pyx.sm2_key_generate()
        return cls(bytes(priv), SM2PublicKey(b"\x04" + bytes(pub)))

    def secret_bytes(self) -> bytes:
        """The 32-byte scalar. Only key stores call this, to wrap it for storage."""
        return self._d

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self.public_key.point[:5].hex()}…)"


def _derive_public(d: int) -> bytes:
    # Double-and-add in Jacobian coordinates; used only when importing a key (PKCS#12, tests),
    # never on the signing path, so clarity beats speed here.
    def add(p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
        x1, y1, z1 = p1
        x2, y2, z2 = p2
        if z1 == 0:
            return p2
        if z2 == 0:
            return p1
        u1, u2 = x1 * z2 * z2 % P, x2 * z1 * z1 % P
        s1, s2 = y1 * pow(z2, 3, P) % P, y2 * pow(z1, 3, P) % P
        if u1 == u2:
            if s1 != s2:
                return (1, 1, 0)
            return dbl(p1)
        h, r = (u2 - u1) % P, (s2 - s1) % P
        h2 = h * h % P
        h3 = h2 * h % P
        x3 = (r * r - h3 - 2 * u1 * h2) % P
        y3 = (r * (u1 * h2 - x3) - s1 * h3) % P
        return (x3, y3, h * z1 * z2 % P)

    def dbl(p1: tuple[int, int, int]) -> tuple[int, int, int]:
        x1, y1, z1 = p1
        if z1 == 0 or y1 == 0:
            return (1, 1, 0)
        s = 4 * x1 * y1 * y1 % P
        m = (3 * x1 * x1 + A * pow(z1, 4, P)) % P
        x3 = (m * m - 2 * s) % P
        y3 = (m * (s - x3) - 8 * pow(y1, 4, P)) % P
        return (x3, y3, 2 * y1 * z1 % P)

    acc: tuple[int, int, int] = (1, 1, 0)
    base: tuple[int, int, int] = (GX, GY, 1)
    while d:
        if d & 1:
            acc = add(acc, base)
        base = dbl(base)
        d >>= 1
    x, y, z = acc
    zi = pow(z, -1, P)
    ax, ay = x * zi * zi % P, y * pow(zi, 3, P) % P
    return b"\x04" + ax.to_bytes(32, "big") + ay.to_bytes(32, "big")


def compute_z(public_point: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    if len(uid) > 8191:
        raise InvalidInput("SM2 用户标识过长", "SM2 user ID too long")
    entl = (len(uid) * 8).to_bytes(2, "big")
    return _sm3.sm3(entl + uid + _CURVE_PREFIX + public_point[1:33] + public_point[33:65])


def message_digest(public_key: SM2PublicKey, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """e = SM3(Z ‖ M): the digest that is actually signed."""
    h = _sm3.new(public_key.z(uid))
    h.update(message)
    return h.digest()


# --- signature encodings --------------------------------------------------------------------------
def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # +1 keeps the sign bit clear
    return b"\x02" + _der_len(len(body)) + body


def encode_signature(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return b"\x30" + _der_len(len(body)) + body


def decode_signature(sig: bytes) -> tuple[int, int]:
    """Strict DER ``SEQUENCE{INTEGER r, INTEGER s}`` → (r, s), with 1 ≤ r, s < n.

    Strict because a lax decoder makes signatures malleable (the same (r, s) in several encodings).
    """
    err = CryptoError("SM2 签名编码无效", "Invalid SM2 signature encoding")
    if len(sig) < 8 or len(sig) > 80 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        raise err
    pos = 2
    out: list[int] = []
    for _ in range(2):
        if pos + 2 > len(sig) or sig[pos] != 0x02:
            raise err
        ln = sig[pos + 1]
        if ln == 0 or ln > 33 or pos + 2 + ln > len(sig):
            raise err
        body = sig[pos + 2 : pos + 2 + ln]
        if body[0] & 0x80 or (ln > 1 and body[0] == 0 and not body[1] & 0x80):
            raise err
        out.append(int.from_bytes(body, "big"))
        pos += 2 + ln
    if pos != len(sig):
        raise err
    r, s = out
    if not (1 <= r < N and 1 <= s < N):
        raise CryptoError("SM2 签名值超出范围", "SM2 signature value out of range")
    return r, s


def raw_to_der(raw: bytes) -> bytes:
    """64-byte ``r‖s`` → DER."""
    if len(raw) != 64:
        raise CryptoError("原始 SM2 签名必须为 64 字节", "Raw SM2 signature must be 64 bytes")
    return encode_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def der_to_raw(sig: bytes) -> bytes:
    """DER → 64-byte ``r‖s`` (each padded to 32 bytes)."""
    r, s = decode_signature(sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def normalize_signature(sig: bytes) -> bytes:
    """Accept DER or, tolerantly, raw 64-byte ``r‖s`` (some vendors); return strict DER."""
    if len(sig) == 64 and sig[0] != 0x30:
        return raw_to_der(sig)
    decode_signature(sig)
    return sig


# --- sign / verify ---------------------------------------------------------------------------------
def sign_digest(key: SM2PrivateKey, digest: bytes) -> bytes:
    """Sign a prepared e = SM3(Z ‖ M). Returns DER."""
    if len(digest) != 32:
        raise InvalidInput("SM2 签名摘要必须为 32 字节", "SM2 digest must be 32 bytes")
    try:
        return bytes(gmssl_pyx.sm2_sign_sm3_digest(key.secret_bytes(), digest))
    except gmssl_pyx.GmsslInnerError as exc:  # pragma: no cover - backend failure
        raise CryptoError("SM2 签名失败", "SM2 signing failed") from exc


def sign(key: SM2PrivateKey, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """SM2-with-SM3 signature of ``message`` (Z pre-hash with ``uid``). Returns DER."""
    return sign_digest(key, message_digest(key.public_key, message, uid))


def verify_digest(public_key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
    """Verify a DER signature over a prepared e. False for any invalid signature or encoding."""
    if len(digest) != 32:
        return False
    try:
        decode_signature(signature)
    except CryptoError:
        return False
    # Imported here, not at module top, so processes that only sign never load libcrypto; after
    # the first call this is a sys.modules lookup. OpenSSL verifies ~2x faster than gmssl-pyx,
    # releases the GIL and prints nothing on failure (see gmpki/openssl_sm2.py).
    from . import openssl_sm2

    if openssl_sm2.AVAILABLE:
        return openssl_sm2.verify_digest(public_key.point, digest, signature)
    try:
        return bool(gmssl_pyx.sm2_verify_sm3_digest(public_key.xy, digest, signature))
    except gmssl_pyx.GmsslInnerError:
        return False


def verify(public_key: SM2PublicKey, message: bytes, signature: bytes, uid: bytes = DEFAULT_ID) -> bool:
    """Verify a DER SM2-with-SM3 signature of ``message``."""
    return verify_digest(public_key, message_digest(public_key, message, uid), signature)


def random_scalar() -> int:
    return secrets.randbelow(N - 2) + 1
