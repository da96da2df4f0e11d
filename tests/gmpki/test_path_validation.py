"""Path validation: a good chain passes; each failure reason comes from a real bad chain."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys
from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError, InvalidInput
from gmpki import ca, sm2
from gmpki.crl import RevokedCertificate, build_crl, load_crl_der
from gmpki.path_validation import PathValidationError, ValidatedPath, validate_path
from gmpki.pkcs12 import load_pkcs12
from gmpki.x509 import Certificate, build_name, sm2_spki
from tests.gmpki.conftest import Pki, forge_certificate, new_party_key, replace_extension


def _validate(pki: Pki, leaf: Certificate, **kw: Any) -> ValidatedPath:
    args: dict[str, Any] = {
        "trust_anchors": [pki.root.cert],
        "intermediates": [pki.sub.cert],
        "at": pki.now,
    }
    args.update(kw)
    return validate_path(leaf, **args)


def _fails(
    pki: Pki, leaf: Certificate, reason: str, culprit: Certificate, **kw: object
) -> PathValidationError:
    with pytest.raises(PathValidationError) as info:
        _validate(pki, leaf, **kw)
    err = info.value
    assert err.reason == reason, str(err)
    assert err.certificate == culprit
    assert err.code == "certificate_path_invalid"
    assert isinstance(err, CertificateError)
    # the message names the certificate: subject and serial
    assert culprit.subject in err.message_en and f"0x{culprit.serial:X}" in err.message_en
    assert culprit.subject in err.message_zh and f"0x{culprit.serial:X}" in err.message_zh
    return err


def test_good_chains(pki: Pki) -> None:
    for party in (pki.maker, pki.department, pki.tsa, pki.service):
        path = validate_path(
            party.cert,
            trust_anchors=[pki.root.cert],
            intermediates=[pki.sub.cert],
            at=pki.now,
            required_key_usage={"digital_signature"},
        )
        assert path.certificates == (party.cert, pki.sub.cert, pki.root.cert)
        assert path.end_entity == party.cert and path.trust_anchor == pki.root.cert
        assert path.revocation_checked == (False, False)
    tsa = _validate(pki, pki.tsa.cert, required_extended_key_usage={"time_stamping"})
    assert tsa.end_entity == pki.tsa.cert
    # the anchor itself, and an intermediate that is also configured as an anchor
    assert validate_path(pki.root.cert, trust_anchors=[pki.root.cert], at=pki.now).certificates == (
        pki.root.cert,
    )
    short = validate_path(pki.maker.cert, trust_anchors=[pki.sub.cert], at=pki.now)
    assert short.certificates == (pki.maker.cert, pki.sub.cert)


def test_expired_and_not_yet_valid(pki: Pki) -> None:
    leaf = pki.department.cert
    _fails(pki, leaf, "expired", leaf, at=leaf.not_after + timedelta(seconds=1))
    _fails(pki, leaf, "not_yet_valid", leaf, at=leaf.not_before - timedelta(seconds=1))
    # an expired intermediate is named as the culprit
    old_sub = forge_certificate(
        pki.sub.cert,
        pki.root.signer,
        validity={
            "not_before": {"utc_time": pki.now - timedelta(days=20)},
            "not_after": {"utc_time": pki.now - timedelta(days=1)},
        },
    )
    _fails(pki, leaf, "expired", old_sub, intermediates=[old_sub])


def test_wrong_issuer_key(pki: Pki) -> None:
    """An impostor CA with the real CA's name but its own key issues a certificate."""
    ik, isig = new_party_key()
    impostor = forge_certificate(pki.sub.cert, isig, subject_public_key_info=_spki(ik.public_key))
    lk, _ = new_party_key()
    leaf = ca.issue_department_certificate(isig, impostor, lk.public_key, build_name("forged department"))
    # only the real CA is known: the name chains, the signature does not
    _fails(pki, leaf, "bad_signature", leaf)
    # the impostor is known too, but its own certificate is not signed by the root's key
    _fails(pki, leaf, "bad_signature", impostor, intermediates=[impostor])


def test_leaf_used_as_ca(pki: Pki) -> None:
    """The seal maker's key (an end entity) signs a certificate: names and signature chain, cA fails."""
    maker = pki.maker.cert
    # the builder refuses to issue from an end entity, so borrow a CA-shaped twin of the maker
    twin = forge_certificate(
        maker,
        pki.maker.signer,
        extensions=replace_extension(
            maker, "basic_constraints", {"ca": True}, True, key_usage=({"key_cert_sign"}, True)
        ),
    )
    lk, _ = new_party_key()
    leaf = ca.issue_department_certificate(
        pki.maker.signer, twin, lk.public_key, build_name("issued by a leaf")
    )
    _fails(pki, leaf, "not_a_ca", maker, intermediates=[pki.sub.cert, maker])


def _spki(public_key: sm2.SM2PublicKey) -> keys.PublicKeyInfo:
    return sm2_spki(public_key)


def test_issuer_without_key_cert_sign(pki: Pki) -> None:
    no_kcs = forge_certificate(
        pki.sub.cert,
        pki.root.signer,
        extensions=replace_extension(pki.sub.cert, "key_usage", {"crl_sign"}, True),
    )
    _fails(pki, pki.department.cert, "key_usage", no_kcs, intermediates=[no_kcs])


def test_required_key_usage_on_the_end_entity(pki: Pki) -> None:
    _fails(
        pki, pki.department.cert, "key_usage", pki.department.cert, required_key_usage={"key_encipherment"}
    )
    # an absent EKU allows any use; the TSA's EKU allows only time stamping
    _validate(pki, pki.department.cert, required_extended_key_usage={"time_stamping"})
    _fails(pki, pki.tsa.cert, "key_usage", pki.tsa.cert, required_extended_key_usage={"code_signing"})


