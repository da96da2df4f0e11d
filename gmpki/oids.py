"""The SM object identifiers, and their registration in asn1crypto's maps (done once, here).

asn1crypto knows none of the Chinese commercial cryptography OIDs: without registration an SM2
certificate parses, but ``signature_algo`` / ``hash_algo`` raise and the SM2 curve shows up as a bare
dotted string. Every gmpki module that parses or builds SM structures imports this module; importing
it registers everything, and calling :func:`register` again is harmless.
"""

from __future__ import annotations

from typing import Any, Final

from asn1crypto import algos, cms, core, keys

# --- GM/T 0006 / GB/T 33560 algorithm identifiers ---------------------------------------------------
SM2_CURVE: Final = "1.2.156.10197.1.301"  # SM2 elliptic curve (also "SM2 algorithm")
SM2_SIGN: Final = "1.2.156.10197.1.301.1"  # SM2-1 digital signature
SM2_KEY_EXCHANGE: Final = "1.2.156.10197.1.301.2"  # SM2-2 key exchange
SM2_ENCRYPT: Final = "1.2.156.10197.1.301.3"  # SM2-3 public key encryption
SM3: Final = "1.2.156.10197.1.401"
HMAC_SM3: Final = "1.2.156.10197.1.401.2"  # "SM3 with key" (GM/T 0006); what GmSSL and most tools emit
HMAC_SM3_GMT0091: Final = "1.2.156.10197.1.401.3.1"  # id-hmacWithSM3 as printed in GM/T 0091
SM2_WITH_SM3: Final = "1.2.156.10197.1.501"  # signature algorithm in certificates, CRLs, seals
SM4: Final = "1.2.156.10197.1.104"
SM4_ECB: Final = "1.2.156.10197.1.104.1"
SM4_CBC: Final = "1.2.156.10197.1.104.2"

# --- GB/T 35275 (GM/T 0010) content types -----------------------------------------------------------
GM_DATA: Final = "1.2.156.10197.6.1.4.2.1"
GM_SIGNED_DATA: Final = "1.2.156.10197.6.1.4.2.2"
GM_ENVELOPED_DATA: Final = "1.2.156.10197.6.1.4.2.3"
GM_SIGNED_AND_ENVELOPED_DATA: Final = "1.2.156.10197.6.1.4.2.4"
GM_ENCRYPTED_DATA: Final = "1.2.156.10197.6.1.4.2.5"
GM_KEY_AGREEMENT_INFO: Final = "1.2.156.10197.6.1.4.2.6"

# --- well-known non-SM OIDs gmpki refers to ---------------------------------------------------------
EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
ORGANIZATION_IDENTIFIER: Final = "2.5.4.97"  # X.520; carries the unified social credit code here
EKU_TIME_STAMPING: Final = "1.3.6.1.5.5.7.3.8"
# Seal-status snapshots and trust lists are signed status statements, the role OCSP responses play for
# certificates, so the service certificate carries id-kp-OCSPSigning to set it apart from signers.
EKU_OCSP_SIGNING: Final = "1.3.6.1.5.5.7.3.9"

# asn1crypto names. Stable: other modules compare ``.native`` values against these.
NAME_SM2_CURVE: Final = "sm2p256v1"
NAME_SM3: Final = "sm3"
NAME_SM2_WITH_SM3: Final = "sm2sm3"
NAME_SM2_SIGN: Final = "sm2_sign"
NAME_SM4_CBC: Final = "sm4_cbc"

# signature algorithm name -> (signature_algo, hash_algo) as the patched properties report them
_SM_SIGNATURES: Final[dict[str, tuple[str, str]]] = {
    NAME_SM2_WITH_SM3: ("sm2", "sm3"),
    NAME_SM2_SIGN: ("sm2", "sm3"),
}

_MARK = "_eseal_sm_registered"


def _add(oid_cls: type[core.ObjectIdentifier], oid: str, name: str) -> None:
    existing = oid_cls._map.get(oid)
    if existing not in (None, name):
        raise RuntimeError(f"{oid_cls.__name__}: {oid} already registered as {existing!r}")
    oid_cls._map[oid] = name
    # _reverse_map is built lazily on first use; keep it in step if it already exists.
    if oid_cls._reverse_map is not None:
        oid_cls._reverse_map[name] = oid


def _patch_signed_digest_algorithm() -> None:
    # asn1crypto hard-codes the name tables inside these two properties, so registering the OID
    # alone is not enough: wrap them to answer for the SM names and delegate everything else.
    cls: Any = algos.SignedDigestAlgorithm
    if getattr(cls, _MARK, False):
        return
    orig_sig = cls.signature_algo
    orig_hash = cls.hash_algo

    def signature_algo(self: Any) -> str:
        pair = _SM_SIGNATURES.get(self["algorithm"].native)
        return pair[0] if pair else str(orig_sig.fget(self))

    def hash_algo(self: Any) -> str:
        pair = _SM_SIGNATURES.get(self["algorithm"].native)
        return pair[1] if pair else str(orig_hash.fget(self))

    cls.signature_algo = property(signature_algo, doc=orig_sig.__doc__)
    cls.hash_algo = property(hash_algo, doc=orig_hash.__doc__)
    setattr(cls, _MARK, True)


def register() -> None:
    """Register the SM OIDs in asn1crypto. Idempotent; runs on import of this module."""
    if getattr(keys.NamedCurve, _MARK, False):
        return
    if SM2_CURVE not in keys.NamedCurve._map:
        keys.NamedCurve.register(NAME_SM2_CURVE, SM2_CURVE, 32)

    _add(algos.DigestAlgorithmId, SM3, NAME_SM3)
    _add(algos.HmacAlgorithmId, HMAC_SM3, NAME_SM3)
    _add(algos.SignedDigestAlgorithmId, SM2_WITH_SM3, NAME_SM2_WITH_SM3)
    _add(algos.SignedDigestAlgorithmId, SM2_SIGN, NAME_SM2_SIGN)
    _add(algos.EncryptionAlgorithmId, SM4_CBC, NAME_SM4_CBC)
    algos.EncryptionAlgorithm._oid_specs.setdefault(NAME_SM4_CBC, core.OctetString)
    _patch_signed_digest_algorithm()

    # GM/T 0010 structures are the PKCS#7 ones under SM content-type OIDs.
    for oid, name, spec in (
        (GM_DATA, "sm2_data", core.OctetString),
        (GM_SIGNED_DATA, "sm2_signed_data", cms.SignedData),
        (GM_ENVELOPED_DATA, "sm2_enveloped_data", cms.EnvelopedData),
        (GM_SIGNED_AND_ENVELOPED_DATA, "sm2_signed_and_enveloped_data", cms.SignedAndEnvelopedData),
        (GM_ENCRYPTED_DATA, "sm2_encrypted_data", cms.EncryptedData),
    ):
        _add(cms.ContentType, oid, name)
        cms.ContentInfo._oid_specs.setdefault(name, spec)
    _add(cms.ContentType, GM_KEY_AGREEMENT_INFO, "sm2_key_agreement_info")
    setattr(keys.NamedCurve, _MARK, True)


register()
