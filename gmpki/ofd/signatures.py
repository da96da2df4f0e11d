"""The signature-related parts of an OFD package: OFD.xml, Document.xml, Signatures.xml, Signature.xml.

Reference: ``../shared/spec/seal-formats.md`` §5 (layout, path rules, element meanings) and §7
(P5 Type omitted, P7 namespaces and element order, P8 PageRef is a page ID).

Everything is read order-independently and by local element name. Problems that concern one
signature entry or one reference are recorded on that item (``problem``) rather than raised, so a
verifier can report them against the right signature and still check the others; problems that
make a whole part unreadable raise :class:`core.errors.MalformedData`.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Final

from core.errors import MalformedData

from .container import OfdPackage, resolve_loc
from .xml_parts import attribute, child, child_text, children, descendants, is_named, parse_xml

OFD_XML: Final = "OFD.xml"
SEAL: Final = "seal"
SIGN: Final = "sign"


@dataclass(frozen=True)
class Problem:
    """Why one item could not be used, in both languages."""

    zh: str
    en: str

    @classmethod
    def of(cls, exc: MalformedData) -> Problem:
        return cls(exc.message_zh, exc.message_en)


def _resolve(loc: str, base: str) -> tuple[str | None, Problem | None]:
    try:
        return resolve_loc(loc, base), None
    except MalformedData as exc:
        return None, Problem.of(exc)


def _root(pkg: OfdPackage, path: str, expected: str) -> ET.Element:
    if path not in pkg:
        raise MalformedData(f"包内找不到 {path}", f"{path} is missing from the package", name=path)
    return _parsed_root(pkg.read(path), path, expected)


def _parsed_root(raw: bytes, path: str, expected: str) -> ET.Element:
    root = parse_xml(raw, name=path)
    if not is_named(root, expected):
        raise MalformedData(
            f"{path} 的根元素应为 {expected}，实际为 {root.tag}",
            f"{path}: root element should be {expected}, found {root.tag}",
        )
    return root


# --- OFD.xml -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocBody:
    index: int
    doc_root: str | None  # resolved Document.xml path
    signatures: str | None  # resolved Signatures.xml path; None: this document is not signed
    signatures_loc: str | None  # as written


def read_doc_bodies(pkg: OfdPackage) -> tuple[DocBody, ...]:
    """Every DocBody of OFD.xml (multi-document packages have several)."""
    return _doc_bodies(_root(pkg, OFD_XML, "OFD"))


def parse_doc_bodies(raw: bytes) -> tuple[DocBody, ...]:
    """:func:`read_doc_bodies` of OFD.xml bytes held outside a package (e.g. an edit to check)."""
    return _doc_bodies(_parsed_root(raw, OFD_XML, "OFD"))


def _doc_bodies(root: ET.Element) -> tuple[DocBody, ...]:
    bodies: list[DocBody] = []
    for index, body in enumerate(children(root, "DocBody")):
        doc_root_loc = child_text(body, "DocRoot")
        signatures_loc = child_text(body, "Signatures")
        bodies.append(
            DocBody(
                index=index,
                doc_root=resolve_loc(doc_root_loc, OFD_XML) if doc_root_loc else None,
                signatures=resolve_loc(signatures_loc, OFD_XML) if signatures_loc else None,
                signatures_loc=signatures_loc,
            )
        )
    if not bodies:
        raise MalformedData("OFD.xml 中没有 DocBody", "OFD.xml has no DocBody")
    return tuple(bodies)


# --- Document.xml ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    id: str
    index: int  # 0-based position in Document.xml
    path: str | None


@dataclass(frozen=True)
class DocumentPages:
    path: str
    pages: tuple[Page, ...]
    annotations: str | None  # resolved Annotations.xml path

    def by_id(self, page_id: str) -> Page | None:
        for page in self.pages:
            if page.id == page_id.strip():
                return page
        return None


def read_document(pkg: OfdPackage, path: str) -> DocumentPages:
    root = _root(pkg, path, "Document")
    pages: list[Page] = []
    container = child(root, "Pages")
    for index, element in enumerate(children(container, "Page") if container is not None else []):
        page_id = (attribute(element, "ID") or "").strip()
        loc = attribute(element, "BaseLoc")
        page_path = _resolve(loc, path)[0] if loc else None
        pages.append(Page(page_id, index, page_path))
    annotations_loc = child_text(root, "Annotations")
    annotations = _resolve(annotations_loc, path)[0] if annotations_loc else None
    return DocumentPages(path, tuple(pages), annotations)


@dataclass(frozen=True)
class StampAnnotation:
    """An ``Annot Type="Stamp"`` found on a page: a visible stamp that may or may not be signed."""

    page_id: str
    annot_id: str
    subtype: str | None
    path: str


def read_stamp_annotations(pkg: OfdPackage, document: DocumentPages) -> tuple[StampAnnotation, ...]:
    """Stamp annotations listed in the document's Annotations.xml (best effort: unreadable parts skipped)."""
    if document.annotations is None or document.annotations not in pkg:
        return ()
    found: list[StampAnnotation] = []
    try:
        index = parse_xml(pkg.read(document.annotations), name=document.annotations)
    except MalformedData:
        return ()
    for page in descendants(index, "Page"):
        page_id = (attribute(page, "PageID") or "").strip()
        loc = child_text(page, "FileLoc")
        path = _resolve(loc, document.annotations)[0] if loc else None
        if path is None or path not in pkg:
            continue
        try:
            annots = parse_xml(pkg.read(path), name=path)
        except MalformedData:
            continue
        for annot in descendants(annots, "Annot"):
            if (attribute(annot, "Type") or "").strip().lower() == "stamp":
                found.append(
                    StampAnnotation(page_id, attribute(annot, "ID") or "", attribute(annot, "Subtype"), path)
                )
    return tuple(found)


