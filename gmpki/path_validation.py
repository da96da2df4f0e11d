"""Certification path validation for SM2 certificates (a focused subset of RFC 5280 section 6).

Checked, for a path from an end-entity certificate up to a configured trust anchor at a given time:
the signature of every link, validity at that time, issuer/subject name chaining, basicConstraints
cA and pathLenConstraint, keyUsage keyCertSign on issuers, unhandled critical extensions, and,
when CRLs are supplied, revocation (with the CRL's own signature and its issuer's cRLSign usage).
Not implemented: certificate policies, name constraints, policy mappings, indirect or delta CRLs.

Trust anchors are checked like any other issuer (validity, cA, keyCertSign): a root that has
expired or is not a CA does not anchor anything here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final

from core.errors import CertificateError, InvalidInput

from .crl import CertificateRevocationList, RevokedCertificate
from .x509 import SIGNATURE_CACHE, Certificate, names_equal

MAX_PATH_LENGTH: Final = 12

REASON_TEXT: Final[dict[str, tuple[str, str]]] = {
    "expired": ("已过期", "has expired"),
    "not_yet_valid": ("尚未生效", "is not yet valid"),
    "bad_signature": ("签名验证失败", "has a signature that does not verify"),
    "revoked": ("已被撤销", "has been revoked"),
    "no_trust_anchor": ("无法链接到受信任的根证书", "does not chain to a trust anchor"),
    "not_a_ca": ("不是 CA 证书，却被用作签发者", "is used as an issuer but is not a CA"),
    "key_usage": ("密钥用途不允许此用法", "has a key usage that does not allow this use"),
    "path_length": ("超出路径长度约束", "exceeds a path length constraint"),
    "unsupported_critical_extension": ("含有无法处理的关键扩展", "has an unsupported critical extension"),
    "crl_invalid": ("的撤销列表无效", "has an invalid revocation list"),
    "revocation_unknown": ("的撤销状态无法确定", "has an unknown revocation status"),
}


class PathValidationError(CertificateError):
    """A certification path failed validation; ``reason`` says which check, ``certificate`` which one."""

    code: ClassVar[str] = "certificate_path_invalid"
    title_zh, title_en = "证书路径无效", "Certificate path invalid"

    def __init__(
        self, reason: str, certificate: Certificate, detail_zh: str = "", detail_en: str = ""
    ) -> None:
        zh, en = REASON_TEXT[reason]
        who = certificate.describe()
        message_zh = f"证书 {who} {zh}" + (f"：{detail_zh}" if detail_zh else "")
        message_en = f"Certificate {who} {en}" + (f": {detail_en}" if detail_en else "")
        self.reason = reason
        self.certificate = certificate
        super().__init__(
            message_zh,
            message_en,
            reason=reason,
            subject=certificate.subject,
            serial=f"0x{certificate.serial:X}",
        )


@dataclass(frozen=True)
class ValidatedPath:
    """A path that passed validation: ``certificates[0]`` is the end entity, the last the anchor."""

    certificates: tuple[Certificate, ...]
    validated_at: datetime
    revocation_checked: tuple[bool, ...]  # per certificate below the anchor: a usable CRL covered it

    @property
    def end_entity(self) -> Certificate:
        return self.certificates[0]

    @property
    def trust_anchor(self) -> Certificate:
        return self.certificates[-1]


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _key_id_compatible(child: Certificate, issuer: Certificate) -> bool:
    return not (
        child.authority_key_id and issuer.subject_key_id and child.authority_key_id != issuer.subject_key_id
    )


def _issuer_candidates(child: Certificate, pool: Iterable[Certificate]) -> list[Certificate]:
    return [
        c for c in pool if names_equal(c.subject_name, child.issuer_name) and _key_id_compatible(child, c)
    ]


def crl_signature_valid(crl: CertificateRevocationList, issuer: Certificate) -> bool:
    """Whether ``issuer``'s key signed ``crl``; remembered per (CRL, key), like certificate signatures."""
    return SIGNATURE_CACHE.get_or_compute(
        (crl.der, issuer.public_key.point), lambda: crl.verify_signature(issuer.public_key)
    )


def crl_may_be_issued_by(crl: CertificateRevocationList, issuer: Certificate) -> bool:
    """:meth:`CertificateRevocationList.may_be_issued_by` with the cached name comparison."""
    if not names_equal(crl.issuer_name, issuer.subject_name):
        return False
    return not (
        crl.authority_key_id and issuer.subject_key_id and crl.authority_key_id != issuer.subject_key_id
    )


