"""Sealing OFD documents: a Seal-type signature (GB/T 33190-2016 §18, GB/T 38540) added to a package.

Reference: ``../shared/spec/seal-formats.md`` §4.3–4.4 (what is hashed and signed), §5.1–5.6
(package layout, path rules, Signatures.xml / Signature.xml, how ofdrw signs, protection modes).

Only the **first DocBody** of OFD.xml is sealed (as ofdrw does); the other documents of a
multi-document package are left untouched.

What one sealing writes, in ofdrw's order (§5.5)::

    OFD.xml                          + <ofd:Signatures> in the first DocBody, only if it had none
    Doc_0/Signs/Signatures.xml       created, or re-written with one more <ofd:Signature>; MaxSignId
    Doc_0/Signs/Sign_N/Seal.esl      the seal, byte for byte as issued
    Doc_0/Signs/Sign_N/Signature.xml SignedInfo: Provider, SignatureMethod, SignatureDateTime,
                                     References (SM3 of every package file), StampAnnot(s), Seal
    Doc_0/Signs/Sign_N/SignedValue.dat  SES_Signature: dataHash = SM3(Signature.xml bytes),
                                     propertyInfo = "/Doc_0/Signs/Sign_N/Signature.xml"

References cover every file of the package as it will be written — the document, OFD.xml, earlier
signatures' files and this signature's ``Seal.esl`` (like ofdrw; the verifier's coverage check
expects it) — except this signature's own Signature.xml and SignedValue.dat, which cannot protect
themselves, and, in ``continue`` mode, Signatures.xml, so that later signatures can be appended
without breaking this one. In ``protect_all`` mode Signatures.xml is referenced too and any later
sealing is refused (:class:`DocumentFullyProtected`). Signature IDs and StampAnnot IDs come from one
counter, as in ofdrw (signature ``k``, its stamps ``k+1``…, ``MaxSignId`` the last one used).

Every other entry keeps its bytes (:meth:`OfdPackage.rewrite`); a previous Signatures.xml is
re-serialised from its entries (ID, Type, BaseLoc, Relative — anything else in it is dropped),
which is safe because a signature that protected it would have made us refuse.

The work is split so it can run on either side of a network (``signer.two_step``):
:func:`analyse_ofd` (no seal needed; refuses hostile, locked or unplaceable documents),
:func:`prepare_seal` (with the seal bytes and the signing time: every new file but the signed
value, and the Signature.xml digest to sign; the new parts are read back by
:func:`check_prepared`) and :func:`finish_seal` (checks the SES signature against what was
prepared, assembles the package and re-reads it with :func:`check_sealed_package`). :func:`seal_ofd`
runs the three around :func:`seal_registry.seals.sign_prepared`, so authorisation, signing and the
audit entry share the caller's one transaction and nothing is returned unless all of it succeeded.
Batch sealing lays the package out before it signs (:func:`draft_sealed`) and only adds the signed
value afterwards (:func:`assemble_sealed`), the same bytes :func:`finish_seal` writes.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final
from xml.sax.saxutils import escape

from sqlalchemy.orm import Session

from core.errors import Conflict, InvalidInput, MalformedData
from gmpki import seal as ses
from gmpki.ofd import (
    ContainerLimits,
    DocBody,
    DocumentPages,
    OfdPackage,
    PackageDraft,
    SignatureList,
    parse_doc_bodies,
    parse_signature_list,
    parse_signature_xml,
    read_doc_bodies,
    read_document,
    read_signature_list,
    read_signature_xml,
)
from gmpki.ofd.signatures import OFD_XML
from gmpki.sm3 import sm3
from hsm_adapters.keystore import KeyStore
from seal_registry.seals import SealGrant, ToBeSigned, sign_prepared

from .placement import Placement, PlacementPlan, StampBox, plan_placement

OFD_NS: Final = "http://www.ofdspec.org/2016"
XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'
PROVIDER_NAME: Final = "eseal"
PROVIDER_COMPANY: Final = "eseal"
SM2_WITH_SM3: Final = ses.SM2_WITH_SM3
SM3_OID: Final = ses.SM3_OID
SIGNATURES_FILE: Final = "Signatures.xml"
OFD_MEDIA_TYPE: Final = "application/ofd"


def _provider_version() -> str:
    try:
        return metadata.version("eseal")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


PROVIDER_VERSION: Final = _provider_version()


class SealMode(enum.StrEnum):
    CONTINUE = "continue"  # Signatures.xml not referenced: later signatures may be appended
    PROTECT_ALL = "protect_all"  # Signatures.xml referenced: the document is closed to further seals


class DocumentFullyProtected(Conflict):
    """An existing signature protects the signature list, so appending one would break it."""

    code = "document_fully_protected"
    title_zh, title_en = "文档已整体保护", "Document fully protected"


def sealing_mode(value: SealMode | str) -> SealMode:
    try:
        return SealMode(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        raise InvalidInput(
            f"未知的签章模式 {value!r}（可选 continue、protect_all）",
            f"unknown sealing mode {value!r} (continue or protect_all)",
        ) from None


# --- XML writing -----------------------------------------------------------------------------------------
def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _loc(path: str) -> str:
    """An absolute ST_Loc for a package path (the form every sample uses for these values)."""
    return "/" + path


def _trailing_number(value: str | None) -> int:
    match = re.search(r"(\d{1,9})\s*$", value or "")
    return int(match.group(1)) if match else 0


def _signatures_xml(entries: list[tuple[str, str | None, str | None, str | None]], max_sign_id: int) -> bytes:
    parts = [XML_DECLARATION, f'<ofd:Signatures xmlns:ofd="{OFD_NS}">']
    parts.append(f"<ofd:MaxSignId>{max_sign_id}</ofd:MaxSignId>")
    for sig_id, sig_type, base_loc, relative in entries:
        attrs = f'ID="{_attr(sig_id)}"'
        if sig_type is not None:
            attrs += f' Type="{_attr(sig_type)}"'
        if base_loc is not None:
            attrs += f' BaseLoc="{_attr(base_loc)}"'
        if relative is not None:
            attrs += f' Relative="{_attr(relative)}"'
        parts.append(f"<ofd:Signature {attrs}/>")
    parts.append("</ofd:Signatures>")
    return "".join(parts).encode("utf-8")


def signature_datetime(when: dt.datetime) -> str:
    """SignatureDateTime text: the signing instant in UTC, ``YYYYMMDDHHMMSSZ`` (informational, §5.3)."""
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


def _signature_xml(
    *,
    references: list[tuple[str, bytes]],
    stamps: list[tuple[str, StampBox]],
    seal_path: str,
    signed_value_path: str,
    when: dt.datetime,
) -> bytes:
    parts = [XML_DECLARATION, f'<ofd:Signature xmlns:ofd="{OFD_NS}">', "<ofd:SignedInfo>"]
    parts.append(
        f'<ofd:Provider ProviderName="{PROVIDER_NAME}" Version="{_attr(PROVIDER_VERSION)}" '
        f'Company="{PROVIDER_COMPANY}"/>'
    )
    parts.append(f"<ofd:SignatureMethod>{SM2_WITH_SM3}</ofd:SignatureMethod>")
    parts.append(f"<ofd:SignatureDateTime>{signature_datetime(when)}</ofd:SignatureDateTime>")
    parts.append(f'<ofd:References CheckMethod="{SM3_OID}">')
    for path, digest in references:
        value = base64.b64encode(digest).decode("ascii")
        parts.append(
            f'<ofd:Reference FileRef="{_attr(_loc(path))}">'
            f"<ofd:CheckValue>{value}</ofd:CheckValue></ofd:Reference>"
        )
    parts.append("</ofd:References>")
    for annot_id, stamp in stamps:
        clip = f' Clip="{stamp.clip.text()}"' if stamp.clip is not None else ""
        parts.append(
            f'<ofd:StampAnnot ID="{annot_id}" PageRef="{_attr(stamp.page_id)}" '
            f'Boundary="{stamp.boundary.text()}"{clip}/>'
        )
    parts.append(f"<ofd:Seal><ofd:BaseLoc>{_attr(_loc(seal_path))}</ofd:BaseLoc></ofd:Seal>")
    parts.append("</ofd:SignedInfo>")
    parts.append(f"<ofd:SignedValue>{_attr(_loc(signed_value_path))}</ofd:SignedValue>")
    parts.append("</ofd:Signature>")
    return "".join(parts).encode("utf-8")


_DOCBODY_START = re.compile(rb"<(?P<prefix>[A-Za-z_][\w.\-]*:)?DocBody(?=[\s/>])[^>]*>")


def add_signatures_to_ofd_xml(
    raw: bytes, signatures_path: str, *, before: Sequence[DocBody] | None = None
) -> bytes:
    """OFD.xml with ``<Signatures>`` appended to the first DocBody; every other byte unchanged.

    Signatures is the last child of CT_DocBody, so it goes just before ``</DocBody>``, with the
    DocBody's own prefix. The result is re-read and must name ``signatures_path`` in the first
    DocBody and leave every DocBody otherwise as it was (``before``: the DocBodies of ``raw`` when
    the caller has read them already).
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:200]:
        raise MalformedData("不支持 UTF-16 编码的 OFD.xml", "OFD.xml in UTF-16 is not supported")
    start = _DOCBODY_START.search(raw)
    if start is None or start.group(0).endswith(b"/>"):
        raise MalformedData("OFD.xml 中找不到可写入的 DocBody", "no writable DocBody in OFD.xml")
    prefix = start.group("prefix") or b""
    end = re.compile(rb"</" + re.escape(prefix) + rb"DocBody\s*>").search(raw, start.end())
    if end is None:
        raise MalformedData("OFD.xml 的 DocBody 未闭合", "the DocBody of OFD.xml is not closed")
    element = b"<%sSignatures>%s</%sSignatures>" % (prefix, escape(signatures_path).encode("utf-8"), prefix)
    updated = raw[: end.start()] + element + raw[end.start() :]
    if before is None:
        before = parse_doc_bodies(raw)
    after = parse_doc_bodies(updated)
    expected = (before[0].doc_root, signatures_path)
    if (
        len(after) != len(before)
        or (after[0].doc_root, after[0].signatures) != expected
        or [(b.doc_root, b.signatures) for b in after[1:]] != [(b.doc_root, b.signatures) for b in before[1:]]
    ):
        raise MalformedData(
            "无法在 OFD.xml 中登记签名列表", "could not add the signature list to OFD.xml", name=OFD_XML
        )
    return updated


