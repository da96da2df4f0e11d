"""Electronic seals (SESeal) and SES signatures: version detection, parsed views, signature checks,
and making.

Reference: ``../shared/spec/seal-formats.md`` (§2–4 structures and signed bytes, §7 pitfalls).

Reading works in two passes. A small TLV pass (:func:`_scan`) checks the whole input is one definite-
length DER element with sane nesting and records the offsets of every constructed node; version
detection (§3.3 "Recommended": structure first, then ``header.version``) and all *signed* byte
strings come from those offsets, so signatures are always verified over the bytes as read (§4.5).
The field values are then decoded with the asn1crypto models of :mod:`gmpki.ses_v4` /
:mod:`gmpki.ses_v1`. Any failure in either pass is a :class:`core.errors.MalformedData`.

Making emits strict DER (explicit ``[0]`` for optional signature parts, like ofdrw) and signs
through a :class:`gmpki.signing.MessageSigner`; a made seal is embedded in later signatures verbatim.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from asn1crypto import core, x509

from core.errors import CryptoError, EsealError, InputTooLarge, InvalidInput, MalformedData, NotUsable

from . import ses_v1, ses_v4, sm2
from . import sm3 as _sm3
from .signing import MessageSigner
from .x509 import LruCache

# Kept local while gmpki.oids is being written in parallel; switch to oids.SM2_WITH_SM3 / SM3 / SM2_CURVE.
SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM3_OID = "1.2.156.10197.1.401"
_SM2_CURVE = "1.2.156.10197.1.301"

DEFAULT_MAX_SIZE = 16 * 1024 * 1024
# Real seals have ~50 elements; the caps only bound the work a hostile input can cause.
_MAX_DEPTH = 32
_MAX_NODES = 10_000

# Extension OIDs whose meaning this project understands. None yet: the tax-bureau extension is
# opaque (§1.1), so every critical extension is reported as unknown and left to the policy.
KNOWN_SEAL_EXTENSIONS: frozenset[str] = frozenset()

_UTC = dt.UTC
_UTC8 = dt.timezone(dt.timedelta(hours=8))


# --- errors ------------------------------------------------------------------------------------------
def _malformed(zh: str, en: str, **details: object) -> MalformedData:
    return MalformedData(zh, en, **details)


@contextmanager
def _decoding(what_zh: str, what_en: str) -> Iterator[None]:
    """Turn whatever asn1crypto raises on hostile input into MalformedData."""
    try:
        yield
    except EsealError:
        raise
    except Exception as exc:
        raise _malformed(f"无法解码{what_zh}", f"cannot decode {what_en}", detail=str(exc)[:200]) from exc


# --- TLV pass ----------------------------------------------------------------------------------------
# gmpki.der.load_der could take over the size check and the asn1crypto error mapping (_decoding);
# this pass stays because version detection and the signed slices need the element offsets.
_UNIVERSAL_PRIMITIVES = frozenset({1, 2, 3, 4, 5, 6, 9, 10, 12, 18, 19, 20, 22, 23, 24, 26, 30})


@dataclass(frozen=True)
class _Node:
    tag: int
    start: int
    content_start: int
    end: int
    children: tuple[_Node, ...]

    def slice(self, data: bytes) -> bytes:
        return data[self.start : self.end]

    def content(self, data: bytes) -> bytes:
        return data[self.content_start : self.end]

    @property
    def child_tags(self) -> tuple[int, ...]:
        return tuple(c.tag for c in self.children)


def _read_node(data: bytes, pos: int, limit: int, depth: int, budget: list[int]) -> _Node:
    budget[0] -= 1
    if budget[0] < 0:
        raise _malformed("ASN.1 元素数量过多", "too many ASN.1 elements", offset=pos)
    if depth > _MAX_DEPTH:
        raise _malformed("ASN.1 嵌套层次过深", "ASN.1 nesting too deep", offset=pos)
    if pos + 2 > limit:
        raise _malformed("ASN.1 数据被截断（缺少标签或长度）", "truncated ASN.1 header", offset=pos)
    tag = data[pos]
    number, constructed, universal = tag & 0x1F, bool(tag & 0x20), tag & 0xC0 == 0
    if number == 0x1F:
        raise _malformed("不支持的多字节 ASN.1 标签", "unsupported high-number ASN.1 tag", offset=pos)
    if universal and (
        number == 0
        or (constructed and number in _UNIVERSAL_PRIMITIVES)
        or (not constructed and number in (16, 17))
    ):
        raise _malformed("ASN.1 标签无效", "invalid ASN.1 tag", offset=pos, tag=f"{tag:02x}")
    first = data[pos + 1]
    if first < 0x80:
        length, header = first, 2
    elif first == 0x80:
        raise _malformed("不接受不定长编码（非 DER）", "indefinite length is not DER", offset=pos)
    else:
        n = first & 0x7F
        if n > 4:
            raise _malformed("ASN.1 长度字段过长", "ASN.1 length field too long", offset=pos)
        if pos + 2 + n > limit:
            raise _malformed("ASN.1 数据被截断（长度不完整）", "truncated ASN.1 length", offset=pos)
        length, header = int.from_bytes(data[pos + 2 : pos + 2 + n], "big"), 2 + n
    end = pos + header + length
    if end > limit:
        raise _malformed(
            "ASN.1 声明长度超出实际数据",
            "ASN.1 declared length exceeds the available data",
            offset=pos,
            declared=length,
            available=limit - pos - header,
        )
    children: list[_Node] = []
    if constructed:
        p = pos + header
        while p < end:
            child = _read_node(data, p, end, depth + 1, budget)
            children.append(child)
            p = child.end
    return _Node(tag, pos, pos + header, end, tuple(children))


def _scan(data: bytes, max_size: int) -> _Node:
    if len(data) > max_size:
        raise InputTooLarge(
            f"数据过大（{len(data)} 字节，上限 {max_size}）",
            f"input too large ({len(data)} bytes, limit {max_size})",
        )
    if not data:
        raise _malformed("数据为空", "empty input")
    root = _read_node(data, 0, len(data), 0, [_MAX_NODES])
    if root.end != len(data):
        raise _malformed(
            "ASN.1 结构之后有多余数据",
            "trailing data after the ASN.1 structure",
            trailing=len(data) - root.end,
        )
    if root.tag != 0x30:
        raise _malformed("顶层元素不是 SEQUENCE", "top-level element is not a SEQUENCE")
    return root


def _tags(node: _Node) -> str:
    return " ".join(f"{t:02x}" for t in node.child_tags)


# --- version detection (§3.3) --------------------------------------------------------------------------
_V4_SEAL_HEAD = (0x30, 0x04, 0x06, 0x03)


def _seal_family(root: _Node) -> int:
    """1 for the GM/T 0031 shape, 4 for the GB/T 38540 shape (v4 and v5); otherwise MalformedData."""
    tags = root.child_tags
    if root.tag == 0x30 and tags == (0x30, 0x30) and root.children[1].child_tags == (0x04, 0x06, 0x03):
        return 1
    if root.tag == 0x30 and tags[:4] == _V4_SEAL_HEAD and (len(tags) == 4 or tags[4:] == (0xA0,)):
        return 4
    raise _malformed(
        "不是电子印章结构（元素排列不符合 GM/T 0031 或 GB/T 38540）",
        "not an electronic seal: element layout matches neither GM/T 0031 nor GB/T 38540",
        layout=_tags(root),
    )


def _header_version(data: bytes, seal_root: _Node) -> int:
    info = seal_root.children[0]
    if not info.children or info.children[0].child_tags[:2] != (0x16, 0x02):
        raise _malformed("印章头（SES_Header）结构错误", "malformed SES_Header")
    raw = info.children[0].children[1].content(data)
    if not 1 <= len(raw) <= 8:
        raise _malformed("印章头版本号编码错误", "malformed SES_Header version")
    return int.from_bytes(raw, "big", signed=True)


def _family_version(family: int, header_version: int, element_count: int, warnings: list[str]) -> int:
    if family == 1:
        return 1
    if header_version in (4, 5):
        return header_version
    warnings.append("unknown_header_version")
    return 5 if element_count == 5 else 4


def detect_seal_version(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """1 (GM/T 0031), 4 (GB/T 38540) or 5 (ofdrw v5). Unknown header versions of the v4 shape → 4/5."""
    data = bytes(data)
    root = _scan(data, max_size)
    family = _seal_family(root)
    hv = _header_version(data, root)
    return _family_version(family, hv, len(root.children), [])


def _signature_family(root: _Node) -> int:
    tags = root.child_tags
    if tags == (0x30, 0x03):
        return 1
    if tags[:4] == _V4_SEAL_HEAD and (len(tags) == 4 or tags[4:] in ((0xA0,), (0x03,))):
        return 4
    raise _malformed(
        "不是电子签章数据结构（SES_Signature 元素排列错误）",
        "not an SES signature: unexpected element layout",
        layout=_tags(root),
    )


def _embedded_seal_node(tbs: _Node) -> _Node:
    if len(tbs.children) < 2 or tbs.children[0].tag != 0x02 or tbs.children[1].tag != 0x30:
        raise _malformed("待签名数据（TBS_Sign）结构错误", "malformed TBS_Sign", layout=_tags(tbs))
    return tbs.children[1]


def detect_signature_version(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """1, 4 or 5: structure first, then the embedded seal's header.version."""
    data = bytes(data)
    root = _scan(data, max_size)
    family = _signature_family(root)
    seal_node = _embedded_seal_node(root.children[0])
    seal_family = _seal_family(seal_node)
    if seal_family != family:
        raise _malformed(
            "签章数据与所含印章的版本结构不一致", "signature and embedded seal have different layouts"
        )
    return _family_version(family, _header_version(data, seal_node), len(seal_node.children), [])