def _build_path(
    leaf: Certificate, anchors: Sequence[Certificate], intermediates: Sequence[Certificate]
) -> list[Certificate]:
    """Chain by name, key identifier and signature; the first complete path to an anchor wins.

    Errors: ``bad_signature`` when issuers by name exist but none of their keys verifies the
    certificate, ``no_trust_anchor`` when the chain ends without reaching an anchor.
    """
    anchor_ders = {a.der for a in anchors}
    if leaf.der in anchor_ders:
        return [leaf]
    first_error: PathValidationError | None = None

    def extend(path: list[Certificate]) -> list[Certificate] | None:
        nonlocal first_error
        current = path[-1]
        if len(path) > MAX_PATH_LENGTH:
            first_error = first_error or PathValidationError(
                "path_length",
                current,
                f"路径超过 {MAX_PATH_LENGTH} 层",
                f"path longer than {MAX_PATH_LENGTH}",
            )
            return None
        in_path = {c.der for c in path}
        # Anchors first: a path that reaches an anchor early is shorter and needs fewer checks.
        candidates = _issuer_candidates(current, anchors) + [
            c for c in _issuer_candidates(current, intermediates) if c.der not in anchor_ders
        ]
        candidates = [c for c in candidates if c.der not in in_path or c.der in anchor_ders]
        verified = [c for c in candidates if current.verify_signature(c.public_key)]
        if candidates and not verified:
            first_error = first_error or PathValidationError(
                "bad_signature",
                current,
                f"签发者 {current.issuer} 的公钥无法验证其签名",
                f"no key of issuer {current.issuer} verifies it",
            )
            return None
        if not candidates:
            first_error = first_error or PathValidationError(
                "no_trust_anchor",
                current,
                f"找不到其签发者 {current.issuer}（终端证书 {path[0].describe()}）",
                f"its issuer {current.issuer} is not available (end entity {path[0].describe()})",
            )
            return None
        for issuer in verified:
            if issuer.der in anchor_ders:
                return [*path, issuer]
            if issuer.der in in_path:
                continue
            found = extend([*path, issuer])
            if found is not None:
                return found
        if first_error is None:
            first_error = PathValidationError(
                "no_trust_anchor",
                current,
                f"终端证书 {path[0].describe()}",
                f"end entity {path[0].describe()}",
            )
        return None

    found = extend([leaf])
    if found is None:
        assert first_error is not None
        raise first_error
    return found


def _check_validity(cert: Certificate, at: datetime) -> None:
    if at < cert.not_before:
        raise PathValidationError(
            "not_yet_valid",
            cert,
            f"{_fmt(cert.not_before)} 起生效，验证时间 {_fmt(at)}",
            f"valid from {_fmt(cert.not_before)}, checked at {_fmt(at)}",
        )
    if at > cert.not_after:
        raise PathValidationError(
            "expired",
            cert,
            f"{_fmt(cert.not_after)} 到期，验证时间 {_fmt(at)}",
            f"expired {_fmt(cert.not_after)}, checked at {_fmt(at)}",
        )


def _check_critical(cert: Certificate) -> None:
    unhandled = cert.unhandled_critical_extensions
    if unhandled:
        oids_text = ", ".join(sorted(unhandled))
        raise PathValidationError("unsupported_critical_extension", cert, oids_text, oids_text)


def _check_issuer(issuer: Certificate) -> None:
    if not issuer.is_ca:
        raise PathValidationError(
            "not_a_ca", issuer, "basicConstraints 中 cA 不为真", "basicConstraints cA is not set"
        )
    if issuer.key_usage is not None and "key_cert_sign" not in issuer.key_usage:
        raise PathValidationError("key_usage", issuer, "缺少 keyCertSign", "keyCertSign is not set")


def _crls_for(
    cert: Certificate, issuer: Certificate, crls: Sequence[CertificateRevocationList]
) -> list[CertificateRevocationList]:
    matching = [c for c in crls if names_equal(c.issuer_name, cert.issuer_name)]
    usable: list[CertificateRevocationList] = []
    for c in matching:
        if not crl_may_be_issued_by(c, issuer):
            continue
        if not crl_signature_valid(c, issuer):
            raise PathValidationError(
                "crl_invalid",
                cert,
                f"签发者 {issuer.subject} 的 CRL 签名无效",
                f"the CRL of {issuer.subject} has a bad signature",
            )
        if issuer.key_usage is not None and "crl_sign" not in issuer.key_usage:
            raise PathValidationError(
                "key_usage", issuer, "签发了 CRL 但缺少 cRLSign", "issued a CRL but lacks cRLSign"
            )
        if c.unhandled_critical_extensions:
            text = ", ".join(sorted(c.unhandled_critical_extensions))
            raise PathValidationError(
                "crl_invalid",
                cert,
                f"CRL 含无法处理的关键扩展 {text}",
                f"the CRL has unsupported critical extensions {text}",
            )
        usable.append(c)
    return usable


