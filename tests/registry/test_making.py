"""Made seals: read back with gmpki.seal, maker signature, certificate list, validity, chain."""

from __future__ import annotations

from datetime import timedelta

from gmpki import seal as ses
from gmpki.path_validation import validate_path
from gmpki.sm3 import sm3
from gmpki.x509 import load_certificate_der
from seal_registry.lifecycle import SealState
from seal_registry.pki import CertRole, current_certificate, trust_anchors

from .conftest import PICTURE, Registry


def test_made_seal_reads_back_and_verifies(registry: Registry) -> None:
    seal = registry.seal_in(SealState.MADE, name="测试合同专用章", valid_days=30)
    assert seal.seal_der is not None
    assert seal.seal_sm3 == sm3(seal.seal_der).hex()
    parsed = ses.parse_seal(seal.seal_der)
    assert (parsed.version, parsed.header_id, parsed.header_version, parsed.vid) == (4, "ES", 4, "eseal")
    assert parsed.es_id == seal.es_id and parsed.name == "测试合同专用章"
    assert parsed.seal_type == 2  # contract
    assert parsed.cert_list_type == 1 and parsed.cert_list == (registry.certificate.der,)
    assert ses.cert_list_contains(parsed, registry.certificate.der) is True
    assert (parsed.picture_type, parsed.picture_data) == ("PNG", PICTURE)
    assert (parsed.picture_width, parsed.picture_height) == (40, 40)
    assert (parsed.valid_start, parsed.valid_end) == (seal.valid_start, seal.valid_end)
    assert seal.valid_end - seal.valid_start == timedelta(days=30)
    assert parsed.extensions == () and parsed.time_stamp is None and parsed.warnings == ()
    assert ses.check_maker_signature(parsed) is ses.SignatureCheck.VALID

    with registry.sessions() as s:
        maker_row = current_certificate(s, CertRole.SEAL_MAKER)
        anchors = trust_anchors(s)
    assert parsed.maker_cert_der == maker_row.der
    # The maker certificate chains to the region root
    validate_path(load_certificate_der(parsed.maker_cert_der), trust_anchors=anchors, at=parsed.create_date)

    # A flipped byte inside the signed SES_SealInfo (the picture) breaks exactly the maker signature
    at = seal.seal_der.index(PICTURE) + 100
    tampered = bytearray(seal.seal_der)
    tampered[at] ^= 0x01
    reparsed = ses.parse_seal(bytes(tampered))
    assert reparsed.es_id == seal.es_id
    assert ses.check_maker_signature(reparsed) is ses.SignatureCheck.INVALID


def test_validity_is_cut_at_the_signer_certificate_end(registry: Registry) -> None:
    seal = registry.seal_in(SealState.MADE, valid_days=3650)
    assert seal.valid_end == registry.certificate.not_after.replace(microsecond=0)
    assert seal.seal_der is not None
    assert ses.parse_seal(seal.seal_der).valid_end == seal.valid_end