# --- analysis (before the seal is known) ----------------------------------------------------------------
@dataclass(frozen=True)
class OfdTarget:
    """A document checked for sealing: where the new signature goes and where its stamps go."""

    package: OfdPackage = field(repr=False)
    document_sm3: bytes
    body: DocBody
    document: DocumentPages
    mode: SealMode
    signatures_path: str
    signature_list: SignatureList | None  # None: this sealing creates the list
    register_in_ofd_xml: bool  # OFD.xml must gain <Signatures>
    sign_dir: str  # e.g. Doc_0/Signs/Sign_1
    last_id: int  # highest signature / StampAnnot ID in use
    plan: PlacementPlan
    bodies: tuple[DocBody, ...] = ()  # every DocBody of OFD.xml (``body`` is the first)


def _existing_ids_and_lock(pkg: OfdPackage, listing: SignatureList) -> int:
    """Highest ID in use; DocumentFullyProtected if an existing signature covers the list."""
    highest = _trailing_number(listing.max_sign_id)
    for entry in listing.entries:
        if entry.problem is not None or entry.path is None:
            raise MalformedData(
                f"已有签名 {entry.id} 无法读取：{entry.problem.zh if entry.problem else ''}",
                f"existing signature {entry.id} cannot be read: {entry.problem.en if entry.problem else ''}",
            )
        highest = max(highest, _trailing_number(entry.id))
        xml = read_signature_xml(pkg, entry.path)
        if any(r.path == listing.path for r in xml.references):
            raise DocumentFullyProtected(
                f"签名 {entry.id} 已保护整个文档（含签名列表），不能再追加签章",
                f"signature {entry.id} protects the whole document including the signature list; "
                "no further seal can be added",
                signature_id=entry.id,
            )
        for stamp in xml.stamp_annots:
            highest = max(highest, _trailing_number(stamp.id))
    return highest


