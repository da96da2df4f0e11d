"""Facts about a submitted seal, SES signature or OFD document, collected without judging them.

This is the "diagnostic data" layer (EU DSS): parsed structures, certificates, times, digests
computed over the bytes as read, and the raw outcome of each cryptographic signature check. What
those facts mean under a policy and a trust source is decided in :mod:`verify.checks`.

Anything that cannot be read becomes a :class:`Problem` on the item it concerns, so one broken
signature never hides the others. Only container-level hostility (a ZIP bomb, unsafe entry names,
limits exceeded) escapes as an exception, from :class:`gmpki.ofd.OfdPackage`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

from core.errors import CryptoError, EsealError, InputTooLarge, MalformedData
from gmpki import ses_v4, sm2
from gmpki import sm3 as _sm3
from gmpki.cms import CmsVerification, ParsedSignedData, parse_signed_data, verify_signed_data
from gmpki.der import PARSE_ERRORS
from gmpki.ofd import (
    SEAL,
    SIGN,
    DocumentPages,
    OfdPackage,
    Problem,
    Reference,
    SignatureEntry,
    SignatureXml,
    StampAnnotation,
    read_doc_bodies,
    read_document,
    read_signature_list,
    read_signature_xml,
    read_stamp_annotations,
)
from gmpki.seal import (
    SM2_WITH_SM3,
    ParsedSeal,
    ParsedSesSignature,
    SignatureCheck,
    certificate_public_key,
    clear_seal_cache,
    parse_seal,
    parse_ses_signature,
)
from gmpki.tsp import TimestampVerification, hash_data, parse_token, verify_token
from gmpki.x509 import Certificate, LruCache, load_certificate_der
from gmpki.x509 import clear_caches as clear_x509_caches

from .policy import DIGEST_SHORT_NAMES, digest_oid

SOURCE_SEAL = "seal"  # a standalone .esl
SOURCE_SES = "ses"  # a standalone SES_Signature (SignedValue.dat)
SOURCE_OFD = "ofd"  # a signature inside an OFD package


def problem_of(exc: EsealError) -> Problem:
    return Problem(exc.message_zh, exc.message_en)


# --- certificates and seals ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateFacts:
    der: bytes = field(repr=False)
    certificate: Certificate | None
    problem: Problem | None

    def describe(self) -> str:
        if self.certificate is not None:
            return self.certificate.describe()
        return f"<无法解析的证书 / unreadable certificate, SM3 {_sm3.sm3_hex(self.der)[:16]}…>"


def certificate_facts(der: bytes) -> CertificateFacts:
    try:
        return CertificateFacts(der, load_certificate_der(der), None)  # cached by content
    except EsealError as exc:
        return CertificateFacts(der, None, problem_of(exc))


# --- signature checks, remembered by content ------------------------------------------------------------
# The SM2 key of a certificate as gmpki.seal reads it (leniently: any certificate with an SM2 point),
# by the certificate's DER. Wrapped in a 1-tuple because "no usable key" is an answer too.
_PUBLIC_KEYS: Final[LruCache[bytes, tuple[sm2.SM2PublicKey | None]]] = LruCache(2048)
# The maker signature's outcome by the SM3 of the seal bytes: everything it depends on (SES_SealInfo,
# certificate, algorithm, signature) is inside those bytes, and one seal signs many documents.
_MAKER_CHECKS: Final[LruCache[bytes, SignatureCheck]] = LruCache(2048)


def _public_key(cert_der: bytes) -> sm2.SM2PublicKey | None:
    return _PUBLIC_KEYS.get_or_compute(cert_der, lambda: (certificate_public_key(cert_der),))[0]


def sm2_check(cert_der: bytes, algorithm: str, message: bytes, signature: bytes) -> SignatureCheck:
    """The outcome of gmpki.seal's maker/signer check (same rules), with the key lookup cached."""
    if algorithm != SM2_WITH_SM3:
        return SignatureCheck.UNSUPPORTED_ALGORITHM
    key = _public_key(cert_der)
    if key is None:
        return SignatureCheck.BAD_CERTIFICATE
    try:
        der = sm2.normalize_signature(signature)
    except CryptoError:
        return SignatureCheck.BAD_SIGNATURE_ENCODING
    return SignatureCheck.VALID if sm2.verify(key, message, der) else SignatureCheck.INVALID


