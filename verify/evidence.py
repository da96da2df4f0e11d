"""Facts about a submitted seal, SES signature or OFD document, collected without judging them.

This is the "diagnostic data" layer (EU DSS): parsed structures, certificates, times, digests
computed over the bytes as read, and the raw outcome of each cryptographic signature check. What
those facts mean under a policy and a trust source is decided in :mod:`verify.checks`.

Anything that cannot be read becomes a :class:`Problem` on the item it concerns, so one broken
signature never hides the others. Only container-level hostility (a ZIP bomb, unsafe entry names,
limits exceeded) escapes as an exception, from :class:`gmpki.ofd.OfdPackage`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from core.errors import EsealError, InputTooLarge, MalformedData
from gmpki import sm3 as _sm3
from gmpki.ofd import (
    SEAL,
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
    ParsedSeal,
    ParsedSesSignature,
    SignatureCheck,
    check_maker_signature,
    check_signer_signature,
    parse_seal,
    parse_ses_signature,
)
from gmpki.x509 import Certificate, load_certificate_der

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
        return CertificateFacts(der, load_certificate_der(der), None)
    except EsealError as exc:
        return CertificateFacts(der, None, problem_of(exc))


@dataclass(frozen=True)
class SealFacts:
    parsed: ParsedSeal
    sm3: bytes  # of the seal's DER as read: its identity across files (P16)
    maker: CertificateFacts
    maker_signature: SignatureCheck


def seal_facts(parsed: ParsedSeal) -> SealFacts:
    return SealFacts(
        parsed=parsed,
        sm3=_sm3.sm3(parsed.raw),
        maker=certificate_facts(parsed.maker_cert_der),
        maker_signature=check_maker_signature(parsed),
    )


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

    @property
    def signing_time(self) -> dt.datetime | None:
        return self.ses.time_info if self.ses is not None else None


@dataclass(frozen=True)
class DocumentFacts:
    format: str
    signed: bool
    problems: tuple[Problem, ...]  # document-level: a part every signature depends on is unreadable
    signatures: tuple[SignatureFacts, ...]
    unsigned_stamps: tuple[tuple[int, StampAnnotation], ...] = ()


def _ses_parts(
    data: bytes, problems: list[Problem]
) -> tuple[ParsedSesSignature | None, SealFacts | None, CertificateFacts | None, SignatureCheck | None]:
    try:
        ses = parse_ses_signature(data)
    except (MalformedData, InputTooLarge) as exc:
        problems.append(problem_of(exc))
        return None, None, None, None
    return ses, seal_facts(ses.seal), certificate_facts(ses.signer_cert_der), check_signer_signature(ses)


def collect_seal(data: bytes) -> DocumentFacts:
    """Facts about a standalone seal (.esl)."""
    problems: list[Problem] = []
    seal: SealFacts | None = None
    try:
        seal = seal_facts(parse_seal(data))
    except (MalformedData, InputTooLarge) as exc:
        problems.append(problem_of(exc))
    facts = SignatureFacts("seal", SEAL, SOURCE_SEAL, tuple(problems), seal, None, None, None, None, None)
    return DocumentFacts(SOURCE_SEAL, True, (), (facts,))


def collect_ses(data: bytes, detached_data: bytes | None) -> DocumentFacts:
    """Facts about a standalone SES signature; ``detached_data`` is what dataHash should cover."""
    problems: list[Problem] = []
    ses, seal, signer, signer_check = _ses_parts(data, problems)
    digest = _sm3.sm3(detached_data) if detached_data is not None else None
    facts = SignatureFacts(
        "ses",
        SEAL,
        SOURCE_SES,
        tuple(problems),
        seal,
        ses,
        signer,
        signer_check,
        digest,
        "detached data" if detached_data is not None else None,
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

    ses = seal = signer = signer_check = None
    if draft.entry.type == SEAL:
        if xml.signed_value_path not in pkg:
            problems.append(
                Problem(
                    f"签名值文件 {xml.signed_value_loc} 在包内不存在",
                    f"signed value file {xml.signed_value_loc} is missing from the package",
                )
            )
        else:
            try:
                signed_value = pkg.read(xml.signed_value_path)
            except MalformedData as exc:
                problems.append(problem_of(exc))
            else:
                ses, seal, signer, signer_check = _ses_parts(signed_value, problems)
    return SignatureFacts(
        id=draft.entry.id,
        kind=draft.entry.type,
        source=SOURCE_OFD,
        problems=tuple(problems),
        seal=seal,
        ses=ses,
        signer=signer,
        signer_signature=signer_check,
        data_hash=_sm3.sm3(xml.raw),
        data_hash_source=xml.path,
        ofd=ofd,
    )