def _next_sign_dir(pkg: OfdPackage, signs_dir: str) -> str:
    used = {-1}
    pattern = re.compile(re.escape(signs_dir) + r"/Sign_(\d{1,9})(?:/|$)")
    for name in (*pkg.names, *pkg.directories):
        match = pattern.match(name)
        if match:
            used.add(int(match.group(1)))
    return f"{signs_dir}/Sign_{max(used) + 1}"


def analyse_ofd(
    ofd: bytes,
    *,
    placement: Placement | None,
    mode: SealMode | str = SealMode.CONTINUE,
    limits: ContainerLimits | None = None,
) -> OfdTarget:
    """Read the package and decide where the new signature goes; refuse what cannot be sealed.

    Raises MalformedData / InputTooLarge (not an OFD, hostile ZIP or XML, broken structure),
    InvalidInput (placement does not fit the document), DocumentFullyProtected (an existing
    signature protects the signature list) and Conflict (OFD.xml would have to change although
    another document of the package is signed).
    """
    mode = sealing_mode(mode)
    ofd = bytes(ofd)
    pkg = OfdPackage(ofd, limits=limits)
    bodies = read_doc_bodies(pkg)
    body = bodies[0]
    if body.doc_root is None:
        raise MalformedData(
            "OFD.xml 的第一个 DocBody 缺少 DocRoot", "the first DocBody of OFD.xml has no DocRoot"
        )
    document = read_document(pkg, body.doc_root)
    plan = plan_placement(pkg, document, placement)
    doc_dir = posixpath.dirname(body.doc_root)
    default_list = (
        posixpath.join(doc_dir, "Signs", SIGNATURES_FILE) if doc_dir else f"Signs/{SIGNATURES_FILE}"
    )
    listing: SignatureList | None = None
    last_id = 0
    if body.signatures is not None:
        signatures_path = body.signatures
        if signatures_path in pkg:
            listing = read_signature_list(pkg, signatures_path)
            last_id = _existing_ids_and_lock(pkg, listing)
    else:
        signatures_path = default_list
        if signatures_path in pkg:
            raise MalformedData(
                f"包内已有未在 OFD.xml 中登记的签名列表 {signatures_path}",
                f"the package holds a signature list {signatures_path} that OFD.xml does not name",
            )
        if any(b.signatures is not None for b in bodies[1:]):
            # Their signatures most likely protect OFD.xml, which registering ours would change.
            raise Conflict(
                "包内其他文档已签章，不能修改 OFD.xml 以登记新的签名列表",
                "another document of the package is signed; OFD.xml cannot be changed to register "
                "a signature list",
            )
    sign_dir = _next_sign_dir(pkg, posixpath.dirname(signatures_path) or "Signs")
    for name in pkg.names:
        # Inflate and hash everything now, before the seal is locked: a ZIP bomb that lies about its
        # sizes fails here, and the References later cost nothing (the package caches digests).
        pkg.sm3(name)
    return OfdTarget(
        package=pkg,
        document_sm3=sm3(ofd),
        body=body,
        document=document,
        mode=mode,
        signatures_path=signatures_path,
        signature_list=listing,
        register_in_ofd_xml=body.signatures is None,
        sign_dir=sign_dir,
        last_id=last_id,
        plan=plan,
        bodies=bodies,
    )