# --- Signatures.xml ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignatureEntry:
    id: str
    type: str  # SEAL or SIGN; for an entry with a problem, what could be read ("" if nothing)
    type_raw: str | None
    base_loc: str | None
    path: str | None  # resolved Signature.xml path
    relative: str | None
    problem: Problem | None = None


@dataclass(frozen=True)
class SignatureList:
    path: str
    max_sign_id: str | None
    entries: tuple[SignatureEntry, ...]


def _entry(element: ET.Element, list_path: str, position: int) -> SignatureEntry:
    sig_id = (attribute(element, "ID") or "").strip()
    type_raw = attribute(element, "Type")
    base_loc = attribute(element, "BaseLoc")
    relative = attribute(element, "Relative")
    problem: Problem | None = None
    kind = (type_raw or "Seal").strip().lower()  # absent Type means Seal (P5)
    if kind not in (SEAL, SIGN):
        problem = Problem(
            f"签名 {sig_id or position} 的类型 {type_raw!r} 无效（应为 Seal 或 Sign）",
            f"signature {sig_id or position} has invalid Type {type_raw!r} (expected Seal or Sign)",
        )
        kind = ""
    path: str | None = None
    if not base_loc or not base_loc.strip():
        problem = problem or Problem(
            f"签名 {sig_id or position} 缺少 BaseLoc", f"signature {sig_id or position} has no BaseLoc"
        )
    else:
        path, resolve_problem = _resolve(base_loc, list_path)
        problem = problem or resolve_problem
    if not sig_id:
        problem = problem or Problem(
            f"第 {position + 1} 个签名缺少 ID", f"signature #{position + 1} has no ID"
        )
    return SignatureEntry(sig_id or str(position + 1), kind, type_raw, base_loc, path, relative, problem)


def read_signature_list(pkg: OfdPackage, path: str) -> SignatureList:
    return _signature_list(_root(pkg, path, "Signatures"), path)


def parse_signature_list(raw: bytes, path: str) -> SignatureList:
    """:func:`read_signature_list` of Signatures.xml bytes held outside a package."""
    return _signature_list(_parsed_root(raw, path, "Signatures"), path)


def _signature_list(root: ET.Element, path: str) -> SignatureList:
    entries = tuple(_entry(e, path, i) for i, e in enumerate(children(root, "Signature")))
    seen: set[str] = set()
    checked: list[SignatureEntry] = []
    for entry in entries:
        if entry.id in seen and entry.problem is None:
            entry = SignatureEntry(
                entry.id,
                entry.type,
                entry.type_raw,
                entry.base_loc,
                entry.path,
                entry.relative,
                Problem(f"签名 ID {entry.id} 重复", f"signature ID {entry.id} appears twice"),
            )
        seen.add(entry.id)
        checked.append(entry)
    return SignatureList(path, child_text(root, "MaxSignId"), tuple(checked))


# --- Signature.xml -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Provider:
    name: str | None
    version: str | None
    company: str | None


@dataclass(frozen=True)
class Reference:
    file_ref: str  # as written
    path: str | None  # resolved package path
    check_value_text: str | None
    check_value: bytes | None  # decoded digest
    problem: Problem | None = None


@dataclass(frozen=True)
class StampAnnot:
    id: str | None
    page_ref: str | None
    boundary_text: str | None
    boundary: tuple[float, float, float, float] | None
    clip_text: str | None
    clip: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class SignatureXml:
    path: str
    raw: bytes = field(repr=False)  # the file's bytes: what dataHash covers
    provider: Provider | None
    signature_method: str | None
    signature_datetime: str | None
    check_method: str | None
    references: tuple[Reference, ...]
    stamp_annots: tuple[StampAnnot, ...]
    seal_loc: str | None
    seal_path: str | None
    seal_problem: Problem | None
    signed_value_loc: str
    signed_value_path: str


