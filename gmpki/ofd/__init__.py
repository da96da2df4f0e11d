"""OFD packages (GB/T 33190): a hardened read-only container, XML parts, and the signature parts.

The verifier and the signer both go through :class:`OfdPackage`; nothing else in the project opens
an OFD ZIP directly.
"""

from __future__ import annotations

from .container import (
    ContainerLimits,
    OfdPackage,
    PackageDraft,
    StoredEntry,
    check_entry_name,
    is_zip,
    resolve_loc,
    write_package,
)
from .signatures import (
    SEAL,
    SIGN,
    DocBody,
    DocumentPages,
    Page,
    Problem,
    Provider,
    Reference,
    SignatureEntry,
    SignatureList,
    SignatureXml,
    StampAnnot,
    StampAnnotation,
    parse_doc_bodies,
    parse_signature_list,
    parse_signature_xml,
    read_doc_bodies,
    read_document,
    read_signature_list,
    read_signature_xml,
    read_stamp_annotations,
)

__all__ = [
    "SEAL",
    "SIGN",
    "ContainerLimits",
    "DocBody",
    "DocumentPages",
    "OfdPackage",
    "PackageDraft",
    "Page",
    "Problem",
    "Provider",
    "Reference",
    "SignatureEntry",
    "SignatureList",
    "SignatureXml",
    "StampAnnot",
    "StampAnnotation",
    "StoredEntry",
    "check_entry_name",
    "is_zip",
    "parse_doc_bodies",
    "parse_signature_list",
    "parse_signature_xml",
    "read_doc_bodies",
    "read_document",
    "read_signature_list",
    "read_signature_xml",
    "read_stamp_annotations",
    "resolve_loc",
    "write_package",
]