# --- preparation (seal and time known) -------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedSeal:
    """Every new or changed entry except SignedValue.dat, and what the SES signature must cover."""

    target: OfdTarget = field(repr=False)
    seal: bytes = field(repr=False)
    changes: Mapping[str, bytes] = field(repr=False)
    signature_id: str
    signature_xml_path: str
    signature_xml: bytes = field(repr=False)
    signed_value_path: str
    seal_path: str
    stamps: tuple[tuple[str, StampBox], ...]
    references: tuple[str, ...]
    signing_time: dt.datetime
    reference_digests: tuple[bytes, ...] = field(default=(), repr=False)  # SM3, as in ``references``

    @property
    def data_hash(self) -> bytes:
        """SM3 of the Signature.xml bytes: the SES signature's dataHash (§4.3)."""
        return sm3(self.signature_xml)

    @property
    def property_info(self) -> str:
        """The absolute path of Signature.xml, as every sample writes it."""
        return _loc(self.signature_xml_path)

    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "format": "ofd",
            "signature_id": self.signature_id,
            "signature_xml": self.property_info,
            "mode": self.target.mode.value,
            "references": len(self.references),
            "stamp_pages": [s.page_id for _, s in self.stamps],
            "document_sm3": self.target.document_sm3.hex(),
        }
        return details