def _box(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    parts = text.split()
    if len(parts) != 4:
        return None
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        return None
    return (x, y, w, h)


def _reference(element: ET.Element, base: str) -> Reference:
    file_ref = attribute(element, "FileRef") or ""
    check_text = child_text(element, "CheckValue")
    problem: Problem | None = None
    path: str | None = None
    if not file_ref.strip():
        problem = Problem("引用缺少 FileRef", "reference without FileRef")
    else:
        path, problem = _resolve(file_ref, base)
    value: bytes | None = None
    if check_text is None:
        problem = problem or Problem(
            f"引用 {file_ref} 缺少 CheckValue", f"reference {file_ref} has no CheckValue"
        )
    else:
        try:
            value = base64.b64decode("".join(check_text.split()), validate=True)
        except (binascii.Error, ValueError):
            problem = problem or Problem(
                f"引用 {file_ref} 的 CheckValue 不是有效的 Base64",
                f"reference {file_ref}: CheckValue is not Base64",
            )
    return Reference(file_ref, path, check_text, value, problem)


def parse_signature_xml(raw: bytes, path: str) -> SignatureXml:
    """Parse a Signature.xml held in ``raw`` (its package path ``path`` anchors relative locations)."""
    root = parse_xml(raw, name=path)
    if not is_named(root, "Signature"):
        raise MalformedData(
            f"{path} 的根元素应为 Signature，实际为 {root.tag}",
            f"{path}: root element should be Signature, found {root.tag}",
        )
    info = child(root, "SignedInfo")
    if info is None:
        raise MalformedData(f"{path} 缺少 SignedInfo", f"{path} has no SignedInfo")
    signed_value_loc = child_text(root, "SignedValue")
    if signed_value_loc is None:
        raise MalformedData(f"{path} 缺少 SignedValue", f"{path} has no SignedValue")
    signed_value_path = resolve_loc(signed_value_loc, path)
    provider_el = child(info, "Provider")
    provider = (
        Provider(
            attribute(provider_el, "ProviderName"),
            attribute(provider_el, "Version"),
            attribute(provider_el, "Company"),
        )
        if provider_el is not None
        else None
    )
    refs_el = child(info, "References")
    references = (
        tuple(_reference(r, path) for r in children(refs_el, "Reference")) if refs_el is not None else ()
    )
    check_method = attribute(refs_el, "CheckMethod") if refs_el is not None else None
    stamps = tuple(
        StampAnnot(
            attribute(s, "ID"),
            attribute(s, "PageRef"),
            attribute(s, "Boundary"),
            _box(attribute(s, "Boundary")),
            attribute(s, "Clip"),
            _box(attribute(s, "Clip")),
        )
        for s in children(info, "StampAnnot")
    )
    seal_el = child(info, "Seal")
    seal_loc = child_text(seal_el, "BaseLoc") if seal_el is not None else None
    seal_path: str | None = None
    seal_problem: Problem | None = None
    if seal_el is not None and seal_loc is None:
        seal_problem = Problem(f"{path} 的 Seal 缺少 BaseLoc", f"{path}: Seal has no BaseLoc")
    elif seal_loc is not None:
        seal_path, seal_problem = _resolve(seal_loc, path)
    return SignatureXml(
        path=path,
        raw=raw,
        provider=provider,
        signature_method=child_text(info, "SignatureMethod"),
        signature_datetime=child_text(info, "SignatureDateTime"),
        check_method=check_method.strip() if check_method and check_method.strip() else None,
        references=references,
        stamp_annots=stamps,
        seal_loc=seal_loc,
        seal_path=seal_path,
        seal_problem=seal_problem,
        signed_value_loc=signed_value_loc,
        signed_value_path=signed_value_path,
    )


def read_signature_xml(pkg: OfdPackage, path: str) -> SignatureXml:
    if path not in pkg:
        raise MalformedData(
            f"包内找不到签名描述文件 {path}", f"signature file {path} is missing from the package"
        )
    return parse_signature_xml(pkg.read(path), path)


__all__ = [
    "OFD_XML",
    "SEAL",
    "SIGN",
    "DocBody",
    "DocumentPages",
    "Page",
    "Problem",
    "Provider",
    "Reference",
    "SignatureEntry",
    "SignatureList",
    "SignatureXml",
    "StampAnnot",
    "StampAnnotation",
    "parse_doc_bodies",
    "parse_signature_list",
    "parse_signature_xml",
    "read_doc_bodies",
    "read_document",
    "read_signature_list",
    "read_signature_xml",
    "read_stamp_annotations",
]
