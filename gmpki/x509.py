"""SM2 X.509 certificates: parse into a small typed view, verify, build and sign.

Only SM2 certificates are handled: the subject key must be an SM2 point (id-ecPublicKey with the
SM2 named curve, uncompressed or compressed) and the signature SM2-with-SM3 (1.2.156.10197.1.501;
the SM2-1 OID 1.2.156.10197.1.301.1, which some issuers put there, is read as the same).
Signatures are checked over the tbsCertificate bytes exactly as read, with the SM2 Z pre-hash
over the default ID, which is what GM/T 0015 prescribes for certificates.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final, Generic, TypeVar

from asn1crypto import algos, keys, pem
from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData

from . import oids, sm2, sm3
from .der import DEFAULT_MAX_SIZE, asn1_guard, is_pem, load_der, pem_blocks
from .signing import MessageSigner

oids.register()

CERT_MAX_SIZE: Final = 256 * 1024
SM2_SIGNATURE_OIDS: Final = frozenset({oids.SM2_WITH_SM3, oids.SM2_SIGN})

# Extensions this module interprets; a critical extension outside this set is reported in
# ``Certificate.unhandled_critical_extensions`` so that path validation can refuse it (RFC 5280 4.2).
HANDLED_EXTENSIONS: Final = frozenset(
    {
        "2.5.29.15",  # keyUsage
        "2.5.29.37",  # extKeyUsage
        "2.5.29.19",  # basicConstraints
        "2.5.29.14",  # subjectKeyIdentifier
        "2.5.29.35",  # authorityKeyIdentifier
    }
)

KEY_USAGES: Final = frozenset(
    {
        "digital_signature",
        "non_repudiation",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    }
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


# --- content-keyed caches ----------------------------------------------------------------------------
class LruCache(Generic[K, V]):
    """A bounded, thread-safe least-recently-used map.

    Used only for results that are a pure function of their key (a parse of given bytes, a
    signature check over given bytes with a given key), so a hit can never change an outcome;
    the bound keeps a flood of distinct hostile inputs from growing the process.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The cached value, or ``compute()`` stored under ``key``; computed outside the lock, so two
        threads may both compute a new key once (the results are equal by construction)."""
        found = self.get(key)
        return found if found is not None else self.put(key, compute())

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


# Parsed certificates by their DER; a verifier meets the same few CA, maker and department
# certificates over and over, and parsing one with asn1crypto costs more than an SM2 verify.
CERTIFICATE_CACHE: Final[LruCache[bytes, Certificate]] = LruCache(2048)
# Certificate signature checks by (certificate DER, issuer public point): deterministic.
SIGNATURE_CACHE: Final[LruCache[tuple[bytes, bytes], bool]] = LruCache(4096)
# RFC 5280 name comparisons (asn1crypto's string preparation is slow) by the two names' DER.
NAME_CACHE: Final[LruCache[tuple[bytes, bytes], bool]] = LruCache(4096)


def clear_caches() -> None:
    """Empty the certificate caches (tests; a long-running process never needs to)."""
    for cache in (CERTIFICATE_CACHE, SIGNATURE_CACHE, NAME_CACHE, _NAME_DER):
        cache.clear()


# id(name) -> (name, its encoding). The entry holds the name, so its id cannot be reused while the
# entry lives; names of cached certificates and CRLs recur on every verification.
_NAME_DER: Final[LruCache[int, tuple[asn1_x509.Name, bytes]]] = LruCache(4096)


def _name_der(name: asn1_x509.Name) -> bytes:
    """The name's encoding; asn1crypto's ``dump`` walks the whole name to check for changes each
    time, and names are compared a dozen times per verified document. Names are never modified
    after parsing here."""
    found = _NAME_DER.get(id(name))
    if found is not None and found[0] is name:
        return found[1]
    der = bytes(name.dump())
    _NAME_DER.put(id(name), (name, der))
    return der


def names_equal(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """RFC 5280 7.1 name equality (asn1crypto's), remembered per pair of encodings."""
    da, db = _name_der(a), _name_der(b)
    if da == db:
        return True
    key = (da, db) if da < db else (db, da)
    return NAME_CACHE.get_or_compute(key, lambda: bool(a == b))


_SHORT_NAMES: Final[Mapping[str, str]] = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.8": "ST",
    "2.5.4.7": "L",
    "2.5.4.9": "STREET",
    "2.5.4.5": "serialNumber",
    "2.5.4.97": "organizationIdentifier",
    "2.5.4.4": "SN",
    "2.5.4.42": "GN",
    "2.5.4.12": "title",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}


