"""SM2-signed certificate revocation lists (RFC 5280 section 5): build, sign, parse, look up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError, InvalidInput, MalformedData

from . import oids, sm2, sm3
from .der import asn1_guard, is_pem, load_der, pem_blocks
from .signing import MessageSigner
from .x509 import (
    SM2_SIGNATURE_OIDS,
    Certificate,
    asn1_time,
    key_identifier,
    name_to_string,
    sign_tbs,
    sm2_signature_algorithm,
)

oids.register()

CRL_MAX_SIZE: Final = 16 * 1024 * 1024
REASONS: Final = frozenset(
    {
        "unspecified",
        "key_compromise",
        "ca_compromise",
        "affiliation_changed",
        "superseded",
        "cessation_of_operation",
        "certificate_hold",
        "remove_from_crl",
        "privilege_withdrawn",
        "aa_compromise",
    }
)
# CRL and entry extensions interpreted here; other critical ones make the CRL unusable for
# revocation checking (RFC 5280 5.2 / 5.3), which the path validator enforces.
_HANDLED_CRL_EXTENSIONS: Final = frozenset({"2.5.29.35", "2.5.29.20"})  # AKI, cRLNumber
_HANDLED_ENTRY_EXTENSIONS: Final = frozenset({"2.5.29.21", "2.5.29.24"})  # reasonCode, invalidityDate


@dataclass(frozen=True)
class RevokedCertificate:
    serial: int
    revoked_at: datetime
    reason: str | None = None  # one of REASONS; None when the entry carries no reason code


@dataclass(frozen=True, eq=False)
class CertificateRevocationList:
    der: bytes = field(repr=False)
    asn1: asn1_crl.CertificateList = field(repr=False)
    issuer: str
    this_update: datetime
    next_update: datetime | None
    crl_number: int | None
    authority_key_id: bytes | None
    entries: Mapping[int, RevokedCertificate] = field(repr=False)
    unhandled_critical_extensions: frozenset[str]
    signature_algorithm: str
    signature: bytes = field(repr=False)
    tbs_der: bytes = field(repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CertificateRevocationList) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    @cached_property
    def fingerprint_sm3(self) -> bytes:
        return sm3.sm3(self.der)

    @property
    def issuer_name(self) -> asn1_x509.Name:
        name: asn1_x509.Name = self.asn1["tbs_cert_list"]["issuer"]
        return name

    def lookup(self, serial: int) -> RevokedCertificate | None:
        """The revocation entry for ``serial``, or None if this CRL does not list it."""
        return self.entries.get(serial)

    def is_revoked(self, serial: int) -> bool:
        return serial in self.entries

    def verify_signature(self, issuer_key: sm2.SM2PublicKey) -> bool:
        return sm2.verify(issuer_key, self.tbs_der, self.signature)

    def may_be_issued_by(self, cert: Certificate) -> bool:
        """Name (and, where both are present, key identifier) match; the signature is not checked."""
        if self.issuer_name != cert.subject_name:
            return False
        return not (
            self.authority_key_id and cert.subject_key_id and self.authority_key_id != cert.subject_key_id
        )

    def to_pem(self) -> str:
        armored: bytes = pem.armor("X509 CRL", self.der)
        return armored.decode("ascii")


def _utc(value: object, what_zh: str, what_en: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise MalformedData(f"{what_zh}无效", f"Invalid {what_en}")
    return value


def crl_from_asn1(cert_list: asn1_crl.CertificateList, der: bytes) -> CertificateRevocationList:
    with asn1_guard("证书撤销列表", "CRL"):
        tbs = cert_list["tbs_cert_list"]
        outer_alg = cert_list["signature_algorithm"]
        sig_oid = outer_alg["algorithm"].dotted
        if outer_alg.dump() != tbs["signature"].dump():
            raise MalformedData(
                "CRL 签名算法与待签部分中的算法不一致",
                "CRL signatureAlgorithm differs from the one inside tbsCertList",
            )
        if sig_oid not in SM2_SIGNATURE_OIDS:
            raise CertificateError(
                f"不支持的 CRL 签名算法 {sig_oid}（仅支持 SM2-with-SM3）",
                f"Unsupported CRL signature algorithm {sig_oid} (only SM2-with-SM3)",
            )
        this_update = _utc(tbs["this_update"].native, "CRL 本次更新时间", "thisUpdate")
        next_raw = tbs["next_update"].native
        next_update = _utc(next_raw, "CRL 下次更新时间", "nextUpdate") if next_raw is not None else None
        unhandled: set[str] = set()
        seen: set[str] = set()
        crl_number: int | None = None
        aki: bytes | None = None
        for ext in tbs["crl_extensions"]:
            oid = ext["extn_id"].dotted
            if oid in seen:
                raise MalformedData(f"CRL 扩展 {oid} 重复", f"CRL extension {oid} appears twice")
            seen.add(oid)
            if oid == "2.5.29.20":
                crl_number = ext["extn_value"].parsed.native
            elif oid == "2.5.29.35":
                key_id = ext["extn_value"].parsed["key_identifier"].native
                aki = bytes(key_id) if key_id is not None else None
            if ext["critical"].native and oid not in _HANDLED_CRL_EXTENSIONS:
                unhandled.add(oid)
        entries: dict[int, RevokedCertificate] = {}
        for item in tbs["revoked_certificates"]:
            serial = item["user_certificate"].native
            if serial in entries:
                raise MalformedData(
                    f"CRL 中序列号 0x{serial:X} 重复", f"Serial 0x{serial:X} listed twice in CRL"
                )
            reason: str | None = None
            entry_seen: set[str] = set()
            for ext in item["crl_entry_extensions"]:
                oid = ext["extn_id"].dotted
                if oid in entry_seen:
                    raise MalformedData(
                        f"CRL 条目扩展 {oid} 重复", f"CRL entry extension {oid} appears twice"
                    )
                entry_seen.add(oid)
                if oid == "2.5.29.21":
                    reason = ext["extn_value"].parsed.native
                if ext["critical"].native and oid not in _HANDLED_ENTRY_EXTENSIONS:
                    unhandled.add(oid)
            revoked_at = _utc(item["revocation_date"].native, "撤销时间", "revocationDate")
            entries[serial] = RevokedCertificate(serial=serial, revoked_at=revoked_at, reason=reason)
        signature = bytes(cert_list["signature"].native)
        tbs_der = tbs.dump()
        issuer = name_to_string(tbs["issuer"])
    if next_update is not None and next_update < this_update:
        raise MalformedData("CRL 下次更新时间早于本次更新时间", "CRL nextUpdate is before thisUpdate")
    return CertificateRevocationList(
        der=der,
        asn1=cert_list,
        issuer=issuer,
        this_update=this_update,
        next_update=next_update,
        crl_number=crl_number,
        authority_key_id=aki,
        entries=MappingProxyType(entries),
        unhandled_critical_extensions=frozenset(unhandled),
        signature_algorithm=sig_oid,
        signature=signature,
        tbs_der=tbs_der,
    )


def load_crl_der(data: bytes, *, max_size: int = CRL_MAX_SIZE) -> CertificateRevocationList:
    cert_list = load_der(
        asn1_crl.CertificateList, data, max_size=max_size, what_zh="证书撤销列表", what_en="CRL"
    )
    return crl_from_asn1(cert_list, bytes(data))


def load_crl(data: bytes, *, max_size: int = CRL_MAX_SIZE) -> CertificateRevocationList:
    """One CRL from DER or PEM (``X509 CRL``)."""
    if isinstance(data, bytes | bytearray | memoryview) and is_pem(bytes(data)):
        blocks = pem_blocks(
            bytes(data), labels=("X509 CRL",), max_size=max_size, what_zh="CRL", what_en="CRL"
        )
        if len(blocks) != 1:
            raise MalformedData(
                f"应为一个 CRL，实际为 {len(blocks)} 个", f"Expected one CRL, found {len(blocks)}"
            )
        return load_crl_der(blocks[0], max_size=max_size)
    return load_crl_der(data, max_size=max_size)


def build_crl(
    *,
    signer: MessageSigner,
    issuer: Certificate,
    this_update: datetime,
    next_update: datetime,
    revoked: Iterable[RevokedCertificate],
    crl_number: int,
) -> CertificateRevocationList:
    """Build and sign a v2 CRL with authorityKeyIdentifier and cRLNumber."""
    if signer.public_key != issuer.public_key:
        raise InvalidInput(
            "签名密钥与 CRL 签发者证书不匹配", "Signer key does not match the CRL issuer certificate"
        )
    if issuer.key_usage is not None and "crl_sign" not in issuer.key_usage:
        raise InvalidInput(
            f"{issuer.describe()} 没有 cRLSign 用途，不能签发 CRL",
            f"{issuer.describe()} lacks the cRLSign key usage and cannot issue CRLs",
        )
    if not 0 <= crl_number < 2**159:
        raise InvalidInput("CRL 编号超出范围", "CRL number out of range")
    this_t = asn1_time(this_update)
    next_t = asn1_time(next_update)
    if next_t.native < this_t.native:
        raise InvalidInput("CRL 下次更新时间必须晚于本次更新时间", "next_update must not precede this_update")
    entries: list[dict[str, Any]] = []
    serials: set[int] = set()
    for item in sorted(revoked, key=lambda r: r.serial):
        if item.serial in serials:
            raise InvalidInput(f"序列号 0x{item.serial:X} 重复", f"Serial 0x{item.serial:X} listed twice")
        serials.add(item.serial)
        entry: dict[str, Any] = {
            "user_certificate": item.serial,
            "revocation_date": asn1_time(item.revoked_at),
        }
        if item.reason is not None:
            if item.reason not in REASONS:
                raise InvalidInput(
                    f"未知的撤销原因 {item.reason}", f"Unknown revocation reason {item.reason}"
                )
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": item.reason}
            ]
        entries.append(entry)
    algorithm = sm2_signature_algorithm()
    aki = issuer.subject_key_id or key_identifier(issuer.public_key)
    tbs_fields: dict[str, Any] = {
        "version": "v2",
        "signature": algorithm,
        "issuer": issuer.subject_name,
        "this_update": this_t,
        "next_update": next_t,
        "crl_extensions": [
            {"extn_id": "authority_key_identifier", "critical": False, "extn_value": {"key_identifier": aki}},
            {"extn_id": "crl_number", "critical": False, "extn_value": crl_number},
        ],
    }
    if entries:
        tbs_fields["revoked_certificates"] = entries
    tbs = asn1_crl.TbsCertList(tbs_fields)
    tbs_der = tbs.dump()
    signature = sign_tbs(signer, tbs_der)
    cert_list = asn1_crl.CertificateList(
        {"tbs_cert_list": tbs, "signature_algorithm": algorithm, "signature": signature}
    )
    return load_crl_der(cert_list.dump(force=True))