def clear_caches() -> None:
    """Empty every content cache the verifier uses (certificates, signature checks, names, keys,
    parsed seals, maker checks): for measuring a cold verification. Never needed for correctness."""
    clear_x509_caches()
    clear_seal_cache()
    _PUBLIC_KEYS.clear()
    _MAKER_CHECKS.clear()


@dataclass(frozen=True)
class SealFacts:
    parsed: ParsedSeal
    sm3: bytes  # of the seal's DER as read: its identity across files (P16)
    maker: CertificateFacts
    maker_signature: SignatureCheck


def seal_facts(parsed: ParsedSeal) -> SealFacts:
    digest = _sm3.sm3(parsed.raw)
    return SealFacts(
        parsed=parsed,
        sm3=digest,
        maker=certificate_facts(parsed.maker_cert_der),
        maker_signature=_MAKER_CHECKS.get_or_compute(
            digest,
            lambda: sm2_check(
                parsed.maker_cert_der, parsed.signature_algorithm, parsed.signed_bytes, parsed.signature
            ),
        ),
    )


# --- time-stamps -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimestampFacts:
    """A time-stamp token found on a signature or seal, checked cryptographically (not for trust):
    CMS signature and messageDigest, ESS certificate binding, the TSA's timeStamping usage, and
    whether its imprint covers ``covers`` (the signature value as read)."""

    where_zh: str
    where_en: str
    token: bytes = field(repr=False)
    verification: TimestampVerification | None
    problem: EsealError | None  # why the token does not verify (None when it does)
    imprint_ok: bool  # the imprint is the hash of the signature value it sits on
    of_signature: bool  # over the document signature (its genTime can prove the signing time)


def timestamp_facts(
    token: bytes, covers: bytes, where_zh: str, where_en: str, *, of_signature: bool
) -> TimestampFacts:
    try:
        # The imprint is compared separately: a token that verifies but covers other data is a
        # different finding from a forged one.
        verification = verify_token(token, digest=parse_token(token).hashed_message)
    except EsealError as exc:
        return TimestampFacts(where_zh, where_en, token, None, exc, False, of_signature)
    imprint_ok = hash_data(covers, verification.hash_algorithm) == verification.hashed_message
    return TimestampFacts(where_zh, where_en, token, verification, None, imprint_ok, of_signature)


def _bits_as_read(data: bytes, model: Any, name: str, fallback: bytes) -> bytes:
    """A BIT STRING field's bytes exactly as in ``data`` (the parsed views keep a normalised copy)."""
    try:
        value = model.load(data, strict=True)[name].native
    except PARSE_ERRORS:
        return fallback
    return bytes(value) if isinstance(value, bytes) else fallback


def _ses_timestamps(ses: ParsedSesSignature) -> tuple[TimestampFacts, ...]:
    out: list[TimestampFacts] = []
    if ses.time_stamp is not None:
        value = _bits_as_read(ses.raw, ses_v4.SESSignature, "signature", ses.signature)
        out.append(timestamp_facts(ses.time_stamp, value, "签章数据", "signature", of_signature=True))
    out += _seal_timestamps(ses.seal)
    return tuple(out)


def _seal_timestamps(seal: ParsedSeal) -> tuple[TimestampFacts, ...]:
    if seal.time_stamp is None:
        return ()
    value = _bits_as_read(seal.raw, ses_v4.SESeal, "signed_value", seal.signature)
    return (timestamp_facts(seal.time_stamp, value, "印章", "seal", of_signature=False),)