# --- parsed views ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealExtension:
    """One ExtData. ``critical_encoded`` tells whether the BOOLEAN was on the wire (producers write it)."""

    oid: str
    critical: bool
    value: bytes
    critical_encoded: bool = True


@dataclass(frozen=True)
class CertDigest:
    """certListType 2 entry: ``digest_type`` names the algorithm (``SM3`` or an OID string expected)."""

    digest_type: str
    value: bytes


@dataclass(frozen=True)
class ParsedSeal:
    """A read-only view of an electronic seal. Byte fields are exact slices of the input."""

    version: int  # 1, 4 or 5: decides which maker-signature rule applies
    header_id: str
    header_version: int
    vid: str
    es_id: str
    name: str
    seal_type: int
    cert_list_type: int  # 1 certificates, 2 digests; v1 seals have no field and are always 1
    cert_list: tuple[bytes, ...] = field(repr=False)
    cert_digests: tuple[CertDigest, ...]
    create_date: dt.datetime
    valid_start: dt.datetime
    valid_end: dt.datetime
    picture_type: str
    picture_data: bytes = field(repr=False)
    picture_width: int | float
    picture_height: int | float
    extensions: tuple[SealExtension, ...]
    maker_cert_der: bytes = field(repr=False)
    signature_algorithm: str
    signature: bytes = field(repr=False)  # DER SM2Signature when decodable, else the BIT STRING bytes
    time_stamp: bytes | None = field(repr=False)
    raw: bytes = field(repr=False)
    seal_info_bytes: bytes = field(repr=False)  # SES_SealInfo TLV as read
    signed_bytes: bytes = field(repr=False)  # message M of the maker signature (§4.1)
    warnings: tuple[str, ...] = ()

    @property
    def unknown_critical_extensions(self) -> tuple[str, ...]:
        return tuple(e.oid for e in self.extensions if e.critical and e.oid not in KNOWN_SEAL_EXTENSIONS)

    @property
    def has_unknown_critical_extension(self) -> bool:
        return bool(self.unknown_critical_extensions)

    @property
    def digest(self) -> bytes:
        """SM3 of the seal bytes: the identity to index seals by (P16)."""
        return _sm3.sm3(self.raw)