def test_path_length(pki: Pki) -> None:
    _rk, rs = new_party_key()
    root0 = ca.issue_root_ca(rs, build_name("root with pathLen 0"), path_length=0)
    sk, ss = new_party_key()
    sub = ca.issue_subordinate_ca(rs, root0, sk.public_key, build_name("sub under pathLen 0"))
    lk, _ = new_party_key()
    leaf = ca.issue_department_certificate(ss, sub, lk.public_key, build_name("leaf too deep"))
    err = _fails(pki, leaf, "path_length", sub, trust_anchors=[root0], intermediates=[sub])
    assert root0.describe() in err.message_en
    # directly under the pathLen-0 root is fine
    leaf2 = ca.issue_department_certificate(rs, root0, lk.public_key, build_name("leaf direct"))
    assert validate_path(leaf2, trust_anchors=[root0], at=pki.now).certificates == (leaf2, root0)


def test_revoked_via_crl(pki: Pki) -> None:
    leaf = pki.department.cert
    revoked_at = pki.now - timedelta(hours=1)
    crl = build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=7),
        crl_number=3,
        revoked=[RevokedCertificate(leaf.serial, revoked_at, "key_compromise")],
    )
    root_crl = build_crl(
        signer=pki.root.signer,
        issuer=pki.root.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=30),
        crl_number=1,
        revoked=[],
    )
    err = _fails(pki, leaf, "revoked", leaf, crls=[crl, root_crl])
    assert "key_compromise" in err.message_en
    # the maker is not on the CRL: passes, and both links count as checked
    path = _validate(pki, pki.maker.cert, crls=[crl, root_crl], require_revocation_check=True)
    assert path.revocation_checked == (True, True)
    # validation at a time before the revocation: still good (e.g. a signature made back then)
    before = _validate(pki, leaf, crls=[crl, root_crl], at=revoked_at - timedelta(minutes=1))
    assert before.revocation_checked == (True, True)


def test_crl_problems(pki: Pki) -> None:
    leaf = pki.department.cert
    crl = build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=7),
        crl_number=3,
        revoked=[RevokedCertificate(leaf.serial, pki.now, None)],
    )
    # a CRL whose signature is broken is not silently ignored
    tampered = bytearray(crl.der)
    tampered[-3] ^= 0x01
    _fails(pki, leaf, "crl_invalid", leaf, crls=[load_crl_der(bytes(tampered))])
    # no CRL at all, but one is required
    _fails(pki, pki.maker.cert, "revocation_unknown", pki.maker.cert, require_revocation_check=True)
    # a stale CRL does not count as coverage
    stale = build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now - timedelta(days=10),
        next_update=pki.now - timedelta(days=3),
        crl_number=1,
        revoked=[],
    )
    _fails(
        pki, pki.maker.cert, "revocation_unknown", pki.maker.cert, crls=[stale], require_revocation_check=True
    )
    # a CRL signed by an issuer whose certificate lacks cRLSign
    no_crl_sign = forge_certificate(
        pki.sub.cert,
        pki.root.signer,
        extensions=replace_extension(pki.sub.cert, "key_usage", {"key_cert_sign"}, True),
    )
    crl_ok = build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=7),
        crl_number=4,
        revoked=[],
    )
    _fails(pki, pki.maker.cert, "key_usage", no_crl_sign, intermediates=[no_crl_sign], crls=[crl_ok])


def test_no_trust_anchor(pki: Pki) -> None:
    leaf = pki.department.cert
    # the intermediate is missing: the chain stops at the leaf
    err = _fails(pki, leaf, "no_trust_anchor", leaf, intermediates=[])
    assert pki.sub.cert.subject in err.message_en
    # the intermediate is there but the root is someone else's
    other_root = ca.issue_root_ca(new_party_key()[1], build_name("another region root"))
    _fails(pki, leaf, "no_trust_anchor", pki.sub.cert, trust_anchors=[other_root])
    # nothing configured
    _fails(pki, leaf, "no_trust_anchor", leaf, trust_anchors=[])


def test_interop_user_certificate_has_no_anchor(pki: Pki, interop_dir: Path) -> None:
    user = load_pkcs12((interop_dir / "ofdrw-gm__USER.p12").read_bytes(), "777777").certificate
    with pytest.raises(PathValidationError) as info:
        validate_path(user, trust_anchors=[pki.root.cert], at=user.not_before + timedelta(days=1))
    assert info.value.reason == "no_trust_anchor"
    assert "CN=Test Certificate" in str(info.value) and "0x1719D2DAB60" in str(info.value)
    assert "OFD Reader and WriterROOT Certificate" in info.value.message_en


def test_unsupported_critical_extension(pki: Pki) -> None:
    odd = forge_certificate(
        pki.department.cert,
        pki.sub.signer,
        extensions=[
            *asn1_x509.TbsCertificate.load(pki.department.cert.tbs_der)["extensions"],
            asn1_x509.Extension({"extn_id": "1.2.3.4.5", "critical": True, "extn_value": b"\x05\x00"}),
        ],
    )
    assert odd.unhandled_critical_extensions == {"1.2.3.4.5"}
    err = _fails(pki, odd, "unsupported_critical_extension", odd)
    assert "1.2.3.4.5" in err.message_en


def test_naive_time_is_refused(pki: Pki) -> None:
    with pytest.raises(InvalidInput):
        _validate(pki, pki.maker.cert, at=pki.now.replace(tzinfo=None))
