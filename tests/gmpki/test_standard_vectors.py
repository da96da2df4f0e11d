"""The published examples of GB/T 32905 (SM3), GB/T 32907 (SM4) and GB/T 32918 (SM2).

The SM2 test-curve example (GB/T 32918.2 Annex A) is on a curve our backend does not support, so it
is checked with a small, independent pure-Python SM2 written here over generic curve parameters.
The same independent code then reproduces the recommended-curve example, tying our ``compute_z`` /
``message_digest`` / ``verify`` to the formula the standard publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gmpki import sm2, sm3, sm4
from tests.gmpki.conftest import load_vectors

VECTORS = load_vectors("sm_standards.json")


# --- an independent SM2 over any short Weierstrass curve (affine, textbook, slow) --------------------
@dataclass(frozen=True)
class Curve:
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int


Point = tuple[int, int] | None


def _add(c: Curve, p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % c.p == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + c.a) * pow(2 * y1, -1, c.p) % c.p
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, c.p) % c.p
    x3 = (lam * lam - x1 - x2) % c.p
    return x3, (lam * (x1 - x3) - y1) % c.p


def _mul(c: Curve, k: int, pt: Point) -> Point:
    acc: Point = None
    while k:
        if k & 1:
            acc = _add(c, acc, pt)
        pt = _add(c, pt, pt)
        k >>= 1
    return acc


def _sm3_int(data: bytes) -> int:
    return int.from_bytes(sm3.sm3(data), "big")


def independent_z(c: Curve, uid: bytes, xa: int, ya: int) -> bytes:
    size = (c.p.bit_length() + 7) // 8
    parts = [(len(uid) * 8).to_bytes(2, "big"), uid]
    parts += [v.to_bytes(size, "big") for v in (c.a, c.b, c.gx, c.gy, xa, ya)]
    return sm3.sm3(b"".join(parts))


def independent_verify(c: Curve, uid: bytes, xa: int, ya: int, msg: bytes, r: int, s: int) -> bool:
    """GB/T 32918.2 section 7: B1..B7."""
    if not (1 <= r < c.n and 1 <= s < c.n):
        return False
    e = _sm3_int(independent_z(c, uid, xa, ya) + msg)
    t = (r + s) % c.n
    if t == 0:
        return False
    point = _add(c, _mul(c, s, (c.gx, c.gy)), _mul(c, t, (xa, ya)))
    if point is None:
        return False
    return (e + point[0]) % c.n == r


def independent_sign(c: Curve, uid: bytes, d: int, msg: bytes, k: int) -> tuple[int, int]:
    """GB/T 32918.2 section 6 with a given k (only for reproducing published examples)."""
    pub = _mul(c, d, (c.gx, c.gy))
    assert pub is not None
    e = _sm3_int(independent_z(c, uid, *pub) + msg)
    kg = _mul(c, k, (c.gx, c.gy))
    assert kg is not None
    r = (e + kg[0]) % c.n
    s = pow(1 + d, -1, c.n) * (k - r * d) % c.n
    return r, s


RECOMMENDED = Curve(sm2.P, sm2.A, sm2.B, sm2.GX, sm2.GY, sm2.N)


def _h(v: dict[str, Any], key: str) -> int:
    return int(v[key], 16)


def _test_curve() -> Curve:
    c = VECTORS["sm2_test_curve"]["curve"]
    return Curve(*(int(c[k], 16) for k in ("p", "a", "b", "xG", "yG", "n")))


# --- SM3 / SM4 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["sm3"], ids=lambda v: v["standard"])
def test_sm3_published_digests(vector: dict[str, str]) -> None:
    message = vector["message_ascii"].encode("ascii")
    assert sm3.sm3(message).hex() == vector["digest"]
    # the incremental path must agree byte for byte, split anywhere
    h = sm3.new()
    for i in range(0, len(message), 7):
        h.update(message[i : i + 7])
    assert h.hexdigest() == vector["digest"]
    assert sm3.sm3(message + b"\x00").hex() != vector["digest"]


@pytest.mark.parametrize("vector", VECTORS["sm4"], ids=lambda v: v["standard"])
def test_sm4_published_block(vector: dict[str, str]) -> None:
    key = bytes.fromhex(vector["key"])
    out = sm4.encrypt_block(key, bytes.fromhex(vector["plaintext"]))
    assert out.hex() == vector["ciphertext"]
    flipped = bytearray(key)
    flipped[0] ^= 1
    assert sm4.encrypt_block(bytes(flipped), bytes.fromhex(vector["plaintext"])).hex() != vector["ciphertext"]


# --- SM2, recommended curve (GB/T 32918.5 Annex A) -------------------------------------------------
def test_sm2_recommended_curve_example_with_our_implementation() -> None:
    v = VECTORS["sm2_recommended_curve"]
    uid = v["id_ascii"].encode()
    msg = v["message_ascii"].encode()
    key = sm2.SM2PrivateKey(bytes.fromhex(v["d"]))
    # public key derived from d is the published one
    assert key.public_key.point == bytes.fromhex("04" + v["xA"] + v["yA"])
    pub = key.public_key
    assert sm2.compute_z(pub.point, uid).hex() == v["ZA"]
    assert pub.z(uid).hex() == v["ZA"]
    assert sm2.message_digest(pub, msg, uid).hex() == v["e"]
    signature = sm2.encode_signature(_h(v, "r"), _h(v, "s"))
    assert sm2.verify(pub, msg, signature, uid)
    assert sm2.verify_digest(pub, bytes.fromhex(v["e"]), signature)
    # each input matters
    assert not sm2.verify(pub, msg + b".", signature, uid)
    assert not sm2.verify(pub, msg, signature, b"ALICE123@YAHOO.COM")
    assert not sm2.verify(pub, msg, sm2.encode_signature(_h(v, "r"), _h(v, "s") ^ 1), uid)


def test_sm2_recommended_curve_example_with_independent_code() -> None:
    v = VECTORS["sm2_recommended_curve"]
    uid = v["id_ascii"].encode()
    msg = v["message_ascii"].encode()
    xa, ya = _h(v, "xA"), _h(v, "yA")
    assert _mul(RECOMMENDED, _h(v, "d"), (sm2.GX, sm2.GY)) == (xa, ya)
    assert independent_z(RECOMMENDED, uid, xa, ya).hex() == v["ZA"]
    assert independent_sign(RECOMMENDED, uid, _h(v, "d"), msg, _h(v, "k")) == (_h(v, "r"), _h(v, "s"))
    assert independent_verify(RECOMMENDED, uid, xa, ya, msg, _h(v, "r"), _h(v, "s"))


def test_our_signatures_verify_under_the_independent_code() -> None:
    key = sm2.SM2PrivateKey.generate()
    msg = b"independent cross-check"
    r, s = sm2.decode_signature(sm2.sign(key, msg))
    pub = key.public_key
    assert independent_verify(RECOMMENDED, sm2.DEFAULT_ID, pub.x, pub.y, msg, r, s)
    assert not independent_verify(RECOMMENDED, sm2.DEFAULT_ID, pub.x, pub.y, msg + b"!", r, s)
    # and our Z for a random key is the standard's formula
    assert pub.z().hex() == independent_z(RECOMMENDED, sm2.DEFAULT_ID, pub.x, pub.y).hex()


# --- SM2, test curve (GB/T 32918.2 Annex A) --------------------------------------------------------
def test_sm2_test_curve_example() -> None:
    v = VECTORS["sm2_test_curve"]
    curve = _test_curve()
    uid = v["id_ascii"].encode()
    msg = v["message_ascii"].encode()
    xa, ya = _h(v, "xA"), _h(v, "yA")
    assert (ya * ya - xa**3 - curve.a * xa - curve.b) % curve.p == 0
    assert _mul(curve, _h(v, "d"), (curve.gx, curve.gy)) == (xa, ya)
    z = independent_z(curve, uid, xa, ya)
    assert z.hex() == v["ZA"]
    assert sm3.sm3(z + msg).hex() == v["e"]
    assert independent_sign(curve, uid, _h(v, "d"), msg, _h(v, "k")) == (_h(v, "r"), _h(v, "s"))
    assert independent_verify(curve, uid, xa, ya, msg, _h(v, "r"), _h(v, "s"))
    assert not independent_verify(curve, uid, xa, ya, b"message digesT", _h(v, "r"), _h(v, "s"))
    assert not independent_verify(curve, uid, xa, ya, msg, _h(v, "r"), (_h(v, "s") + 1) % curve.n)


def test_compute_z_is_the_same_formula_as_the_test_curve_z() -> None:
    """sm2.compute_z on the recommended curve and the independent Z agree for the test-curve ID."""
    v = VECTORS["sm2_test_curve"]
    uid = v["id_ascii"].encode()
    key = sm2.SM2PrivateKey.generate()
    pub = key.public_key
    assert sm2.compute_z(pub.point, uid) == independent_z(RECOMMENDED, uid, pub.x, pub.y)
    assert sm2.compute_z(pub.point, b"") == independent_z(RECOMMENDED, b"", pub.x, pub.y)