@dataclass(frozen=True)
class ParsedSesSignature:
    """A read-only view of an SES signature (``SignedValue.dat`` of a Seal-type OFD signature)."""

    version: int  # 1, 4 or 5 (from the structure and the embedded seal's header)
    tbs_version: int
    seal: ParsedSeal
    time_info: dt.datetime | None  # None only for a v1 timeInfo nobody can read
    time_info_raw: bytes = field(repr=False)  # content of the timeInfo element as read
    data_hash: bytes
    property_info: str
    signer_cert_der: bytes = field(repr=False)
    signature_algorithm: str
    signature: bytes = field(repr=False)
    time_stamp: bytes | None = field(repr=False)
    ext_datas: tuple[SealExtension, ...]
    raw: bytes = field(repr=False)
    tbs_bytes: bytes = field(repr=False)  # TBS_Sign TLV as read: message M of the signer signature
    warnings: tuple[str, ...] = ()


# --- field decoding helpers ------------------------------------------------------------------------------
def _utc(value: object, what: str, warnings: list[str]) -> dt.datetime:
    if type(value) is not dt.datetime:  # asn1crypto's extended_datetime (year 0) is not a datetime
        raise _malformed(f"时间值无效：{what}", f"invalid time value: {what}")
    if value.tzinfo is None:
        warnings.append(f"time_without_zone:{what}")
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def _decode_real(contents: bytes) -> float:
    """X.690 §8.5 REAL (binary and decimal forms; special values are not dimensions)."""
    if not contents:
        return 0.0
    first = contents[0]
    if first & 0x80:
        sign = -1.0 if first & 0x40 else 1.0
        base_bits = {0: 1, 1: 3, 2: 4}.get((first >> 4) & 0x03)
        if base_bits is None:
            raise ValueError("reserved REAL base")
        scale = (first >> 2) & 0x03
        exp_len_code = first & 0x03
        pos = 1
        if exp_len_code == 3:
            if len(contents) < 2:
                raise ValueError("truncated REAL")
            exp_len, pos = contents[1], 2
        else:
            exp_len = exp_len_code + 1
        if exp_len == 0 or exp_len > 4 or len(contents) < pos + exp_len + 1:
            raise ValueError("malformed REAL exponent")
        exponent = int.from_bytes(contents[pos : pos + exp_len], "big", signed=True)
        mantissa = int.from_bytes(contents[pos + exp_len :], "big")
        value = sign * math.ldexp(float(mantissa << scale), exponent * base_bits)
    elif first & 0xC0 == 0:
        text = contents[1:].decode("ascii").strip().replace(",", ".")
        value = float(text)
    else:
        raise ValueError("special REAL value")
    if not math.isfinite(value):
        raise ValueError("non-finite REAL")
    return value


def _dimension(choice: core.Choice, warnings: list[str]) -> int | float:
    if choice.name == "integer":
        return int(choice.chosen.native)
    warnings.append("picture_dimension_real")
    return _decode_real(choice.chosen.contents or b"")


def _extensions(value: core.Asn1Value) -> tuple[SealExtension, ...]:
    if isinstance(value, core.Void):
        return ()
    out: list[SealExtension] = []
    for ext in value:
        crit = ext["critical"]
        encoded = not isinstance(crit, core.Void)
        out.append(
            SealExtension(
                oid=ext["extn_id"].dotted,
                critical=bool(crit.native) if encoded else False,
                value=bytes(ext["extn_value"].native),
                critical_encoded=encoded,
            )
        )
    return tuple(out)