# --- names -----------------------------------------------------------------------------------------
def _escape_rdn_value(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def name_to_string(name: asn1_x509.Name) -> str:
    """RFC 4514 string of a name (most significant RDN last), e.g. ``CN=x,O=y,C=CN``."""
    rdns: list[str] = []
    with asn1_guard("名称", "name"):
        for rdn in name.chosen:
            parts: list[str] = []
            for atv in rdn:
                dotted = atv["type"].dotted
                key = _SHORT_NAMES.get(dotted, dotted)
                native = atv["value"].native
                if isinstance(native, str):
                    text = _escape_rdn_value(native)
                else:
                    text = "#" + atv["value"].dump().hex()
                parts.append(f"{key}={text}")
            rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def name_attribute(name: asn1_x509.Name, attribute: str) -> str | None:
    """First value of an attribute (asn1crypto name, e.g. ``common_name``) in ``name``, or None."""
    with asn1_guard("名称", "name"):
        for rdn in name.chosen:
            for atv in rdn:
                if atv["type"].native == attribute:
                    value = atv["value"].native
                    return value if isinstance(value, str) else None
    return None


def build_name(
    common_name: str,
    *,
    organization: str | None = None,
    organizational_unit: str | None = None,
    country: str | None = "CN",
    province: str | None = None,
    locality: str | None = None,
    social_credit_code: str | None = None,
    serial_number: str | None = None,
) -> asn1_x509.Name:
    """A distinguished name with UTF8String values (PrintableString for C and serialNumber).

    ``social_credit_code`` (统一社会信用代码, 18 characters) goes into organizationIdentifier
    (2.5.4.97), the X.520 attribute meant for registration numbers of organisations.
    """
    if not common_name or not common_name.strip():
        raise InvalidInput("证书主体名称（CN）不能为空", "Common name must not be empty")
    if country is not None and (len(country) != 2 or not country.isascii() or not country.isalpha()):
        raise InvalidInput("国家代码必须为两个字母", "Country must be a two-letter code")
    if social_credit_code is not None:
        code = social_credit_code.strip().upper()
        if len(code) != 18 or not code.isascii() or not code.isalnum():
            raise InvalidInput(
                "统一社会信用代码必须为 18 位字母数字", "Unified social credit code must be 18 alphanumerics"
            )
        social_credit_code = code
    fields: dict[str, str] = {"common_name": common_name}
    for key, value in (
        ("organization_name", organization),
        ("organizational_unit_name", organizational_unit),
        ("country_name", country.upper() if country else None),
        ("state_or_province_name", province),
        ("locality_name", locality),
        ("organization_identifier", social_credit_code),
        ("serial_number", serial_number),
    ):
        if value:
            fields[key] = value
    return asn1_x509.Name.build(fields, use_printable=False)


# --- keys and identifiers ----------------------------------------------------------------------------
def key_identifier(public_key: sm2.SM2PublicKey) -> bytes:
    """Key identifier: leftmost 160 bits of SM3 over the public key point.

    RFC 5280 4.2.1.2 method 1 uses SHA-1; RFC 7093 allows other hashes truncated to 160 bits.
    SM3 keeps the whole profile inside the SM suite.
    """
    return sm3.sm3(public_key.point)[:20]


def _decompress(point: bytes) -> bytes:
    x = int.from_bytes(point[1:], "big")
    if x >= sm2.P:
        raise MalformedData("SM2 公钥坐标超出范围", "SM2 public key coordinate out of range")
    rhs = (pow(x, 3, sm2.P) + sm2.A * x + sm2.B) % sm2.P
    y = pow(rhs, (sm2.P + 1) // 4, sm2.P)  # p ≡ 3 (mod 4) for the SM2 curve
    if y * y % sm2.P != rhs:
        raise MalformedData("SM2 公钥不在曲线上", "SM2 public key is not on the curve")
    if (y & 1) != (point[0] & 1):
        y = sm2.P - y
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def sm2_public_key_from_spki(spki: keys.PublicKeyInfo) -> sm2.SM2PublicKey:
    """The SM2 key in a SubjectPublicKeyInfo; CertificateError if the key is of another kind."""
    with asn1_guard("公钥信息", "public key info"):
        algorithm = spki["algorithm"]["algorithm"].dotted
        if algorithm != oids.EC_PUBLIC_KEY:
            raise CertificateError(
                f"公钥不是 SM2 公钥（算法 {algorithm}）",
                f"Public key is not an SM2 key (algorithm {algorithm})",
            )
        params = spki["algorithm"]["parameters"]
        curve = params.chosen.dotted if params.name == "named" else params.name
        if curve != oids.SM2_CURVE:
            raise CertificateError(
                f"公钥不是 SM2 公钥（曲线 {curve}）", f"Public key is not an SM2 key (curve {curve})"
            )
        point = bytes(spki["public_key"].native)
    if len(point) == 33 and point[0] in (2, 3):
        point = _decompress(point)
    if len(point) != 65:
        raise MalformedData("SM2 公钥长度无效", "Invalid SM2 public key length")
    try:
        return sm2.SM2PublicKey(point)
    except InvalidInput as exc:
        raise MalformedData(
            f"SM2 公钥无效：{exc.message_zh}", f"Invalid SM2 public key: {exc.message_en}"
        ) from exc


def sm2_spki(public_key: sm2.SM2PublicKey) -> keys.PublicKeyInfo:
    """SubjectPublicKeyInfo: id-ecPublicKey with the SM2 named curve, uncompressed point."""
    return keys.PublicKeyInfo(
        {
            "algorithm": keys.PublicKeyAlgorithm(
                {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(name="named", value=oids.NAME_SM2_CURVE),
                }
            ),
            "public_key": public_key.point,
        }
    )


def sm2_signature_algorithm() -> algos.SignedDigestAlgorithm:
    """AlgorithmIdentifier SM2-with-SM3 with absent parameters."""
    return algos.SignedDigestAlgorithm({"algorithm": oids.NAME_SM2_WITH_SM3})


def _as_utc(value: object, what_zh: str, what_en: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise MalformedData(f"{what_zh}无效", f"Invalid {what_en}")
    return value.astimezone(UTC)


def _ensure_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{what} 必须带时区", f"{what} must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def asn1_time(value: datetime) -> asn1_x509.Time:
    """UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)."""
    value = _ensure_aware(value, "time")
    if 1950 <= value.year <= 2049:
        return asn1_x509.Time(name="utc_time", value=value)
    return asn1_x509.Time(name="general_time", value=value)


# --- the typed view --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Certificate:
    """An SM2 certificate, parsed and checked for well-formedness (not for trust)."""

    der: bytes = field(repr=False)
    asn1: asn1_x509.Certificate = field(repr=False)
    subject: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    public_key: sm2.SM2PublicKey = field(repr=False)
    key_usage: frozenset[str] | None  # None when the extension is absent
    extended_key_usage: frozenset[str] | None  # asn1crypto names or dotted OIDs; None when absent
    is_ca: bool
    path_length: int | None
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    critical_extensions: frozenset[str]  # dotted OIDs
    signature_algorithm: str  # dotted OID
    signature: bytes = field(repr=False)
    tbs_der: bytes = field(repr=False)
    version: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    @cached_property
    def fingerprint_sm3(self) -> bytes:
        return sm3.sm3(self.der)

    @property
    def subject_name(self) -> asn1_x509.Name:
        return self.asn1.subject

    @property
    def issuer_name(self) -> asn1_x509.Name:
        return self.asn1.issuer

    @property
    def common_name(self) -> str | None:
        return name_attribute(self.subject_name, "common_name")

    @property
    def unhandled_critical_extensions(self) -> frozenset[str]:
        return self.critical_extensions - HANDLED_EXTENSIONS

    @cached_property
    def is_self_issued(self) -> bool:
        return names_equal(self.subject_name, self.issuer_name)

    def describe(self) -> str:
        """Subject and serial, for messages: ``CN=x,O=y (serial 0x1a2b)``."""
        return f"{self.subject} (serial 0x{self.serial:X})"

    def is_valid_at(self, when: datetime) -> bool:
        when = _ensure_aware(when, "when")
        return self.not_before <= when <= self.not_after

    def verify_signature(self, issuer_key: sm2.SM2PublicKey) -> bool:
        """Whether ``issuer_key`` made this certificate's signature (over the tbs bytes as read).

        Remembered per (certificate, key): the answer depends on nothing else."""
        return SIGNATURE_CACHE.get_or_compute(
            (self.der, issuer_key.point), lambda: sm2.verify(issuer_key, self.tbs_der, self.signature)
        )

    def to_pem(self) -> str:
        armored: bytes = pem.armor("CERTIFICATE", self.der)
        return armored.decode("ascii")


def _extensions(tbs: asn1_x509.TbsCertificate) -> tuple[dict[str, Any], frozenset[str]]:
    seen: dict[str, Any] = {}
    critical: set[str] = set()
    for ext in tbs["extensions"]:
        oid = ext["extn_id"].dotted
        if oid in seen:
            raise MalformedData(f"证书扩展 {oid} 重复", f"Certificate extension {oid} appears twice")
        seen[oid] = ext["extn_value"].parsed
        if ext["critical"].native:
            critical.add(oid)
    return seen, frozenset(critical)


def certificate_from_asn1(cert: asn1_x509.Certificate, der: bytes) -> Certificate:
    """Build the typed view of an already fully parsed asn1crypto certificate."""
    with asn1_guard("证书", "certificate"):
        tbs = cert["tbs_certificate"]
        outer_alg = cert["signature_algorithm"]
        inner_alg = tbs["signature"]
        sig_oid = outer_alg["algorithm"].dotted
        if outer_alg.dump() != inner_alg.dump():
            raise MalformedData(
                "证书签名算法与待签部分中的算法不一致",
                "Certificate signatureAlgorithm differs from the one inside tbsCertificate",
            )
        if sig_oid not in SM2_SIGNATURE_OIDS:
            raise CertificateError(
                f"不支持的证书签名算法 {sig_oid}（仅支持 SM2-with-SM3）",
                f"Unsupported certificate signature algorithm {sig_oid} (only SM2-with-SM3)",
            )
        if outer_alg["parameters"].native is not None:
            raise MalformedData("SM2 签名算法不应带参数", "SM2 signature algorithm must have no parameters")
        serial = tbs["serial_number"].native
        version = {"v1": 1, "v2": 2, "v3": 3}.get(tbs["version"].native, 0)
        if not version:
            raise MalformedData("证书版本无效", "Invalid certificate version")
        not_before = _as_utc(tbs["validity"]["not_before"].native, "证书生效时间", "notBefore")
        not_after = _as_utc(tbs["validity"]["not_after"].native, "证书失效时间", "notAfter")
        exts, critical = _extensions(tbs)
        key_usage = exts.get("2.5.29.15")
        eku = exts.get("2.5.29.37")
        bc = exts.get("2.5.29.19")
        ski = exts.get("2.5.29.14")
        aki = exts.get("2.5.29.35")
        signature = bytes(cert["signature_value"].native)
        tbs_der = tbs.dump()
        subject = name_to_string(tbs["subject"])
        issuer = name_to_string(tbs["issuer"])
        public_key = sm2_public_key_from_spki(tbs["subject_public_key_info"])
        ku_set = frozenset(key_usage.native) if key_usage is not None else None
        eku_set = frozenset(str(p) for p in eku.native) if eku is not None else None
        is_ca = bool(bc["ca"].native) if bc is not None else False
        path_length = bc["path_len_constraint"].native if bc is not None else None
        ski_bytes = bytes(ski.native) if ski is not None else None
        aki_bytes = (
            bytes(aki["key_identifier"].native)
            if aki is not None and aki["key_identifier"].native is not None
            else None
        )
    if serial < 0:
        # RFC 5280 requires positive serials; negative ones exist in the wild only through bugs.
        raise MalformedData("证书序列号为负数", "Certificate serial number is negative")
    if not_after < not_before:
        raise MalformedData("证书有效期无效（失效早于生效）", "Certificate validity ends before it starts")
    if path_length is not None and (path_length < 0 or not is_ca):
        raise MalformedData("证书路径长度约束无效", "Invalid pathLenConstraint in certificate")
    return Certificate(
        der=der,
        asn1=cert,
        subject=subject,
        issuer=issuer,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        key_usage=ku_set,
        extended_key_usage=eku_set,
        is_ca=is_ca,
        path_length=path_length,
        subject_key_id=ski_bytes,
        authority_key_id=aki_bytes,
        critical_extensions=critical,
        signature_algorithm=sig_oid,
        signature=signature,
        tbs_der=tbs_der,
        version=version,
    )


def _parse_certificate_der(der: bytes, max_size: int) -> Certificate:
    cert = load_der(asn1_x509.Certificate, der, max_size=max_size, what_zh="证书", what_en="certificate")
    return certificate_from_asn1(cert, bytes(der))


def load_certificate_der(data: bytes, *, max_size: int = CERT_MAX_SIZE) -> Certificate:
    """One SM2 certificate from DER. The same bytes give the same (shared, immutable) view: parses
    are cached by content; input that fails to parse is never cached and fails every time."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return _parse_certificate_der(data, max_size)  # load_der reports the wrong type
    der = bytes(data)
    if not der or len(der) > max_size:
        return _parse_certificate_der(der, max_size)  # empty / too large: load_der raises
    return CERTIFICATE_CACHE.get_or_compute(der, lambda: _parse_certificate_der(der, max_size))


def load_certificate(data: bytes, *, max_size: int = CERT_MAX_SIZE) -> Certificate:
    """One SM2 certificate from DER or PEM."""
    certs = load_certificates(data, max_size=max_size)
    if len(certs) != 1:
        raise MalformedData(
            f"应为一张证书，实际为 {len(certs)} 张", f"Expected one certificate, found {len(certs)}"
        )
    return certs[0]


def load_certificates(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> list[Certificate]:
    """All certificates in a PEM bundle, or the one certificate of a DER input."""
    if isinstance(data, bytes | bytearray | memoryview) and is_pem(bytes(data)):
        blocks = pem_blocks(
            bytes(data), labels=("CERTIFICATE",), max_size=max_size, what_zh="证书", what_en="certificate"
        )
        return [load_certificate_der(b, max_size=max_size) for b in blocks]
    return [load_certificate_der(data, max_size=max_size)]


# --- building --------------------------------------------------------------------------------------
def _check_signature(signer: MessageSigner, message: bytes, signature: bytes) -> bytes:
    # A key store that returns a wrong or badly encoded signature is caught here, before the
    # certificate leaves this process, rather than by a relying party later.
    try:
        sm2.decode_signature(signature)
    except CryptoError as exc:
        raise CryptoError("签名器返回的签名编码无效", "Signer returned a badly encoded signature") from exc
    if not sm2.verify(signer.public_key, message, signature):
        raise CryptoError("签名器返回的签名无法验证", "Signer returned a signature that does not verify")
    return signature


def sign_tbs(signer: MessageSigner, tbs_der: bytes) -> bytes:
    """Sign to-be-signed bytes through ``signer`` and check the result before using it."""
    return _check_signature(signer, tbs_der, signer.sign(tbs_der))


def _extension(oid_name: str, value: Any, critical: bool) -> asn1_x509.Extension:
    return asn1_x509.Extension({"extn_id": oid_name, "critical": critical, "extn_value": value})


def build_certificate(
    *,
    signer: MessageSigner,
    issuer: Certificate | None,
    subject: asn1_x509.Name,
    subject_public_key: sm2.SM2PublicKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    key_usage: Iterable[str],
    is_ca: bool = False,
    path_length: int | None = None,
    extended_key_usage: Sequence[str] = (),
    extended_key_usage_critical: bool = False,
    extra_extensions: Sequence[asn1_x509.Extension] = (),
) -> Certificate:
    """Build and sign an SM2 certificate.

    ``issuer=None`` makes a self-signed certificate (``signer`` must hold ``subject_public_key``);
    otherwise ``signer`` must hold ``issuer``'s key. ``key_usage`` takes asn1crypto names
    (``digital_signature``, ``non_repudiation``, ``key_cert_sign``, ``crl_sign``...);
    ``extended_key_usage`` takes asn1crypto names or dotted OIDs.
    """
    usages = set(key_usage)
    unknown = usages - KEY_USAGES
    if unknown:
        raise InvalidInput(f"未知的密钥用途 {sorted(unknown)}", f"Unknown key usage {sorted(unknown)}")
    if not usages:
        raise InvalidInput("必须指定密钥用途", "Key usage must not be empty")
    if not 0 < serial < 2 ** (8 * 20 - 1):
        raise InvalidInput(
            "证书序列号必须为不超过 20 字节的正整数", "Serial must be positive, at most 20 octets"
        )
    if path_length is not None and (not is_ca or path_length < 0):
        raise InvalidInput("仅 CA 证书可设置非负的路径长度约束", "pathLen applies only to CA certificates")
    if is_ca and "key_cert_sign" not in usages:
        raise InvalidInput("CA 证书必须包含 keyCertSign 用途", "A CA certificate needs keyCertSign")
    not_before = _ensure_aware(not_before, "not_before")
    not_after = _ensure_aware(not_after, "not_after")
    if not_after <= not_before:
        raise InvalidInput("证书失效时间必须晚于生效时间", "not_after must be later than not_before")

    if issuer is None:
        if signer.public_key != subject_public_key:
            raise InvalidInput(
                "自签名证书的签名密钥必须是主体密钥",
                "A self-signed certificate must be signed by its own key",
            )
        issuer_name = subject
        aki = key_identifier(subject_public_key)
    else:
        if signer.public_key != issuer.public_key:
            raise InvalidInput(
                "签名密钥与签发者证书不匹配", "Signer key does not match the issuer certificate"
            )
        if not issuer.is_ca or (issuer.key_usage is not None and "key_cert_sign" not in issuer.key_usage):
            raise InvalidInput(
                f"签发者 {issuer.describe()} 不是可签发证书的 CA",
                f"Issuer {issuer.describe()} is not a CA allowed to sign certificates",
            )
        if not (issuer.not_before <= not_before and not_after <= issuer.not_after):
            raise InvalidInput(
                "证书有效期超出签发者证书的有效期",
                "Certificate validity must lie within the issuer certificate's validity",
            )
        issuer_name = issuer.subject_name
        aki = issuer.subject_key_id or key_identifier(issuer.public_key)

    bc: dict[str, Any] = {"ca": is_ca}
    if path_length is not None:
        bc["path_len_constraint"] = path_length
    extensions = [
        _extension("basic_constraints", asn1_x509.BasicConstraints(bc), True),
        _extension("key_usage", asn1_x509.KeyUsage(usages), True),
    ]
    if extended_key_usage:
        extensions.append(
            _extension(
                "extended_key_usage",
                asn1_x509.ExtKeyUsageSyntax(list(extended_key_usage)),
                extended_key_usage_critical,
            )
        )
    extensions.append(_extension("key_identifier", key_identifier(subject_public_key), False))
    extensions.append(
        _extension(
            "authority_key_identifier", asn1_x509.AuthorityKeyIdentifier({"key_identifier": aki}), False
        )
    )
    extensions.extend(extra_extensions)

    algorithm = sm2_signature_algorithm()
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": algorithm,
            "issuer": issuer_name,
            "validity": {"not_before": asn1_time(not_before), "not_after": asn1_time(not_after)},
            "subject": subject,
            "subject_public_key_info": sm2_spki(subject_public_key),
            "extensions": extensions,
        }
    )
    tbs_der = tbs.dump()
    signature = sign_tbs(signer, tbs_der)
    cert = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    return load_certificate_der(cert.dump(force=True))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