# --- GB/T 35275 SignedData (Sign-type OFD signatures) ------------------------------------------------------
@dataclass(frozen=True)
class CmsFacts:
    """A Sign-type signature's SignedData over Signature.xml, verified (signature and digests)."""

    parsed: ParsedSignedData = field(repr=False)
    verification: CmsVerification | None  # None when it could not be verified (see ``problem``)
    problem: Problem | None
    # How Signature.xml is bound: "message_digest" (detached, signed attributes), "content"
    # (detached, the signature is over the file itself) or "embedded_digest" (eContent = its SM3).
    binding: str
    bound: bool  # Signature.xml as stored is what was signed
    expected: bytes | None  # the digest the signature carries for Signature.xml
    actual: bytes | None  # that digest computed over Signature.xml as stored
    claimed_time: dt.datetime | None  # signingTime attribute, else Signature.xml's SignatureDateTime

    @property
    def signature_algorithm(self) -> str:
        """The policy's name for the algorithm: SM2 (either OID) is SM2-with-SM3."""
        v = self.verification
        if v is not None and v.signature_algorithm == "sm2" and v.digest_algorithm == "sm3":
            return SM2_WITH_SM3
        return self.parsed.signer.signature_oid


_SIGNATURE_DATETIME_FORMATS: Final = (
    ("%Y%m%d%H%M%S.%fZ", dt.UTC),
    ("%Y%m%d%H%M%SZ", dt.UTC),
    ("%Y-%m-%dT%H:%M:%SZ", dt.UTC),
    ("%Y-%m-%d %H:%M:%S", None),
    ("%Y-%m-%dT%H:%M:%S", None),
    ("%Y%m%d%H%M%S", None),
)
_UTC8: Final = dt.timezone(dt.timedelta(hours=8))


def signature_datetime(text: str | None) -> dt.datetime | None:
    """Signature.xml's SignatureDateTime (free format, §5.3); zone-less values are producers' local
    clocks, read as UTC+8 like v1 timeInfo. None when absent or unreadable."""
    if not text:
        return None
    value = text.strip()
    for fmt, zone in _SIGNATURE_DATETIME_FORMATS:
        try:
            parsed = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=zone or _UTC8).astimezone(dt.UTC)
    return None


