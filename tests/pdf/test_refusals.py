"""What sealing refuses: unusable seals and unusable documents. Nothing is returned, nothing audited."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from core.errors import EsealError, InvalidInput, MalformedData, NotUsable, PermissionDenied
from seal_registry.lifecycle import SealState
from seal_registry.models import Seal
from signer.pdf_sealing import DocumentLocked, EncryptedPdf
from tests.registry.conftest import Registry

from .conftest import make_pdf, seal_document


def _refused(region: Registry, error: type[EsealError], run: Callable[[], bytes]) -> EsealError:
    before = region.audit_count()
    with pytest.raises(error) as caught:
        run()
    assert region.audit_count() == before, "a refused sealing must leave no audit entry"
    return caught.value


@pytest.mark.parametrize("state", [SealState.SUSPENDED, SealState.CANCELLED])
@pytest.mark.parametrize("kind", ["ecdsa", "sm2"])
def test_suspended_or_cancelled_seal_is_refused(
    region: Registry, blank_pdf: bytes, state: SealState, kind: str
) -> None:
    unusable = region.seal_in(state)
    err = _refused(region, NotUsable, lambda: seal_document(region, unusable, blank_pdf, key_kind=kind))
    assert err.details["state"] == state.value


def test_another_departments_seal_is_refused(region: Registry, seal: Seal, blank_pdf: bytes) -> None:
    other, _cert = region.new_department(71)

    def run() -> bytes:
        from core.db import transaction
        from signer.pdf_sealing import seal_pdf

        with transaction(region.sessions) as s:
            return seal_pdf(
                s,
                region.keystore,
                blank_pdf,
                es_id=seal.es_id,
                department_id=other.id,
                x_mm=10,
                y_mm=10,
                actor="x",
            )

    _refused(region, PermissionDenied, run)


def test_department_without_pades_certificate_cannot_seal_with_ecdsa(
    region: Registry, blank_pdf: bytes
) -> None:
    dept, _cert = region.new_department(72)
    own = region.seal_in(SealState.ISSUED, department_id=dept.id)

    def run() -> bytes:
        from core.db import transaction
        from signer.pdf_sealing import seal_pdf

        with transaction(region.sessions) as s:
            return seal_pdf(
                s,
                region.keystore,
                blank_pdf,
                es_id=own.es_id,
                department_id=dept.id,
                x_mm=10,
                y_mm=10,
                actor="x",
            )

    err = _refused(region, NotUsable, run)
    assert "PAdES" in err.message_en


def _encrypted_pdf() -> bytes:
    writer = PdfFileWriter()
    content = writer.add_object(generic.StreamObject(stream_data=b"0 0 0 rg 72 72 144 36 re f"))
    box = generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)])
    writer.insert_page(PageObject(contents=content, media_box=box))
    writer.encrypt("owner secret", "")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _broken_xref(pdf: bytes) -> bytes:
    """The same file with its startxref pointing into the middle of an object."""
    return re.sub(rb"startxref\s+\d+", b"startxref\n17", pdf)


@pytest.mark.parametrize(
    ("name", "make", "error"),
    [
        ("encrypted", _encrypted_pdf, EncryptedPdf),
        ("broken xref", lambda: _broken_xref(make_pdf()), MalformedData),
        ("truncated", lambda: make_pdf()[: len(make_pdf()) // 2], MalformedData),
        ("not a pdf", lambda: b"hello, world" * 10, MalformedData),
        ("header only", lambda: b"%PDF-1.7\n%%EOF\n", MalformedData),
    ],
)
def test_unusable_documents_are_typed_errors(
    region: Registry, seal: Seal, name: str, make: Callable[[], bytes], error: type[EsealError]
) -> None:
    data = make()
    err = _refused(region, error, lambda: seal_document(region, seal, data))
    assert isinstance(err, InvalidInput)  # every one of them is the caller's input, HTTP 4xx


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"page": 3}, "pages"),
        ({"page": 0}, "page"),
        ({"x_mm": 190, "y_mm": 10}, "does not fit"),
        ({"x_mm": 10, "y_mm": 280}, "does not fit"),
        ({"x_mm": -1}, "non-negative"),
        ({"key_kind": "dsa"}, "key kind"),
        ({"pades_level": "B-LTA"}, "PAdES level"),
    ],
)
def test_bad_placement_and_options(
    region: Registry, seal: Seal, blank_pdf: bytes, options: dict[str, object], fragment: str
) -> None:
    err = _refused(region, InvalidInput, lambda: seal_document(region, seal, blank_pdf, **options))
    assert fragment in err.message_en


def test_rotated_page_is_refused(region: Registry, seal: Seal) -> None:
    rotated = make_pdf(rotate=90)
    err = _refused(region, InvalidInput, lambda: seal_document(region, seal, rotated))
    assert "rotated" in err.message_en


def test_no_changes_certification_locks_the_document(region: Registry, seal: Seal, blank_pdf: bytes) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields

    # Certify with "no changes allowed" by hand (seal_pdf certifies with form filling allowed).
    writer = IncrementalPdfFileWriter(io.BytesIO(blank_pdf))
    fields.append_signature_field(writer, fields.SigFieldSpec("Locked", box=(0, 0, 0, 0)))
    writer.root["/Perms"] = generic.DictionaryObject(
        {
            generic.NameObject("/DocMDP"): writer.add_object(
                generic.DictionaryObject(
                    {
                        generic.NameObject("/Reference"): generic.ArrayObject(
                            [
                                generic.DictionaryObject(
                                    {
                                        generic.NameObject("/TransformMethod"): generic.NameObject("/DocMDP"),
                                        generic.NameObject("/TransformParams"): generic.DictionaryObject(
                                            {generic.NameObject("/P"): generic.NumberObject(1)}
                                        ),
                                    }
                                )
                            ]
                        )
                    }
                )
            )
        }
    )
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    _refused(region, DocumentLocked, lambda: seal_document(region, seal, out.getvalue()))