def _signature_bytes(value: bytes) -> bytes:
    try:
        return sm2.normalize_signature(value)
    except CryptoError:
        return value  # kept as read; the check reports the bad encoding (P13: not a parse error)


def _cert_list(prop: core.Sequence, cert_list_type: int) -> tuple[tuple[bytes, ...], tuple[CertDigest, ...]]:
    encoded = prop["cert_list"].dump()
    if cert_list_type == 1:
        certs = ses_v4.CertInfoList.load(encoded, strict=True)
        return tuple(bytes(c.native) for c in certs), ()
    if cert_list_type == 2:
        digests = ses_v4.CertDigestList.load(encoded, strict=True)
        return (), tuple(CertDigest(d["type"].native, bytes(d["value"].native)) for d in digests)
    raise _malformed(
        f"未知的证书列表类型 certListType={cert_list_type}", f"unknown certListType {cert_list_type}"
    )


def _optional_bits(value: core.Asn1Value) -> bytes | None:
    return None if isinstance(value, core.Void) else bytes(value.native)


# --- seal parsing ------------------------------------------------------------------------------------------
def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


@dataclass(frozen=True)
class _InfoFields:
    """Fields SES_SealInfo has in both versions."""

    header_id: str
    header_version: int
    vid: str
    es_id: str
    picture_type: str
    picture_data: bytes
    picture_width: int | float
    picture_height: int | float
    extensions: tuple[SealExtension, ...]


def _info_fields(info: core.Sequence, warnings: list[str]) -> _InfoFields:
    header, picture = info["header"], info["picture"]
    header_id = header["id"].native
    if header_id != "ES":
        warnings.append("header_id_not_es")
    return _InfoFields(
        header_id=header_id,
        header_version=int(header["version"].native),
        vid=header["vid"].native,
        es_id=info["es_id"].native,
        picture_type=picture["type"].native,
        picture_data=bytes(picture["data"].native),
        picture_width=_dimension(picture["width"], warnings),
        picture_height=_dimension(picture["height"], warnings),
        extensions=_extensions(info["ext_datas"]),
    )


def _parse_seal_v4(data: bytes, root: _Node, warnings: list[str]) -> ParsedSeal:
    with _decoding("GB/T 38540 电子印章", "GB/T 38540 seal"):
        seal = ses_v4.SESeal.load(data, strict=True)
        info = seal["e_seal_info"]
        prop = info["property"]
        common = _info_fields(info, warnings)
        cert_list_type = int(prop["cert_list_type"].native)
        certs, digests = _cert_list(prop, cert_list_type)
        version = _family_version(4, common.header_version, len(root.children), warnings)
        sealinfo = root.children[0].slice(data)
        return ParsedSeal(
            version=version,
            name=prop["name"].native,
            seal_type=int(prop["type"].native),
            cert_list_type=cert_list_type,
            cert_list=certs,
            cert_digests=digests,
            create_date=_utc(prop["create_date"].native, "createDate", warnings),
            valid_start=_utc(prop["valid_start"].native, "validStart", warnings),
            valid_end=_utc(prop["valid_end"].native, "validEnd", warnings),
            maker_cert_der=bytes(seal["cert"].native),
            signature_algorithm=seal["sign_alg_id"].dotted,
            signature=_signature_bytes(bytes(seal["signed_value"].native)),
            time_stamp=_optional_bits(seal["time_stamp"]),
            raw=data,
            seal_info_bytes=sealinfo,
            signed_bytes=sealinfo,
            warnings=tuple(warnings),
            header_id=common.header_id,
            header_version=common.header_version,
            vid=common.vid,
            es_id=common.es_id,
            picture_type=common.picture_type,
            picture_data=common.picture_data,
            picture_width=common.picture_width,
            picture_height=common.picture_height,
            extensions=common.extensions,
        )


def _parse_seal_v1(data: bytes, root: _Node, warnings: list[str]) -> ParsedSeal:
    with _decoding("GM/T 0031 电子印章", "GM/T 0031 seal"):
        seal = ses_v1.SESealV1.load(data, strict=True)
        info = seal["e_seal_info"]
        prop = info["property"]
        sign_info = seal["sign_info"]
        common = _info_fields(info, warnings)
        sealinfo_node, sign_node = root.children
        sealinfo = sealinfo_node.slice(data)
        # v1 rule (§4.1): a new SEQUENCE over sealInfo ‖ cert TLV ‖ algorithm TLV, all as read.
        signed = _tlv(0x30, sealinfo + sign_node.children[0].slice(data) + sign_node.children[1].slice(data))
        return ParsedSeal(
            version=1,
            name=prop["name"].native,
            seal_type=int(prop["type"].native),
            cert_list_type=1,
            cert_list=tuple(bytes(c.native) for c in prop["cert_list"]),
            cert_digests=(),
            create_date=_utc(prop["create_date"].chosen.native, "createDate", warnings),
            valid_start=_utc(prop["valid_start"].chosen.native, "validStart", warnings),
            valid_end=_utc(prop["valid_end"].chosen.native, "validEnd", warnings),
            maker_cert_der=bytes(sign_info["cert"].native),
            signature_algorithm=sign_info["signature_algorithm"].dotted,
            signature=_signature_bytes(bytes(sign_info["sign_data"].native)),
            time_stamp=None,
            raw=data,
            seal_info_bytes=sealinfo,
            signed_bytes=signed,
            warnings=tuple(warnings),
            header_id=common.header_id,
            header_version=common.header_version,
            vid=common.vid,
            es_id=common.es_id,
            picture_type=common.picture_type,
            picture_data=common.picture_data,
            picture_width=common.picture_width,
            picture_height=common.picture_height,
            extensions=common.extensions,
        )