def prepare_seal(
    target: OfdTarget,
    seal: bytes,
    signing_time: dt.datetime,
    *,
    parsed_seal: ses.ParsedSeal | None = None,
) -> PreparedSeal:
    """Write Seal.esl, the signature list (and OFD.xml if needed) and Signature.xml for ``seal``.

    ``parsed_seal`` is ``seal`` already parsed (:func:`gmpki.seal.parse_seal`), for callers that
    seal many documents with one seal; only its picture size is used here. What was written is read
    back (:func:`check_prepared`) before it is returned.
    """
    if signing_time.tzinfo is None:
        raise InvalidInput("签章时间必须带时区", "the signing time must be timezone-aware")
    seal = bytes(seal)
    if parsed_seal is not None and parsed_seal.raw != seal:
        raise InvalidInput(
            "传入的印章解析结果与印章数据不符", "the parsed seal given is not that of the seal bytes"
        )
    parsed = parsed_seal if parsed_seal is not None else ses.parse_seal(seal)
    pkg = target.package
    boxes = target.plan.stamps(float(parsed.picture_width), float(parsed.picture_height))
    signature_id = target.last_id + 1
    stamps = tuple((str(signature_id + 1 + i), box) for i, box in enumerate(boxes))
    max_sign_id = signature_id + len(stamps)

    signature_xml_path = f"{target.sign_dir}/Signature.xml"
    signed_value_path = f"{target.sign_dir}/SignedValue.dat"
    seal_path = f"{target.sign_dir}/Seal.esl"

    entries: list[tuple[str, str | None, str | None, str | None]] = []
    if target.signature_list is not None:
        entries = [(e.id, e.type_raw, e.base_loc, e.relative) for e in target.signature_list.entries]
    entries.append((str(signature_id), "Seal", _loc(signature_xml_path), None))
    changes: dict[str, bytes] = {target.signatures_path: _signatures_xml(entries, max_sign_id)}
    if target.register_in_ofd_xml:
        changes[OFD_XML] = add_signatures_to_ofd_xml(
            pkg.read(OFD_XML), target.signatures_path, before=target.bodies or None
        )
    changes[seal_path] = seal

    references: list[tuple[str, bytes]] = []
    names = list(pkg.names) + [n for n in changes if n not in pkg]
    for name in names:
        if name == target.signatures_path and target.mode is SealMode.CONTINUE:
            continue
        replaced = changes.get(name)
        references.append((name, sm3(replaced) if replaced is not None else pkg.sm3(name)))
    signature_xml = _signature_xml(
        references=references,
        stamps=list(stamps),
        seal_path=seal_path,
        signed_value_path=signed_value_path,
        when=signing_time,
    )
    changes[signature_xml_path] = signature_xml
    prepared = PreparedSeal(
        target=target,
        seal=seal,
        changes=changes,
        signature_id=str(signature_id),
        signature_xml_path=signature_xml_path,
        signature_xml=signature_xml,
        signed_value_path=signed_value_path,
        seal_path=seal_path,
        stamps=stamps,
        references=tuple(n for n, _ in references),
        signing_time=signing_time,
        reference_digests=tuple(d for _, d in references),
    )
    check_prepared(prepared)
    return prepared


