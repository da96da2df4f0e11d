"""Signature checks that do not go through the key stores' own code.

P-256 and RSA: pyca/cryptography, from the SPKI the store reported. SM2: both gmpki.sm2 (GmSSL)
and gmalg (an independent pure-Python implementation); the two must agree on every signature.
"""

from __future__ import annotations

import gmalg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gmpki import sm2
from hsm_adapters.keystore import KeyAlgorithm, KeyInfo


def _gmalg_verify(point: bytes, message: bytes, signature: bytes) -> bool:
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    if not (0 < r < 2**256 and 0 < s < 2**256):
        return False
    verifier = gmalg.SM2(uid=sm2.DEFAULT_ID, pk=point)
    return bool(verifier.verify(message, r.to_bytes(32, "big"), s.to_bytes(32, "big")))


def sm2_e_by_gmalg(point: bytes, message: bytes) -> bytes:
    """e = SM3(Z ‖ M) computed by gmalg alone."""
    ref = gmalg.SM2(uid=sm2.DEFAULT_ID, pk=point)
    z = ref._core.entity_info(sm2.DEFAULT_ID, ref._pk)
    h = gmalg.SM3()
    h.update(z + message)
    return bytes(h.value())


def verify(info: KeyInfo, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid signature of ``message`` under the key ``info`` describes."""
    if info.algorithm is KeyAlgorithm.SM2:
        assert info.sm2_point is not None
        by_gmssl = sm2.verify(sm2.SM2PublicKey(info.sm2_point), message, signature)
        by_gmalg = _gmalg_verify(info.sm2_point, message, signature)
        assert by_gmssl == by_gmalg, "gmpki and gmalg disagree about an SM2 signature"
        return by_gmssl
    public = serialization.load_der_public_key(info.public_key_der)
    try:
        if info.algorithm is KeyAlgorithm.EC_P256:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            assert isinstance(public.curve, ec.SECP256R1)
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            assert public.key_size == 3072
            public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