def _parse_seal_checked(data: bytes, root: _Node) -> ParsedSeal:
    family = _seal_family(root)
    warnings: list[str] = []
    if family == 1:
        return _parse_seal_v1(data, root, warnings)
    return _parse_seal_v4(data, root, warnings)


# Parsed seals by their bytes. Every signature made with a seal embeds the same seal, and parsing it
# (strict DER through asn1crypto) costs more than the rest of the signature's parse. Only what parsed
# is kept (a failure is raised again each time), small seals only, and a bounded number of them: a
# flood of distinct seals cannot grow the process by more than a few megabytes.
_SEAL_CACHE: Final[LruCache[bytes, ParsedSeal]] = LruCache(256)
_SEAL_CACHE_MAX_BYTES: Final = 64 * 1024


def _parse_seal_cached(data: bytes, max_size: int) -> ParsedSeal:
    if len(data) > min(max_size, _SEAL_CACHE_MAX_BYTES):  # too large to keep (or to parse at all)
        return _parse_seal_checked(data, _scan(data, max_size))
    found = _SEAL_CACHE.get(data)
    if found is not None:
        return found
    return _SEAL_CACHE.put(data, _parse_seal_checked(data, _scan(data, max_size)))


def clear_seal_cache() -> None:
    """Forget the parsed seals (for measuring a cold verification; never needed for correctness)."""
    _SEAL_CACHE.clear()