def check_prepared(prepared: PreparedSeal) -> None:
    """Read back the parts just written, as a verifier reads them (MalformedData on a mismatch):
    Signature.xml must name exactly the references and digests computed, this Seal.esl and
    SignedValue.dat and the stamps; the signature list must hold this signature once, pointing to
    this Signature.xml, and be the one the first DocBody names (or OFD.xml was edited to name it,
    which :func:`add_signatures_to_ofd_xml` re-reads)."""
    target = prepared.target
    xml = parse_signature_xml(prepared.signature_xml, prepared.signature_xml_path)
    listing = parse_signature_list(prepared.changes[target.signatures_path], target.signatures_path)
    mine = [e for e in listing.entries if e.id == prepared.signature_id]
    if (
        [(r.path, r.check_value, r.problem) for r in xml.references]
        != [(n, d, None) for n, d in zip(prepared.references, prepared.reference_digests, strict=True)]
        or xml.seal_path != prepared.seal_path
        or xml.signed_value_path != prepared.signed_value_path
        or [(a.id, a.page_ref) for a in xml.stamp_annots] != [(i, b.page_id) for i, b in prepared.stamps]
        or len(mine) != 1
        or mine[0].problem is not None
        or mine[0].path != prepared.signature_xml_path
        or (target.body.signatures != target.signatures_path and OFD_XML not in prepared.changes)
    ):
        raise MalformedData(
            "生成的签名文件自检失败", "the signature files just written failed their self-check"
        )


# --- completion -------------------------------------------------------------------------------------------
def check_signed_value(prepared: PreparedSeal, signed_value: bytes) -> ses.ParsedSesSignature:
    """The SES signature must be over this Signature.xml, with the seal written as Seal.esl."""
    parsed = ses.parse_ses_signature(bytes(signed_value))
    if parsed.data_hash != prepared.data_hash:
        raise MalformedData(
            "签章数据的 dataHash 与 Signature.xml 的 SM3 不符",
            "the SES signature's dataHash is not the SM3 of Signature.xml",
        )
    if parsed.seal.raw != prepared.seal:
        raise MalformedData(
            "签章数据中的印章与写入 Seal.esl 的印章不同",
            "the SES signature embeds another seal than Seal.esl",
        )
    if not ses.verify_signer_signature(parsed):
        raise MalformedData("签章数据的签名无效", "the SES signature does not verify")
    return parsed


def finish_seal(prepared: PreparedSeal, signed_value: bytes) -> bytes:
    """The sealed package: ``signed_value`` checked, every entry written, the result re-read."""
    check_signed_value(prepared, signed_value)
    return assemble_sealed(prepared, bytes(signed_value))


def draft_sealed(prepared: PreparedSeal) -> PackageDraft:
    """The sealed package laid out but for SignedValue.dat, its last entry (see
    :meth:`gmpki.ofd.OfdPackage.draft`): what can be built before the signature exists."""
    when = prepared.signing_time.astimezone(dt.UTC)
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    return prepared.target.package.draft(prepared.changes, date_time=stamp)


def assemble_sealed(prepared: PreparedSeal, signed_value: bytes, draft: PackageDraft | None = None) -> bytes:
    """The sealed package with ``signed_value`` (not checked here: see :func:`check_signed_value`),
    from ``draft`` (:func:`draft_sealed`) when given, re-read by :func:`check_sealed_package`."""
    layout = draft if draft is not None else draft_sealed(prepared)
    # Stored, not deflated: the SES signature is mostly keys, signatures and the seal's picture,
    # which deflate shrinks by a third at best, and a batch finishes packages inside the signing
    # lock, where every microsecond is paid by every signer waiting for it.
    output = layout.finish({prepared.signed_value_path: signed_value}, compress=False)
    check_sealed_package(output, prepared, signed_value)
    return output