def _check_revocation(
    cert: Certificate, issuer: Certificate, at: datetime, crls: Sequence[CertificateRevocationList]
) -> bool:
    """Raise if revoked at ``at``; return whether a CRL current at ``at`` covered the certificate."""
    covered = False
    for c in _crls_for(cert, issuer, crls):
        entry: RevokedCertificate | None = c.lookup(cert.serial)
        # A revocation dated after the validation time does not invalidate what was done before it.
        if entry is not None and entry.revoked_at <= at and entry.reason != "remove_from_crl":
            reason = f"（原因 {entry.reason}）" if entry.reason else ""
            reason_en = f" (reason {entry.reason})" if entry.reason else ""
            raise PathValidationError(
                "revoked",
                cert,
                f"撤销时间 {_fmt(entry.revoked_at)}{reason}",
                f"revoked at {_fmt(entry.revoked_at)}{reason_en}",
            )
        # A CRL issued after ``at`` still speaks for ``at``; one whose nextUpdate passed is stale.
        if c.next_update is None or c.next_update >= at:
            covered = True
    return covered


def validate_path(
    end_entity: Certificate,
    *,
    trust_anchors: Sequence[Certificate],
    at: datetime,
    intermediates: Sequence[Certificate] = (),
    crls: Sequence[CertificateRevocationList] = (),
    require_revocation_check: bool = False,
    required_key_usage: Iterable[str] = (),
    required_extended_key_usage: Iterable[str] = (),
) -> ValidatedPath:
    """Validate ``end_entity`` up to one of ``trust_anchors`` at time ``at``.

    ``required_key_usage`` (asn1crypto names) and ``required_extended_key_usage`` apply to the end
    entity; an absent keyUsage extension allows everything, an absent EKU allows everything.
    With ``require_revocation_check``, every certificate below the anchor must be covered by a
    CRL whose validity period includes ``at`` (reason ``revocation_unknown`` otherwise).
    Raises :class:`PathValidationError`.
    """
    if at.tzinfo is None:
        raise InvalidInput("验证时间必须带时区", "Validation time must be timezone-aware")
    if not trust_anchors:
        raise PathValidationError(
            "no_trust_anchor", end_entity, "未配置受信任的根证书", "no trust anchor is configured"
        )
    path = _build_path(end_entity, trust_anchors, intermediates)

    # Walk from the anchor down, as RFC 5280 6.1 does: each issuer's cA and keyCertSign are checked
    # in turn, and pathLenConstraint bounds the number of non-self-issued CAs that follow it.
    max_length: int | None = None
    constrained_by: Certificate | None = None
    for index in range(len(path) - 1, -1, -1):
        cert = path[index]
        _check_validity(cert, at)
        _check_critical(cert)
        if index == 0:
            break
        _check_issuer(cert)
        if index < len(path) - 1 and not cert.is_self_issued and max_length is not None:
            if max_length <= 0:
                assert constrained_by is not None
                raise PathValidationError(
                    "path_length",
                    cert,
                    f"{constrained_by.describe()} 的路径长度约束为 {constrained_by.path_length}",
                    f"{constrained_by.describe()} has pathLenConstraint {constrained_by.path_length}",
                )
            max_length -= 1
        if cert.path_length is not None and (max_length is None or cert.path_length < max_length):
            max_length = cert.path_length
            constrained_by = cert
    revocation: list[bool] = []
    for index in range(len(path) - 1):
        revocation.append(_check_revocation(path[index], path[index + 1], at, crls))
        if require_revocation_check and not revocation[-1]:
            raise PathValidationError(
                "revocation_unknown",
                path[index],
                "没有覆盖验证时间的有效 CRL",
                "no valid CRL covers the validation time",
            )

    usage = set(required_key_usage)
    if usage and end_entity.key_usage is not None and not usage <= end_entity.key_usage:
        missing = ", ".join(sorted(usage - end_entity.key_usage))
        raise PathValidationError("key_usage", end_entity, f"缺少 {missing}", f"missing {missing}")
    eku = set(required_extended_key_usage)
    if eku and end_entity.extended_key_usage is not None and not eku <= end_entity.extended_key_usage:
        missing = ", ".join(sorted(eku - end_entity.extended_key_usage))
        raise PathValidationError(
            "key_usage", end_entity, f"扩展密钥用途缺少 {missing}", f"EKU missing {missing}"
        )
    return ValidatedPath(certificates=tuple(path), validated_at=at, revocation_checked=tuple(revocation))