def _embedded_matches(econtent: bytes, digest: bytes) -> bool:
    if econtent == digest:
        return True
    try:  # ofdrw's compatibility mode embeds the digest's base64 text
        return base64.b64decode(econtent.strip(), validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def cms_facts(signed_value: bytes, xml: SignatureXml) -> CmsFacts:
    """Parse and verify a GB/T 35275 (or RFC 5652) SignedData over Signature.xml's bytes (§5.4):
    detached with messageDigest = SM3(Signature.xml), or embedding that digest as eContent.
    Raises MalformedData / InputTooLarge / CertificateError / CryptoError when it cannot be parsed."""
    parsed = parse_signed_data(signed_value)
    signer = parsed.signer
    claimed = signer.signing_time.astimezone(dt.UTC) if signer.signing_time else None
    claimed = claimed or signature_datetime(xml.signature_datetime)
    try:
        if parsed.econtent is None:
            verification = verify_signed_data(parsed, xml.raw)
        else:
            verification = verify_signed_data(parsed)
    except EsealError as exc:
        return CmsFacts(parsed, None, problem_of(exc), "", False, None, None, claimed)
    if parsed.econtent is None:
        if signer.signed_attributes is not None:
            return CmsFacts(
                parsed,
                verification,
                None,
                "message_digest",
                verification.digest_ok,
                verification.message_digest,
                verification.computed_digest,
                claimed,
            )
        return CmsFacts(parsed, verification, None, "content", verification.signature_ok, None, None, claimed)
    digest = _sm3.sm3(xml.raw)
    return CmsFacts(
        parsed,
        verification,
        None,
        "embedded_digest",
        _embedded_matches(parsed.econtent, digest),
        parsed.econtent,
        digest,
        claimed,
    )


def _cms_signature_check(facts: CmsFacts) -> SignatureCheck:
    v = facts.verification
    if v is None:
        return SignatureCheck.INVALID
    # Embedded content: a messageDigest that does not match it means the signed attributes do not
    # cover what is there; detached: the digest is the document's binding, judged by data_hash.
    ok = v.signature_ok and (v.digest_ok or facts.parsed.econtent is None)
    return SignatureCheck.VALID if ok else SignatureCheck.INVALID


# --- OFD-specific facts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceFacts:
    reference: Reference
    actual: bytes | None  # digest of the file as stored, with the declared CheckMethod
    problem: Problem | None  # why the digest could not be compared (unresolvable, missing, bad value)

    @property
    def matches(self) -> bool:
        return self.problem is None and self.actual is not None and self.actual == self.reference.check_value


@dataclass(frozen=True)
class OfdSignatureFacts:
    doc_body: int
    entry: SignatureEntry
    list_path: str
    signature_xml: SignatureXml | None
    digest_name: str | None  # container digest for CheckMethod ("sm3"/"sha256"); None: absent or unknown
    references: tuple[ReferenceFacts, ...]
    seal_file: bytes | None = field(repr=False)
    seal_file_problem: Problem | None
    not_covered: tuple[str, ...]  # package files this signature's references do not protect
    covered_elsewhere: tuple[str, ...]  # those of them another signature's references protect
    pages: DocumentPages | None


# --- per signature and per document ------------------------------------------------------------------------
@dataclass(frozen=True)
class SignatureFacts:
    id: str
    kind: str  # "seal" (SES signature or bare seal) or "sign" (GB/T 35275)
    source: str  # SOURCE_SEAL, SOURCE_SES or SOURCE_OFD
    problems: tuple[Problem, ...]  # what could not be read or decoded
    seal: SealFacts | None
    ses: ParsedSesSignature | None
    signer: CertificateFacts | None
    signer_signature: SignatureCheck | None
    data_hash: bytes | None  # SM3 of the protected data, computed here; None: not available
    data_hash_source: str | None  # what was hashed: a package path or "detached data"
    ofd: OfdSignatureFacts | None = None
    cms: CmsFacts | None = None  # Sign-type signatures
    timestamps: tuple[TimestampFacts, ...] = ()

    @property
    def signing_time(self) -> dt.datetime | None:
        """The time the signer claims (TBS_Sign.timeInfo; for Sign type signingTime)."""
        if self.ses is not None:
            return self.ses.time_info
        if self.cms is not None:
            return self.cms.claimed_time
        return None

    @property
    def signature_timestamp(self) -> TimestampFacts | None:
        """The first time-stamp over the document signature, if any."""
        return next((t for t in self.timestamps if t.of_signature), None)


@dataclass(frozen=True)
class DocumentFacts:
    format: str
    signed: bool
    problems: tuple[Problem, ...]  # document-level: a part every signature depends on is unreadable
    signatures: tuple[SignatureFacts, ...]
    unsigned_stamps: tuple[tuple[int, StampAnnotation], ...] = ()


@dataclass(frozen=True)
class _SesParts:
    ses: ParsedSesSignature | None = None
    seal: SealFacts | None = None
    signer: CertificateFacts | None = None
    signer_check: SignatureCheck | None = None
    timestamps: tuple[TimestampFacts, ...] = ()


def _ses_parts(data: bytes, problems: list[Problem]) -> _SesParts:
    try:
        ses = parse_ses_signature(data)  # parsed once; its embedded seal is reused below
    except (MalformedData, InputTooLarge) as exc:
        problems.append(problem_of(exc))
        return _SesParts()
    return _SesParts(
        ses,
        seal_facts(ses.seal),
        certificate_facts(ses.signer_cert_der),
        sm2_check(ses.signer_cert_der, ses.signature_algorithm, ses.tbs_bytes, ses.signature),
        _ses_timestamps(ses),
    )


def collect_seal(data: bytes) -> DocumentFacts:
    """Facts about a standalone seal (.esl)."""
    problems: list[Problem] = []
    seal: SealFacts | None = None
    try:
        seal = seal_facts(parse_seal(data))
    except (MalformedData, InputTooLarge) as exc:
        problems.append(problem_of(exc))
    facts = SignatureFacts(
        "seal",
        SEAL,
        SOURCE_SEAL,
        tuple(problems),
        seal,
        None,
        None,
        None,
        None,
        None,
        timestamps=_seal_timestamps(seal.parsed) if seal is not None else (),
    )
    return DocumentFacts(SOURCE_SEAL, True, (), (facts,))


def collect_ses(data: bytes, detached_data: bytes | None) -> DocumentFacts:
    """Facts about a standalone SES signature; ``detached_data`` is what dataHash should cover."""
    problems: list[Problem] = []
    parts = _ses_parts(data, problems)
    digest = _sm3.sm3(detached_data) if detached_data is not None else None
    facts = SignatureFacts(
        "ses",
        SEAL,
        SOURCE_SES,
        tuple(problems),
        parts.seal,
        parts.ses,
        parts.signer,
        parts.signer_check,
        digest,
        "detached data" if detached_data is not None else None,
        timestamps=parts.timestamps,
    )
    return DocumentFacts(SOURCE_SES, True, (), (facts,))


@dataclass
class _Draft:
    doc_body: int
    entry: SignatureEntry
    list_path: str
    pages: DocumentPages | None
    xml: SignatureXml | None = None
    problems: list[Problem] = field(default_factory=list)


def _reference_facts(pkg: OfdPackage, ref: Reference, digest_name: str | None) -> ReferenceFacts:
    if ref.problem is not None:
        return ReferenceFacts(ref, None, ref.problem)
    assert ref.path is not None
    if ref.path not in pkg:
        return ReferenceFacts(
            ref,
            None,
            Problem(
                f"被引用的文件 {ref.file_ref} 在包内不存在", f"referenced file {ref.file_ref} is missing"
            ),
        )
    if digest_name is None:
        return ReferenceFacts(ref, None, None)
    try:
        return ReferenceFacts(ref, pkg.digest(ref.path, digest_name), None)
    except MalformedData as exc:
        return ReferenceFacts(ref, None, problem_of(exc))


def _read_drafts(
    pkg: OfdPackage, problems: list[Problem]
) -> tuple[list[_Draft], set[str], bool, list[tuple[int, StampAnnotation]]]:
    drafts: list[_Draft] = []
    list_paths: set[str] = set()
    stamps: list[tuple[int, StampAnnotation]] = []
    signed = False
    for body in read_doc_bodies(pkg):
        pages: DocumentPages | None = None
        if body.doc_root is not None and body.doc_root in pkg:
            try:
                pages = read_document(pkg, body.doc_root)
                stamps.extend((body.index, s) for s in read_stamp_annotations(pkg, pages))
            except MalformedData:
                pages = None  # only needed to check StampAnnot page references
        if body.signatures is None:
            continue
        list_paths.add(body.signatures)
        try:
            slist = read_signature_list(pkg, body.signatures)
        except MalformedData as exc:
            signed = True  # it claims to be signed; that claim cannot be read
            problems.append(problem_of(exc))
            continue
        signed = signed or bool(slist.entries)
        drafts.extend(_Draft(body.index, entry, slist.path, pages) for entry in slist.entries)
    return drafts, list_paths, signed, stamps


def collect_ofd(pkg: OfdPackage) -> DocumentFacts:
    """Facts about every signature of every DocBody of an OFD package."""
    problems: list[Problem] = []
    try:
        drafts, list_paths, signed, stamps = _read_drafts(pkg, problems)
    except MalformedData as exc:
        return DocumentFacts(SOURCE_OFD, False, (problem_of(exc),), ())
    for draft in drafts:
        if draft.entry.problem is not None:
            draft.problems.append(draft.entry.problem)
            continue
        assert draft.entry.path is not None
        try:
            draft.xml = read_signature_xml(pkg, draft.entry.path)
        except MalformedData as exc:
            draft.problems.append(problem_of(exc))
    own_files: dict[int, set[str]] = {}
    referenced: dict[int, set[str]] = {}
    for i, draft in enumerate(drafts):
        files = {draft.entry.path} if draft.entry.path else set()
        if draft.xml is not None:
            files.add(draft.xml.signed_value_path)
            referenced[i] = {r.path for r in draft.xml.references if r.path is not None}
        own_files[i] = {f for f in files if f is not None}
    all_own = set().union(*own_files.values()) if own_files else set()
    signatures = tuple(
        _ofd_signature(pkg, draft, i, list_paths | all_own, referenced) for i, draft in enumerate(drafts)
    )
    return DocumentFacts(SOURCE_OFD, signed, tuple(problems), signatures, tuple(stamps))


def _ofd_signature(
    pkg: OfdPackage, draft: _Draft, index: int, exempt: set[str], referenced: dict[int, set[str]]
) -> SignatureFacts:
    problems = list(draft.problems)
    xml = draft.xml
    if xml is None:
        ofd = OfdSignatureFacts(
            draft.doc_body, draft.entry, draft.list_path, None, None, (), None, None, (), (), draft.pages
        )
        return SignatureFacts(
            draft.entry.id,
            draft.entry.type or SEAL,
            SOURCE_OFD,
            tuple(problems),
            None,
            None,
            None,
            None,
            None,
            None,
            ofd,
        )
    oid = digest_oid(xml.check_method) if xml.check_method else None
    digest_name = DIGEST_SHORT_NAMES.get(oid) if oid else None
    references = tuple(_reference_facts(pkg, r, digest_name) for r in xml.references)

    seal_file: bytes | None = None
    seal_problem = xml.seal_problem
    if seal_problem is None and xml.seal_path is not None:
        if xml.seal_path not in pkg:
            seal_problem = Problem(
                f"印章文件 {xml.seal_loc} 在包内不存在", f"seal file {xml.seal_loc} is missing"
            )
        else:
            try:
                seal_file = pkg.read(xml.seal_path)
            except MalformedData as exc:
                seal_problem = problem_of(exc)

    mine = referenced.get(index, set())
    elsewhere = (
        set().union(*(paths for j, paths in referenced.items() if j != index)) if referenced else set()
    )
    not_covered = tuple(n for n in pkg.names if n not in mine and n not in exempt)
    ofd = OfdSignatureFacts(
        doc_body=draft.doc_body,
        entry=draft.entry,
        list_path=draft.list_path,
        signature_xml=xml,
        digest_name=digest_name,
        references=references,
        seal_file=seal_file,
        seal_file_problem=seal_problem,
        not_covered=not_covered,
        covered_elsewhere=tuple(n for n in not_covered if n in elsewhere),
        pages=draft.pages,
    )

    parts = _SesParts()
    cms: CmsFacts | None = None
    signed_value = _signed_value(pkg, xml, problems)
    if signed_value is not None and draft.entry.type == SEAL:
        parts = _ses_parts(signed_value, problems)
    elif signed_value is not None and draft.entry.type == SIGN:
        try:
            cms = cms_facts(signed_value, xml)
        except EsealError as exc:
            problems.append(problem_of(exc))
        else:
            signer_cert = cms.parsed.signer.certificate.dump()
            tokens = cms.verification.timestamp_tokens if cms.verification else ()
            parts = _SesParts(
                signer=certificate_facts(signer_cert),
                signer_check=_cms_signature_check(cms),
                timestamps=tuple(
                    timestamp_facts(t, cms.parsed.signer.signature, "签名", "signature", of_signature=True)
                    for t in tokens
                ),
            )
    return SignatureFacts(
        id=draft.entry.id,
        kind=draft.entry.type,
        source=SOURCE_OFD,
        problems=tuple(problems),
        seal=parts.seal,
        ses=parts.ses,
        signer=parts.signer,
        signer_signature=parts.signer_check,
        data_hash=_sm3.sm3(xml.raw),
        data_hash_source=xml.path,
        ofd=ofd,
        cms=cms,
        timestamps=parts.timestamps,
    )


def _signed_value(pkg: OfdPackage, xml: SignatureXml, problems: list[Problem]) -> bytes | None:
    if xml.signed_value_path not in pkg:
        problems.append(
            Problem(
                f"签名值文件 {xml.signed_value_loc} 在包内不存在",
                f"signed value file {xml.signed_value_loc} is missing from the package",
            )
        )
        return None
    try:
        return pkg.read(xml.signed_value_path)
    except MalformedData as exc:
        problems.append(problem_of(exc))
        return None
