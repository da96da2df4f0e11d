"""Detached SES signatures over any data, the time-stamp hook, and two-step signing without a network
(prepare locally → the service signs the digest → finish locally)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db import transaction
from core.errors import InvalidInput, MalformedData
from gmpki import seal as ses
from gmpki.sm3 import sm3
from seal_registry.models import Seal
from signer.ofd_sealing import analyse_ofd, finish_seal, prepare_seal
from signer.placement import AtKeyword
from signer.ses_signing import SesResult, default_property_info, parse_digest_hex, sign_data
from signer.two_step import RemoteSigningError, check_remote_signature, sign_digest
from tests.registry.conftest import Registry
from verify import FileTrustSource, Indication, verify_bytes

from .conftest import SIGNER, utc
from .independent import openssl_sm2_verify, split_ses

DATA = "合同正文 contract body\n".encode() * 100

pytestmark = pytest.mark.interop


def _sign(region: Registry, seal: Seal, data: object, **kwargs: object) -> SesResult:
    with transaction(region.sessions) as s:
        return sign_data(
            s,
            region.keystore,
            data,  # type: ignore[arg-type]
            es_id=seal.es_id,
            department_id=region.department.id,
            actor=SIGNER,
            **kwargs,  # type: ignore[arg-type]
        )


def test_ses_over_data_verifies_with_the_data_only(
    region: Registry, seal: Seal, trust: FileTrustSource, tmp_path: Path
) -> None:
    result = _sign(region, seal, DATA, name="合同.pdf")
    assert result.property_info == "file:%E5%90%88%E5%90%8C.pdf"
    assert result.data_hash == sm3(DATA) and result.seal == seal.seal_der and result.es_id == seal.es_id
    report = verify_bytes(result.signature, detached_data=DATA, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()
    tampered = verify_bytes(result.signature, detached_data=DATA + b"!", trust=trust)
    assert tampered.indication is Indication.FAILED
    assert tampered.signatures[0].check("document.data_hash").result.value == "failed"
    assert tampered.signatures[0].check("signer.signature").result.value == "passed"

    # Independently: the DER fields by position, SM3 by hashlib, SM2 by OpenSSL.
    parts = split_ses(result.signature)
    assert parts.data_hash == sm3(DATA) and parts.property_info == result.property_info
    assert parts.seal == seal.seal_der and parts.algorithms_ok
    assert openssl_sm2_verify(parts.signer_cert, parts.tbs, parts.signer_signature, tmp_path / "s")
    assert openssl_sm2_verify(parts.maker_cert, parts.seal_info, parts.maker_signature, tmp_path / "m")
    assert not openssl_sm2_verify(
        parts.signer_cert, parts.tbs + b"\x00", parts.signer_signature, tmp_path / "x"
    )

    details = region.last_audit().details_dict()
    assert details["document_sm3"] == sm3(DATA).hex() and details["document_name"] == "合同.pdf"
    assert details["format"] == "ses" and details["es_id"] == seal.es_id


def test_property_info_defaults_and_checks(region: Registry, seal: Seal) -> None:
    digest = sm3(b"x")
    assert default_property_info(digest) == "sm3:" + digest.hex()
    assert default_property_info(digest, "C:\\docs\\a b.txt") == "file:a%20b.txt"
    assert _sign(region, seal, [b"ab", b"c"]).data_hash == sm3(b"abc")  # chunks hash like the whole
    assert _sign(region, seal, b"abc", property_info="urn:contract:42").property_info == "urn:contract:42"
    before = region.audit_count()
    for bad in ("合同", "", "a\nb", "x" * 1025):
        with pytest.raises(InvalidInput):
            _sign(region, seal, b"abc", property_info=bad)
    assert region.audit_count() == before
    assert parse_digest_hex(" " + digest.hex().upper() + "\n") == digest
    for bad in ("", "00" * 31, "zz" * 32, "00" * 33):
        with pytest.raises(InvalidInput):
            parse_digest_hex(bad)


def test_time_stamp_hook_receives_the_signature_value(region: Registry, seal: Seal) -> None:
    seen: list[bytes] = []

    def tsa(signature: bytes) -> bytes:
        seen.append(signature)
        return b"token over " + sm3(signature)

    result = _sign(region, seal, DATA, time_stamp=tsa)
    parsed = ses.parse_ses_signature(result.signature)
    assert seen == [parsed.signature]
    assert parsed.time_stamp == b"token over " + sm3(parsed.signature)
    assert region.last_audit().details_dict()["time_stamped"] is True


def test_two_step_ofd_without_the_document_reaching_the_service(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes
) -> None:
    assert seal.seal_der is not None
    # Client: analyse and prepare with the downloaded seal; only the digest goes to the service.
    prepared = prepare_seal(
        analyse_ofd(helloworld, placement=AtKeyword("OFD")), seal.seal_der, utc(2026, 3, 1, 8, 0, 0)
    )
    with transaction(region.sessions) as s:
        answer = sign_digest(
            s,
            region.keystore,
            es_id=seal.es_id,
            department_id=region.department.id,
            digest=prepared.data_hash,
            property_info=prepared.property_info,
            actor=SIGNER,
        )
    details = region.last_audit().details_dict()
    assert details["two_step"] is True and details["data_sm3"] == prepared.data_hash.hex()
    check_remote_signature(
        answer.signature, digest=prepared.data_hash, property_info=prepared.property_info, seal=seal.seal_der
    )
    sealed = finish_seal(prepared, answer.signature)
    report = verify_bytes(sealed, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()

    # A signature over anything else is refused before a document is written.
    with transaction(region.sessions) as s:
        other = sign_digest(
            s,
            region.keystore,
            es_id=seal.es_id,
            department_id=region.department.id,
            digest=sm3(b"another document"),
            property_info=prepared.property_info,
            actor=SIGNER,
        )
    with pytest.raises(MalformedData):
        finish_seal(prepared, other.signature)
    with pytest.raises(RemoteSigningError) as wrong:
        check_remote_signature(other.signature, digest=prepared.data_hash, property_info="/elsewhere.xml")
    assert "dataHash" in wrong.value.message_en and "propertyInfo" in wrong.value.message_en
    with pytest.raises(RemoteSigningError):
        check_remote_signature(
            answer.signature, digest=prepared.data_hash, property_info=prepared.property_info, seal=b"0"
        )
    with pytest.raises(RemoteSigningError):
        check_remote_signature(b"\x30\x00", digest=prepared.data_hash, property_info="x")
