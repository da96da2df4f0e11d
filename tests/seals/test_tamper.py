"""One changed byte or bit fails exactly the check that covers it, and leaves the others as they were."""

from __future__ import annotations

import pytest

from gmpki import seal as S

pytestmark = pytest.mark.interop

VALID, INVALID = S.SignatureCheck.VALID, S.SignatureCheck.INVALID


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def _picture_offset(data: bytes, seal: S.ParsedSeal) -> int:
    start = data.index(seal.picture_data)
    return start + len(seal.picture_data) // 2


def test_untampered_baseline(seal_v4: bytes, signed_value_v4: bytes) -> None:
    sig = S.parse_ses_signature(signed_value_v4)
    assert S.check_maker_signature(S.parse_seal(seal_v4)) is VALID
    assert (S.check_maker_signature(sig.seal), S.check_signer_signature(sig)) == (VALID, VALID)


def test_picture_byte_in_seal_fails_maker_signature(seal_v4: bytes, seal_v1: bytes) -> None:
    for original in (seal_v4, seal_v1):
        seal = S.parse_seal(original)
        tampered = S.parse_seal(_flip(original, _picture_offset(original, seal)))
        assert tampered.picture_data != seal.picture_data
        assert tampered.es_id == seal.es_id  # still a well-formed seal
        assert S.check_maker_signature(tampered) is INVALID


def test_picture_byte_in_signed_value_fails_both_signatures(signed_value_v4: bytes) -> None:
    sig = S.parse_ses_signature(signed_value_v4)
    tampered = S.parse_ses_signature(_flip(signed_value_v4, _picture_offset(signed_value_v4, sig.seal)))
    assert S.check_maker_signature(tampered.seal) is INVALID
    assert S.check_signer_signature(tampered) is INVALID  # TBS_Sign embeds the seal
    assert S.cert_list_contains(tampered.seal, tampered.signer_cert_der) is True
    assert tampered.data_hash == sig.data_hash and tampered.time_info == sig.time_info


def test_bit_in_signer_signature_fails_only_signer_signature(signed_value_v4: bytes) -> None:
    sig = S.parse_ses_signature(signed_value_v4)
    # The last byte of the file is the last byte of s inside the signer's DER SM2Signature.
    assert signed_value_v4.endswith(sig.signature)
    tampered = S.parse_ses_signature(_flip(signed_value_v4, len(signed_value_v4) - 1))
    assert tampered.signature != sig.signature
    assert S.check_signer_signature(tampered) is INVALID
    assert S.check_maker_signature(tampered.seal) is VALID
    assert tampered.seal.raw == sig.seal.raw
    assert S.cert_list_contains(tampered.seal, tampered.signer_cert_der) is True


def test_bit_in_maker_signature_fails_maker_and_signer(seal_v4: bytes, signed_value_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    assert seal_v4.endswith(seal.signature)
    assert S.check_maker_signature(S.parse_seal(_flip(seal_v4, len(seal_v4) - 1))) is INVALID
    inside = signed_value_v4.index(seal_v4) + len(seal_v4) - 1
    tampered = S.parse_ses_signature(_flip(signed_value_v4, inside))
    assert (S.check_maker_signature(tampered.seal), S.check_signer_signature(tampered)) == (INVALID, INVALID)


def test_time_info_change_fails_only_signer(signed_value_v4: bytes) -> None:
    at = signed_value_v4.index(b"20201012111403Z")
    tampered = S.parse_ses_signature(signed_value_v4[:at] + b"20211012111403Z" + signed_value_v4[at + 15 :])
    assert tampered.time_info is not None and tampered.time_info.year == 2021
    assert (S.check_maker_signature(tampered.seal), S.check_signer_signature(tampered)) == (VALID, INVALID)


def test_unsigned_fields_do_not_break_signer_signature_but_are_caught(signed_value_v4: bytes) -> None:
    sig = S.parse_ses_signature(signed_value_v4)
    # Swap the (unsigned) algorithm OID for something else: rejected by the allow-list.
    oid_at = len(sig.tbs_bytes) + 4 + 4 + len(sig.signer_cert_der)
    assert signed_value_v4[oid_at : oid_at + 10] == bytes.fromhex("06082a811ccf55018375")
    other = signed_value_v4[:oid_at] + bytes.fromhex("06082a811ccf55018376") + signed_value_v4[oid_at + 10 :]
    assert S.check_signer_signature(S.parse_ses_signature(other)) is S.SignatureCheck.UNSUPPORTED_ALGORITHM
    # A byte flipped inside the (unsigned) signer certificate: its key no longer matches.
    cert_at = signed_value_v4.index(sig.signer_cert_der, len(sig.tbs_bytes))
    spki_at = cert_at + sig.signer_cert_der.index(b"\x03\x42\x00\x04") + 20
    tampered = S.parse_ses_signature(_flip(signed_value_v4, spki_at))
    assert S.check_signer_signature(tampered) in (S.SignatureCheck.BAD_CERTIFICATE, INVALID)
    assert S.cert_list_contains(tampered.seal, tampered.signer_cert_der) is False
    assert S.check_maker_signature(tampered.seal) is VALID