def parse_seal(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> ParsedSeal:
    """Parse a seal (``.esl``) of any supported version.

    Raises MalformedData for anything that is not a well-formed seal and InputTooLarge above
    ``max_size``. A seal whose maker signature is wrong still parses (check it separately).
    """
    return _parse_seal_cached(bytes(data), max_size)


# --- SES signature parsing ----------------------------------------------------------------------------
def _v1_time_info(data: bytes, node: _Node, warnings: list[str]) -> tuple[dt.datetime | None, bytes]:
    content = _v1_bytes(data, node, "timeInfo")
    if content[:1] in (b"\x17", b"\x18"):
        try:
            cls: type[core.Asn1Value] = core.UTCTime if content[0] == 0x17 else core.GeneralizedTime
            return _utc(cls.load(content, strict=True).native, "timeInfo", warnings), content
        except (ValueError, TypeError, MalformedData):
            pass
    text = content.decode("ascii", errors="replace").strip()
    for fmt, zone in (
        ("%Y%m%d%H%M%SZ", _UTC),
        ("%Y-%m-%d %H:%M:%S", None),
        ("%Y-%m-%dT%H:%M:%S", None),
        ("%Y%m%d%H%M%S", None),
    ):
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if zone is None:
            # ofdrw writes the producer's local clock without a zone; Chinese producers run on UTC+8.
            warnings.append("time_info_assumed_utc8")
            zone = _UTC8
        return parsed.replace(tzinfo=zone).astimezone(_UTC), content
    warnings.append("time_info_unparsed")
    return None, content


def _v1_bytes(data: bytes, node: _Node, what: str) -> bytes:
    """v1 timeInfo/dataHash: BIT STRING with 0 unused bits, or OCTET STRING (§3.1 leniency)."""
    contents = node.content(data)
    if node.tag == 0x03:
        if not contents or contents[0] != 0:
            raise _malformed(f"{what} 位串编码错误", f"{what}: malformed BIT STRING")
        return contents[1:]
    if node.tag == 0x04:
        return contents
    raise _malformed(f"{what} 类型错误（应为 BIT STRING）", f"{what}: expected a BIT STRING")


def _check_hash(value: bytes) -> bytes:
    if len(value) != 32:
        raise _malformed(
            f"dataHash 长度错误（{len(value)} 字节，应为 32）",
            f"dataHash has {len(value)} bytes, expected 32 (SM3)",
        )
    return value


def _parse_signature_v4(
    data: bytes, root: _Node, seal: ParsedSeal, warnings: list[str]
) -> ParsedSesSignature:
    with _decoding("GB/T 38540 电子签章数据", "GB/T 38540 SES signature"):
        sig = ses_v4.SESSignature.load(data, strict=True)
        tbs = sig["to_sign"]
        tagged, untagged = tbs["ext_datas"], tbs["ext_datas_untagged"]
        if not isinstance(tagged, core.Void) and not isinstance(untagged, core.Void):
            raise _malformed("TBS_Sign 含两个扩展字段", "TBS_Sign carries extDatas twice")
        if not isinstance(untagged, core.Void):
            warnings.append("ext_datas_untagged")
        ts_tagged, ts_untagged = sig["time_stamp"], sig["time_stamp_untagged"]
        if not isinstance(ts_untagged, core.Void):
            warnings.append("time_stamp_untagged")
        tbs_version = int(tbs["version"].native)
        if tbs_version != seal.header_version:
            warnings.append("tbs_version_mismatch")
        tbs_node = root.children[0]
        return ParsedSesSignature(
            version=seal.version,
            tbs_version=tbs_version,
            seal=seal,
            time_info=_utc(tbs["time_info"].native, "timeInfo", warnings),
            time_info_raw=tbs_node.children[2].content(data),
            data_hash=_check_hash(bytes(tbs["data_hash"].native)),
            property_info=tbs["property_info"].native,
            signer_cert_der=bytes(sig["cert"].native),
            signature_algorithm=sig["signature_alg_id"].dotted,
            signature=_signature_bytes(bytes(sig["signature"].native)),
            time_stamp=_optional_bits(ts_untagged if isinstance(ts_tagged, core.Void) else ts_tagged),
            ext_datas=_extensions(untagged if isinstance(tagged, core.Void) else tagged),
            raw=data,
            tbs_bytes=tbs_node.slice(data),
            warnings=tuple(warnings),
        )


def _parse_signature_v1(
    data: bytes, root: _Node, seal: ParsedSeal, warnings: list[str]
) -> ParsedSesSignature:
    with _decoding("GM/T 0031 电子签章数据", "GM/T 0031 SES signature"):
        sig = ses_v1.SESSignatureV1.load(data, strict=True)
        tbs = sig["to_sign"]
        tbs_node = root.children[0]
        if len(tbs_node.children) != 7:
            raise _malformed("v1 TBS_Sign 应有 7 个元素", "v1 TBS_Sign must have 7 elements")
        time_info, time_raw = _v1_time_info(data, tbs_node.children[2], warnings)
        tbs_version = int(tbs["version"].native)
        if tbs_version != seal.header_version:
            warnings.append("tbs_version_mismatch")
        return ParsedSesSignature(
            version=1,
            tbs_version=tbs_version,
            seal=seal,
            time_info=time_info,
            time_info_raw=time_raw,
            data_hash=_check_hash(_v1_bytes(data, tbs_node.children[3], "dataHash")),
            property_info=tbs["property_info"].native,
            signer_cert_der=bytes(tbs["cert"].native),
            signature_algorithm=tbs["signature_algorithm"].dotted,
            signature=_signature_bytes(bytes(sig["signature"].native)),
            time_stamp=None,
            ext_datas=(),
            raw=data,
            tbs_bytes=tbs_node.slice(data),
            warnings=tuple(warnings),
        )


def parse_ses_signature(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> ParsedSesSignature:
    """Parse an SES signature (v1, v4 or v5). The embedded seal's ``raw`` is its exact slice."""
    data = bytes(data)
    root = _scan(data, max_size)
    family = _signature_family(root)
    seal_node = _embedded_seal_node(root.children[0])
    if _seal_family(seal_node) != family:
        raise _malformed(
            "签章数据与所含印章的版本结构不一致", "signature and embedded seal have different layouts"
        )
    seal = _parse_seal_cached(seal_node.slice(data), max_size)
    warnings: list[str] = []
    if family == 1:
        return _parse_signature_v1(data, root, seal, warnings)
    return _parse_signature_v4(data, root, seal, warnings)


# --- signature checks ----------------------------------------------------------------------------------
class SignatureCheck(enum.Enum):
    """Outcome of a maker or signer signature check, with the reason when it is not VALID."""

    VALID = "valid"
    INVALID = "invalid"  # well-formed, does not verify
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"  # OID is not SM2-with-SM3
    BAD_CERTIFICATE = "bad_certificate"  # certificate unreadable or its key is not an SM2 point
    BAD_SIGNATURE_ENCODING = "bad_signature_encoding"


# Minimal on purpose: switch to gmpki.x509 (load_certificate_der / sm2_public_key_from_spki) once settled.
def certificate_public_key(cert_der: bytes) -> sm2.SM2PublicKey | None:
    """The SM2 public key of an X.509 certificate, or None if it has none / cannot be read."""
    try:
        cert = x509.Certificate.load(cert_der, strict=True)
        spki = cert["tbs_certificate"]["subject_public_key_info"]
        if spki["algorithm"]["algorithm"].dotted != "1.2.840.10045.2.1":
            return None
        params = spki["algorithm"]["parameters"]
        if params.name != "named" or params.chosen.dotted != _SM2_CURVE:
            return None
        point = spki["public_key"].native
        return sm2.SM2PublicKey.from_bytes(bytes(point))
    except EsealError:
        return None
    except Exception:  # asn1crypto raises assorted types on hostile certificates
        return None


def _check(cert_der: bytes, algorithm: str, message: bytes, signature: bytes) -> SignatureCheck:
    if algorithm != SM2_WITH_SM3:
        return SignatureCheck.UNSUPPORTED_ALGORITHM
    key = certificate_public_key(cert_der)
    if key is None:
        return SignatureCheck.BAD_CERTIFICATE
    try:
        der = sm2.normalize_signature(signature)
    except CryptoError:
        return SignatureCheck.BAD_SIGNATURE_ENCODING
    return SignatureCheck.VALID if sm2.verify(key, message, der) else SignatureCheck.INVALID


def check_maker_signature(seal: ParsedSeal) -> SignatureCheck:
    """The maker signature under the rule of the seal's version only (v1 or v4/v5, §4.1)."""
    return _check(seal.maker_cert_der, seal.signature_algorithm, seal.signed_bytes, seal.signature)


def verify_maker_signature(seal: ParsedSeal) -> bool:
    return check_maker_signature(seal) is SignatureCheck.VALID


def check_signer_signature(sig: ParsedSesSignature) -> SignatureCheck:
    """The signer signature over TBS_Sign as read (§4.2). Does not look at the seal's maker signature."""
    return _check(sig.signer_cert_der, sig.signature_algorithm, sig.tbs_bytes, sig.signature)


def verify_signer_signature(sig: ParsedSesSignature) -> bool:
    return check_signer_signature(sig) is SignatureCheck.VALID


def cert_list_contains(seal: ParsedSeal, cert_der: bytes) -> bool | None:
    """Is ``cert_der`` entitled to use the seal (check #9)? None: only digests of unknown type."""
    if seal.cert_list_type == 1:
        return any(c == cert_der for c in seal.cert_list)
    undecidable = False
    for entry in seal.cert_digests:
        kind = entry.digest_type.strip().upper()
        if kind in ("SM3", SM3_OID):
            if _sm3.sm3(cert_der) == entry.value:
                return True
        else:
            undecidable = True
    return None if undecidable else False


# --- making ---------------------------------------------------------------------------------------------
def _ia5(value: str, what: str) -> str:
    if not value or not value.isascii():
        raise InvalidInput(f"{what} 必须为非空 ASCII 文本", f"{what} must be non-empty ASCII text")
    return value


def _generalized_time(value: dt.datetime, what: str) -> core.GeneralizedTime:
    if value.tzinfo is None:
        raise InvalidInput(f"{what} 必须带时区", f"{what} must be timezone-aware")
    return core.GeneralizedTime(value.astimezone(_UTC).replace(microsecond=0))


def _ext_datas(extensions: Sequence[SealExtension]) -> ses_v4.ExtensionDatas:
    # critical is always written, even FALSE: every producer in the corpus does, and ofdrw's reader
    # drops ExtData items without it (and would then re-encode differently).
    return ses_v4.ExtensionDatas(
        [{"extn_id": e.oid, "critical": e.critical, "extn_value": e.value} for e in extensions]
    )


def build_seal_info(
    *,
    es_id: str,
    name: str,
    seal_type: int,
    certs: Sequence[bytes],
    create_date: dt.datetime,
    valid_start: dt.datetime,
    valid_end: dt.datetime,
    picture_type: str,
    picture_data: bytes,
    picture_width: int,
    picture_height: int,
    vid: str,
    version: int = 4,
    extensions: Sequence[SealExtension] = (),
) -> bytes:
    """DER of a GB/T 38540 SES_SealInfo (certListType 1) — the bytes the maker signs."""
    if version not in (4, 5):
        raise InvalidInput("只能制作 4 或 5 版印章", "only seal versions 4 and 5 can be made")
    if not certs:
        raise InvalidInput("印章证书列表不能为空", "the seal's certificate list must not be empty")
    if valid_end < valid_start:
        raise InvalidInput("印章有效期结束早于开始", "seal validity ends before it starts")
    if picture_width <= 0 or picture_height <= 0:
        raise InvalidInput("印章图片尺寸必须为正数", "picture width and height must be positive")
    if not picture_data:
        raise InvalidInput("印章图片不能为空", "picture data must not be empty")
    value: dict[str, object] = {
        "header": {"id": "ES", "version": version, "vid": _ia5(vid, "vid")},
        "es_id": _ia5(es_id, "esID"),
        "property": ses_v4.SESESPropertyInfo(
            {
                "type": seal_type,
                "name": name,
                "cert_list_type": 1,
                "cert_list": ses_v4.CertInfoList([bytes(c) for c in certs]),
                "create_date": _generalized_time(create_date, "createDate"),
                "valid_start": _generalized_time(valid_start, "validStart"),
                "valid_end": _generalized_time(valid_end, "validEnd"),
            }
        ),
        "picture": {
            "type": _ia5(picture_type, "picture type"),
            "data": bytes(picture_data),
            "width": ses_v4.Dimension(name="integer", value=int(picture_width)),
            "height": ses_v4.Dimension(name="integer", value=int(picture_height)),
        },
    }
    if extensions:
        value["ext_datas"] = _ext_datas(extensions)
    return bytes(ses_v4.SESSealInfo(value).dump())


def _require_key_match(cert_der: bytes, signer: MessageSigner, who_zh: str, who_en: str) -> None:
    key = certificate_public_key(cert_der)
    if key is None:
        raise InvalidInput(
            f"{who_zh}证书不含可用的 SM2 公钥", f"the {who_en} certificate has no usable SM2 key"
        )
    if key.point != signer.public_key.point:
        raise InvalidInput(
            f"{who_zh}私钥与证书公钥不匹配", f"the {who_en} key does not match the certificate"
        )


def _bits(value: bytes) -> bytes:
    return bytes(core.OctetBitString(value).dump())


def make_seal(
    seal_info_der: bytes, maker_cert_der: bytes, signer: MessageSigner, *, time_stamp: bytes | None = None
) -> bytes:
    """Sign an SES_SealInfo (as given, byte for byte) and assemble the SESeal.

    ``time_stamp`` (v5 seals only) becomes the trailing ``[0] EXPLICIT BIT STRING``.
    """
    seal_info_der = bytes(seal_info_der)
    if not seal_info_der.startswith(b"\x30"):
        raise _malformed("印章信息不是 SEQUENCE", "SES_SealInfo is not a SEQUENCE")
    cert_tlv = bytes(core.OctetString(bytes(maker_cert_der)).dump())
    alg_tlv = bytes(core.ObjectIdentifier(SM2_WITH_SM3).dump())
    # Decode every field through the reader before anything is signed; the placeholder signature
    # only completes the shape.
    draft = parse_seal(_tlv(0x30, seal_info_der + cert_tlv + alg_tlv + _bits(b"\x30\x00")))
    if draft.version not in (4, 5) or draft.header_version not in (4, 5):
        raise InvalidInput("只能制作 4 或 5 版印章", "only seal versions 4 and 5 can be made")
    if time_stamp is not None and draft.version != 5:
        raise InvalidInput("只有 5 版印章可带时间戳", "only version 5 seals carry a time-stamp")
    _require_key_match(maker_cert_der, signer, "制章者", "maker")
    signature = sm2.normalize_signature(signer.sign(seal_info_der))
    body = seal_info_der + cert_tlv + alg_tlv + _bits(signature)
    if time_stamp is not None:
        body += _tlv(0xA0, _bits(time_stamp))
    seal = _tlv(0x30, body)
    if not verify_maker_signature(parse_seal(seal)):
        raise CryptoError("制章签名自检失败", "the maker signature just made does not verify")
    return seal


def build_tbs_sign(
    seal_bytes: bytes,
    data_hash: bytes,
    property_info: str,
    time_info: dt.datetime,
    *,
    ext_datas: Sequence[SealExtension] | None = None,
) -> bytes:
    """DER of a v4/v5 TBS_Sign; the seal is embedded verbatim and its version is the TBS version."""
    seal_bytes = bytes(seal_bytes)
    seal = parse_seal(seal_bytes)
    if seal.version not in (4, 5) or seal.header_version not in (4, 5):
        raise InvalidInput("只能用 4 或 5 版印章签章", "only version 4 and 5 seals can sign")
    if len(data_hash) != 32:
        raise InvalidInput("dataHash 必须为 32 字节 SM3 摘要", "dataHash must be a 32-byte SM3 digest")
    body = (
        bytes(core.Integer(seal.header_version).dump())
        + seal_bytes
        + bytes(_generalized_time(time_info, "timeInfo").dump())
        + _bits(bytes(data_hash))
        + bytes(core.IA5String(_ia5(property_info, "propertyInfo")).dump())
    )
    if ext_datas:
        body += _tlv(0xA0, bytes(_ext_datas(ext_datas).dump()))
    return _tlv(0x30, body)


def make_ses_signature(
    seal_bytes: bytes,
    data_hash: bytes,
    property_info: str,
    signer_cert_der: bytes,
    signer: MessageSigner,
    time_info: dt.datetime,
    ext_datas: Sequence[SealExtension] | None = None,
    time_stamp: bytes | Callable[[bytes], bytes] | None = None,
    *,
    require_listed_signer: bool = True,
) -> bytes:
    """Sign a TBS_Sign and assemble the v4/v5 SES_Signature (§4.6).

    ``time_stamp`` is either the token bytes or a callable that receives the DER signature value
    (what a TSA time-stamps) and returns the token. Seal validity and certificate validity are the
    caller's policy; the structural preconditions (key matches certificate, certificate listed in the
    seal) are enforced here.
    """
    signer_cert_der = bytes(signer_cert_der)
    tbs = build_tbs_sign(seal_bytes, data_hash, property_info, time_info, ext_datas=ext_datas)
    _require_key_match(signer_cert_der, signer, "签章者", "signer")
    if require_listed_signer and cert_list_contains(parse_seal(seal_bytes), signer_cert_der) is not True:
        raise NotUsable(
            "签章者证书不在印章的证书列表中", "the signer certificate is not in the seal's certificate list"
        )
    signature = sm2.normalize_signature(signer.sign(tbs))
    body = (
        tbs
        + bytes(core.OctetString(signer_cert_der).dump())
        + bytes(core.ObjectIdentifier(SM2_WITH_SM3).dump())
        + _bits(signature)
    )
    if time_stamp is not None:
        token = time_stamp(signature) if callable(time_stamp) else bytes(time_stamp)
        body += _tlv(0xA0, _bits(token))
    result = _tlv(0x30, body)
    if not verify_signer_signature(parse_ses_signature(result)):
        raise CryptoError("签章签名自检失败", "the signer signature just made does not verify")
    return result