def check_sealed_package(output: bytes, prepared: PreparedSeal, signed_value: bytes) -> None:
    """Re-open the sealed package with the container reader and compare it with what was meant.

    The entries must be the original ones in their order, then the new ones; every entry this
    sealing wrote must read back (inflated, CRC-checked) as exactly the bytes prepared and signed,
    and every other entry must be stored exactly as in the original, which was read and hashed
    when the document was analysed. The parts themselves were checked when they were prepared
    (:func:`check_prepared`), so the XML is not parsed again. MalformedData on any difference.
    """
    source = prepared.target.package
    written = dict(prepared.changes)
    written[prepared.signed_value_path] = signed_value
    pkg = OfdPackage(output, limits=source.limits)
    expected = (*source.names, *(n for n in written if n not in source))
    if pkg.names != expected or pkg.directories != source.directories:
        raise MalformedData(
            "签章后的文档条目与预期不符", "the sealed document does not hold the expected entries"
        )
    for name in expected:
        value = written.get(name)
        same = (
            pkg.read(name) == value
            if value is not None
            else pkg.stored_entry(name) == source.stored_entry(name)
        )
        if not same:
            raise MalformedData(
                f"签章后的文档自检失败：{name}",
                f"the sealed document failed its self-check at {name}",
                name=name,
            )


# --- the service ----------------------------------------------------------------------------------------
def seal_ofd(
    session: Session,
    keystore: KeyStore,
    ofd_bytes: bytes,
    *,
    es_id: str,
    department_id: str,
    placement: Placement | None,
    mode: SealMode | str = SealMode.CONTINUE,
    actor: str,
    now: dt.datetime | None = None,
    time_stamp: Callable[[bytes], bytes] | None = None,
    limits: ContainerLimits | None = None,
    document_name: str | None = None,
) -> bytes:
    """Seal the first document of ``ofd_bytes`` with seal ``es_id`` of ``department_id``.

    Authorisation (:func:`seal_registry.seals.authorize_use`), signing with the department's key and
    the ``signature.made`` audit entry (seal, document SM3, Signature.xml path, time, ``actor``)
    happen in the caller's transaction; the caller commits, then writes the returned bytes. Any
    error raises before anything is returned, so a failed sealing never yields partial output.
    ``now`` fixes the signing time (tests, replays); ``time_stamp`` receives the signature value and
    returns a time-stamp token to embed.
    """
    target = analyse_ofd(ofd_bytes, placement=placement, mode=mode, limits=limits)
    prepared: list[PreparedSeal] = []

    def prepare(grant: SealGrant, when: dt.datetime) -> ToBeSigned:
        done = prepare_seal(target, grant.seal_der, when)
        prepared.append(done)
        details = done.audit_details()
        if document_name:
            details["document_name"] = document_name[:200]
        return ToBeSigned(done.data_hash, done.property_info, details)

    made = sign_prepared(
        session,
        keystore,
        es_id=es_id,
        department_id=department_id,
        actor=actor,
        prepare=prepare,
        time_stamp=time_stamp,
        at=now,
    )
    return finish_seal(prepared[0], made.signature)


__all__ = [
    "OFD_MEDIA_TYPE",
    "PROVIDER_NAME",
    "DocumentFullyProtected",
    "OfdTarget",
    "PreparedSeal",
    "SealMode",
    "add_signatures_to_ofd_xml",
    "analyse_ofd",
    "assemble_sealed",
    "check_prepared",
    "check_sealed_package",
    "check_signed_value",
    "draft_sealed",
    "finish_seal",
    "prepare_seal",
    "seal_ofd",
    "sealing_mode",
    "signature_datetime",
]
