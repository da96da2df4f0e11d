"""Sealing PDF documents: a visible seal and a PAdES signature (B-B or B-T), added as an incremental
update so that earlier signatures stay valid.

Three kinds of key:

* ``ecdsa`` / ``rsa`` — the department's PAdES certificate from the region's interop hierarchy
  (:func:`seal_registry.pki.issue_pades_certificate`), an ECDSA P-256 or RSA key in the key store.
  pyHanko builds the CMS; PDF readers (Adobe, poppler) verify it, trusting the interop root.
* ``sm2`` — the seal's own signer certificate and SM2 key (the one its SES signatures use). The
  CMS is GB/T 35275 SignedData built by :mod:`gmpki.cms` over the SM3 ``/ByteRange`` digest;
  readers cannot verify SM2, eseal's verifier (``verify.pdf``) does.

The appearance is the seal's picture (SES_ESPictrueInfo; an ``ofd``/``svg`` picture, or one that
cannot be decoded, is replaced by a drawn round seal) at the seal's size in millimetres, with the
department's name and the signing time (UTC+8) beneath it in an embedded, subset CJK font.

Placement: ``page`` counts from 1; ``x_mm``/``y_mm`` is the top-left corner of the seal picture,
measured from the top-left corner of the page's crop box (as in OFD). Rotated pages are refused.

:func:`seal_pdf` reads and checks the document before touching the registry, then authorises the
seal (:func:`seal_registry.seals.authorize_use`), signs and writes the ``signature.made`` audit
entry inside the caller's transaction; the output is re-read and its new signature verified before
it is returned. Nothing is returned, and nothing audited, unless all of it succeeded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import enum
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, TypeVar

from PIL import Image
from pyhanko.pdf_utils import generic, layout, text
from pyhanko.pdf_utils.font.api import FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, read_certification_data
from pyhanko.stamp import TextStampStyle
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, EsealError, InputTooLarge, InvalidInput, MalformedData, NotFound
from gmpki import seal as ses
from gmpki import sm2
from gmpki.cms import CmsFlavour, signed_attributes_message
from gmpki.sm3 import sm3, sm3_hex
from gmpki.x509 import sm2_public_key_from_spki
from gmpki.x509_interop import verify_with_spki
from hsm_adapters.keystore import KeyAlgorithm, KeyStore
from seal_registry import fonts
from seal_registry.models import Department
from seal_registry.picture import render_round_seal
from seal_registry.pki import CertRole, current_certificate, pades_certificate_for
from seal_registry.seals import SealGrant, authorize_use

from .pdf_signers import (
    KeyStorePdfSigner,
    PdfSigningError,
    Sm2PdfSigner,
    SourceTimeStamper,
    TimestampSource,
)
from .tsa import TimeStampAuthority

MAX_PDF_SIZE: Final = 64 * 1024 * 1024
MM: Final = 72 / 25.4  # PDF points per millimetre
UTC8: Final = dt.timezone(dt.timedelta(hours=8))
TEXT_COLOUR: Final = (0.0, 0.0, 0.0)
_RASTER_TYPES: Final = frozenset({"png", "jpg", "jpeg", "bmp", "gif"})
_MAX_PICTURE_PIXELS: Final = 4000 * 4000
_DEFAULT_SEAL_MM: Final = 40.0
_MAX_FIELD_NAME: Final = 120
T = TypeVar("T")


class KeyKind(enum.StrEnum):
    ECDSA = "ecdsa"
    RSA = "rsa"
    SM2 = "sm2"


class PadesLevel(enum.StrEnum):
    B_B = "B-B"
    B_T = "B-T"


class EncryptedPdf(InvalidInput):
    """An encrypted PDF: it would have to be decrypted, and re-encrypted, to be sealed."""

    code = "pdf_encrypted"
    title_zh, title_en = "PDF 已加密", "Encrypted PDF"


class DocumentLocked(Conflict):
    """A certification signature of the document forbids any further change, seals included."""

    code = "pdf_document_locked"
    title_zh, title_en = "文档已锁定", "Document locked"


def parse_key_kind(value: KeyKind | str) -> KeyKind:
    try:
        return KeyKind(str(value).strip().lower())
    except ValueError:
        raise InvalidInput(
            f"未知的密钥类型 {value!r}（可选 ecdsa、rsa、sm2）",
            f"unknown key kind {value!r} (ecdsa, rsa or sm2)",
        ) from None


def parse_pades_level(value: PadesLevel | str) -> PadesLevel:
    try:
        return PadesLevel(str(value).strip().upper())
    except ValueError:
        raise InvalidInput(
            f"未知的 PAdES 级别 {value!r}（可选 B-B、B-T）", f"unknown PAdES level {value!r} (B-B or B-T)"
        ) from None


# --- running pyHanko ----------------------------------------------------------------------------------
def _run_blocking(work: Callable[[], T]) -> T:
    """Run ``work`` (which may call ``asyncio.run``) even when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def _pdf_error(exc: BaseException, doing_zh: str, doing_en: str) -> EsealError:
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return MalformedData(f"{doing_zh}：PDF 结构错误（{detail}）", f"{doing_en}: malformed PDF ({detail})")


def _guarded(work: Callable[[], T], doing_zh: str, doing_en: str) -> T:
    """Run pyHanko code on an untrusted document; anything but an eseal error is a malformed PDF.

    pyHanko reads lazily and reports hostile structure with whatever the failing line raises
    (PdfReadError, KeyError, AssertionError, TypeError...), so the net is deliberately wide.
    """
    try:
        return work()
    except EsealError:
        raise
    except RecursionError as exc:
        raise _pdf_error(exc, doing_zh, doing_en) from exc
    except Exception as exc:
        raise _pdf_error(exc, doing_zh, doing_en) from exc


# --- reading the document -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageBox:
    """The visible area of one page in PDF user space (points), and the page's index."""

    index: int
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width_mm(self) -> float:
        return (self.x1 - self.x0) / MM

    @property
    def height_mm(self) -> float:
        return (self.y1 - self.y0) / MM


@dataclass(frozen=True)
class PreparedPdf:
    """A document read and checked for sealing: nothing about the seal is known yet."""

    data: bytes
    page: PageBox
    existing_fields: frozenset[str]
    signature_count: int


def _inherited(page: generic.DictionaryObject, key: str) -> Any:
    node: Any = page
    for _ in range(64):  # page trees are shallow; a deeper chain is a loop
        if key in node:
            return node[key]
        if "/Parent" not in node:
            return None
        node = node["/Parent"]
    return None


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, generic.ArrayObject) or len(value) != 4:
        return None
    x0, y0, x1, y1 = (float(v) for v in value)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _open(data: bytes) -> PdfFileReader:
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    if reader.encrypted:
        raise EncryptedPdf("PDF 文件已加密，不能签章", "the PDF is encrypted and cannot be sealed")
    return reader


def prepare_pdf(pdf_bytes: bytes, *, page: int = 1) -> PreparedPdf:
    """Read and check a PDF before sealing: size, encryption, structure, the page to stamp, and any
    certification that forbids changes. Raises InputTooLarge, EncryptedPdf, MalformedData,
    InvalidInput (no such page, rotated page) or DocumentLocked."""
    data = bytes(pdf_bytes)
    if len(data) > MAX_PDF_SIZE:
        raise InputTooLarge(
            f"PDF 过大（{len(data)} 字节，上限 {MAX_PDF_SIZE}）",
            f"PDF too large ({len(data)} bytes, limit {MAX_PDF_SIZE})",
        )
    if b"%PDF-" not in data[:1024]:
        raise MalformedData("不是 PDF 文件（缺少 %PDF- 文件头）", "not a PDF file (no %PDF- header)")
    if not isinstance(page, int) or page < 1:
        raise InvalidInput("页码须为从 1 开始的整数", "page must be a whole number counted from 1")

    def read() -> PreparedPdf:
        reader = _open(data)
        count = int(reader.root["/Pages"]["/Count"])
        if page > count:
            raise InvalidInput(
                f"文档只有 {count} 页，没有第 {page} 页", f"the document has {count} pages, not {page}"
            )
        page_ref, _resources = reader.find_page_for_modification(page - 1)  # type: ignore[no-untyped-call]
        page_obj = page_ref.get_object()
        rotate = int(_inherited(page_obj, "/Rotate") or 0) % 360
        if rotate:
            raise InvalidInput(
                f"第 {page} 页旋转了 {rotate} 度，暂不支持在旋转页上签章",
                f"page {page} is rotated by {rotate} degrees; sealing rotated pages is not supported",
            )
        box = _box(_inherited(page_obj, "/CropBox")) or _box(_inherited(page_obj, "/MediaBox"))
        if box is None or box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise MalformedData(f"第 {page} 页没有有效的页面尺寸", f"page {page} has no valid page box")
        names: set[str] = set()
        filled = 0
        for name, value, _field in fields.enumerate_sig_fields(reader):
            names.add(str(name))
            filled += value is not None
        certification = read_certification_data(reader)
        if certification is not None and certification.permission == fields.MDPPerm.NO_CHANGES:
            raise DocumentLocked(
                "文档的认证签名禁止任何修改，不能再加盖印章",
                "the document's certification signature forbids any change, so no seal can be added",
            )
        return PreparedPdf(data, PageBox(page - 1, *box), frozenset(names), filled)

    return _guarded(read, "读取 PDF 失败", "cannot read the PDF")


# --- the appearance ---------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _face_bytes(path: str) -> bytes:
    """One face of a font file as a standalone TrueType/OpenType font (pyHanko reads no collections).

    Bitmap and vendor tables are dropped: the subsetter cannot keep them anyway.
    """
    from fontTools.ttLib import TTCollection, TTFont  # type: ignore[import-untyped]

    if path.lower().endswith((".ttc", ".otc")):
        font = TTCollection(path, lazy=True).fonts[0]
    else:
        font = TTFont(path, lazy=True)
    for tag in ("BDF ", "FFTM", "EBDT", "EBLC", "EBSC"):
        if tag in font:
            del font[tag]
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


# Characters the signing-time line can hold (see signing_time_text), always kept in a subset.
_TIME_CHARS = "0123456789-: ()UTC+"


@lru_cache(maxsize=64)
def _caption_face(path: str, chars: str) -> bytes:
    """The font cut down to ``chars`` (plus .notdef), cached per caption alphabet.

    pyHanko subsets the font it is given at every signature; handed the whole 11 MiB CJK face that
    costs ~0.35 s per seal, handed this few-KiB face it is negligible. One department's captions
    always use the same alphabet (its name and the time digits), so the cache hits from the second
    seal on.
    """
    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(_face_bytes(path)), lazy=True)
    options = subset.Options()
    options.layout_features = ["*"]  # HarfBuzz shapes with whatever GSUB/GPOS the face has
    options.name_IDs = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options=options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


class _CjkFont(FontEngineFactory):
    """Embeds a subset of a CJK font for the stamp text (pyHanko's OpenType support via HarfBuzz)."""

    def __init__(self, path: str, size: int, text: str) -> None:
        self.path = path
        self.size = size
        self.chars = "".join(sorted(set(text + _TIME_CHARS)))

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> GlyphAccumulator:
        return GlyphAccumulator(
            writer=writer,
            font_handle=io.BytesIO(_caption_face(self.path, self.chars)),
            font_size=self.size,
            obj_stream=obj_stream,
        )


@dataclass(frozen=True)
class SealPicture:
    image: Image.Image
    width_mm: float
    height_mm: float
    source: str  # "seal" (the seal's own picture) or "drawn"


def _side(value: float | int) -> float | None:
    side = float(value)
    return side if 5.0 <= side <= 200.0 else None


def seal_picture(seal_der: bytes, department_name: str) -> SealPicture:
    """The seal's picture (SES_ESPictrueInfo) as an RGBA image with its size in millimetres; a drawn
    round seal when the picture is ``ofd``/``svg`` or cannot be decoded."""
    parsed = ses.parse_seal(seal_der)
    width = _side(parsed.picture_width)
    height = _side(parsed.picture_height)
    if parsed.picture_type.strip().lower() in _RASTER_TYPES and width and height:
        try:
            img = Image.open(io.BytesIO(parsed.picture_data))
            if img.width * img.height > _MAX_PICTURE_PIXELS:
                raise ValueError("picture too large")
            img.load()
            return SealPicture(img.convert("RGBA"), width, height, "seal")
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # an undecodable picture still gets a stamp: the drawn one below
    diameter = round(min(width or _DEFAULT_SEAL_MM, height or _DEFAULT_SEAL_MM))
    drawn = render_round_seal(department_name, diameter_mm=max(20, min(diameter, 60)))
    img = Image.open(io.BytesIO(drawn.png))
    img.load()
    return SealPicture(img.convert("RGBA"), float(drawn.width_mm), float(drawn.height_mm), "drawn")


@dataclass(frozen=True)
class Stamp:
    style: TextStampStyle
    box: tuple[int, int, int, int]  # PDF user space, whole points
    text_params: dict[str, str]


def signing_time_text(when: dt.datetime) -> str:
    return when.astimezone(UTC8).strftime("%Y-%m-%d %H:%M:%S") + " (UTC+8)"


def build_stamp(
    picture: SealPicture, page: PageBox, *, x_mm: float, y_mm: float, department_name: str, when: dt.datetime
) -> Stamp:
    """The stamp: the seal picture at ``x_mm``/``y_mm`` (top-left, from the page's top-left) and two
    lines of text beneath it; InvalidInput when it does not fit on the page."""
    for value, name in ((x_mm, "x_mm"), (y_mm, "y_mm")):
        if not isinstance(value, int | float) or value != value or value < 0:
            raise InvalidInput(f"{name} 须为非负数", f"{name} must be a non-negative number")
    font_path = os.fspath(fonts.find_cjk_font())
    fonts.require_glyphs(font_path, department_name, "部门名称", "department name")
    time_text = signing_time_text(when)
    # pyHanko's layout takes aspect ratios as fractions of integers: whole points throughout
    # (a point is 0.35 mm).
    width_pt = round(picture.width_mm * MM)
    height_pt = round(picture.height_mm * MM)
    # CJK glyphs are one em wide, digits about half: size the text so both lines fit the seal's width.
    ems = max(len(department_name), len(time_text) * 0.55, 1.0)
    font_size = max(3, min(7, int(width_pt * 0.98 / ems)))
    leading = font_size + max(1, font_size // 4)
    text_height = 2 * leading + 4
    x0 = round(page.x0 + x_mm * MM)
    top = round(page.y1 - y_mm * MM)
    box = (x0, top - height_pt - text_height, x0 + width_pt, top)
    if box[2] > page.x1 + 0.01 or box[1] < page.y0 - 0.01:
        raise InvalidInput(
            f"印章（{picture.width_mm:g}×{picture.height_mm:g} 毫米及签章文字）超出页面"
            f"（{page.width_mm:.1f}×{page.height_mm:.1f} 毫米）",
            f"the seal ({picture.width_mm:g}×{picture.height_mm:g} mm plus its caption) does not fit on the "
            f"page ({page.width_mm:.1f}×{page.height_mm:.1f} mm)",
        )
    image = PdfImage(picture.image, box=layout.BoxConstraints(width_pt, height_pt))
    style = TextStampStyle(
        stamp_text="%(department)s\n%(signing_time)s",
        text_box_style=text.TextBoxStyle(
            font=_CjkFont(font_path, font_size, department_name),
            font_size=font_size,
            leading=leading,
            border_width=0,
            # pyHanko pads text boxes by 10 pt unless told otherwise; the caption needs every point.
            box_layout_rule=layout.SimpleBoxLayoutRule(
                x_align=layout.AxisAlignment.ALIGN_MID,
                y_align=layout.AxisAlignment.ALIGN_MIN,
                margins=layout.Margins(),
            ),
        ),
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MIN,
            margins=layout.Margins(bottom=1),
        ),
        background=image,
        background_opacity=1.0,
        background_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MAX,
            margins=layout.Margins(bottom=text_height),
            inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT,
        ),
        border_width=0,
    )
    return Stamp(style, box, {"department": department_name, "signing_time": time_text})


# --- signing ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealedPdf:
    """What :func:`seal_pdf_detailed` produced: the document and the facts it audited."""

    data: bytes
    field_name: str
    key_kind: KeyKind
    pades_level: PadesLevel
    certified: bool
    signing_time: dt.datetime
    signer_certificate_sm3: str


def _field_name(es_id: str, prepared: PreparedPdf) -> str:
    base = "".join(ch if ch.isalnum() else "_" for ch in es_id)[:60] or "seal"
    for n in range(1, 10_000):
        name = f"eseal_{base}_{n}"
        if name not in prepared.existing_fields:
            return name[:_MAX_FIELD_NAME]
    raise Conflict("签名域名称已用尽", "no free signature field name")  # pragma: no cover


def _bytes_reserved(certificates: tuple[bytes, ...], time_stamped: bool) -> int:
    # /Contents holds hex, two characters per byte; the SM2 CMS is the certificates plus about 1 KiB
    # of attributes and signature, and a token is its TSA certificate plus about 1.5 KiB.
    size = sum(len(c) for c in certificates) + 2048 + (16 * 1024 if time_stamped else 0)
    return 2 * size


def _sign(
    prepared: PreparedPdf,
    signer: signers.Signer,
    stamp: Stamp,
    *,
    field_name: str,
    md_algorithm: str,
    certify: bool,
    reason: str,
    name: str,
    timestamper: SourceTimeStamper | None,
    bytes_reserved: int | None,
) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=md_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify,
        docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        reason=reason,
        name=name,
    )
    pdf_signer = signers.PdfSigner(
        meta,
        signer,
        timestamper=timestamper,
        stamp_style=stamp.style,
        new_field_spec=fields.SigFieldSpec(field_name, on_page=prepared.page.index, box=stamp.box),
    )

    def work() -> bytes:
        writer = IncrementalPdfFileWriter(io.BytesIO(prepared.data), strict=False)
        out = pdf_signer.sign_pdf(
            writer, bytes_reserved=bytes_reserved, appearance_text_params=stamp.text_params
        )
        return bytes(out.getvalue())

    try:
        return _guarded(lambda: _run_blocking(work), "PDF 签章失败", "sealing the PDF failed")
    except MalformedData as exc:
        cause = exc.__cause__
        if cause is not None and type(cause).__name__ == "SigningError":
            if "forbids all changes" in str(cause) or "DocMDP" in str(cause):
                raise DocumentLocked(
                    "文档的认证签名不允许再加盖印章",
                    "the document's certification does not allow another seal",
                ) from cause
            raise PdfSigningError(
                f"PDF 签章失败：{exc.message_zh}", f"PDF signing failed: {exc.message_en}"
            ) from cause
        raise


def _self_check(output: bytes, prepared: PreparedPdf, field_name: str) -> None:
    """Re-read the output: the original bytes are its prefix, the new signature covers the whole
    file, its messageDigest matches and its signature verifies with the signer certificate.

    Read with asn1crypto directly rather than :func:`gmpki.cms.parse_signed_data`: once pyHanko
    is imported, asn1crypto's ``.native`` over a whole pyHanko-made CMS takes seconds.
    """
    if not output.startswith(prepared.data):
        raise PdfSigningError("签章结果不是原文件的增量更新", "the sealed PDF is not an incremental update")

    def check() -> None:
        reader = PdfFileReader(io.BytesIO(output), strict=False)
        for name, _value, sig_field in fields.enumerate_sig_fields(reader, filled_status=True):
            if name != field_name:
                continue
            emb = EmbeddedPdfSignature(reader, sig_field, name)
            start1, len1, start2, len2 = (int(v) for v in emb.byte_range)
            if start1 != 0 or start2 + len2 != len(output):
                break
            si = emb.signer_info
            digest_name = si["digest_algorithm"]["algorithm"].native
            content = output[start1 : start1 + len1] + output[start2 : start2 + len2]
            computed = sm3(content) if digest_name == "sm3" else hashlib.new(digest_name, content).digest()
            signed_digest = next(
                (
                    bytes(a["values"][0].native)
                    for a in si["signed_attrs"]
                    if a["type"].native == "message_digest"
                ),
                None,
            )
            message = signed_attributes_message(si["signed_attrs"])
            signature = bytes(si["signature"].native)
            spki = emb.signer_cert.public_key
            if digest_name == "sm3":
                valid = sm2.verify(
                    sm2_public_key_from_spki(spki), message, sm2.normalize_signature(signature)
                )
            else:
                valid = verify_with_spki(spki.dump(), message, signature)
            if signed_digest == computed and valid:
                return
            break
        raise PdfSigningError("新签名自检失败", "the new signature failed its self-check")

    _guarded(check, "签章结果自检失败", "self-check of the sealed PDF failed")


def pades_timestamp_authority(session: Session, keystore: KeyStore) -> TimeStampAuthority:
    """The region's PAdES interop TSA (ECDSA P-256), whose tokens PDF validators can check."""
    row = current_certificate(session, CertRole.PADES_TSA)
    if row.key_id is None:
        raise NotFound("PAdES 时间戳证书没有本地密钥", "the PAdES TSA certificate has no local key")
    root = current_certificate(session, CertRole.PADES_ROOT)
    return TimeStampAuthority(keystore, row.der, row.key_id, chain=[root.der])


def timestamp_authority_for(session: Session, keystore: KeyStore, kind: KeyKind | str) -> TimeStampAuthority:
    """The built-in TSA that suits ``kind``: the PAdES interop TSA (ECDSA, readable by PDF
    validators) for ecdsa/rsa, the region's SM2 TSA for sm2."""
    if parse_key_kind(kind) is KeyKind.SM2:
        return TimeStampAuthority.from_region(session, keystore)
    return pades_timestamp_authority(session, keystore)


def seal_pdf_detailed(
    session: Session,
    keystore: KeyStore,
    pdf_bytes: bytes,
    *,
    es_id: str,
    department_id: str,
    page: int = 1,
    x_mm: float,
    y_mm: float,
    key_kind: KeyKind | str = KeyKind.ECDSA,
    certify: bool = False,
    pades_level: PadesLevel | str = PadesLevel.B_B,
    tsa: TimestampSource | None = None,
    actor: str,
    sm2_flavour: CmsFlavour = CmsFlavour.GBT35275,
) -> SealedPdf:
    """:func:`seal_pdf`, returning the audited facts with the document."""
    kind = parse_key_kind(key_kind)
    level = parse_pades_level(pades_level)
    if level is PadesLevel.B_T and tsa is None:
        raise InvalidInput("PAdES B-T 级别需要时间戳服务", "PAdES B-T needs a time-stamping authority")
    if not actor or len(actor) > 200:
        raise InvalidInput("操作者名称须为 1–200 个字符", "Actor must be 1–200 characters")
    prepared = prepare_pdf(pdf_bytes, page=page)  # before the seal row is locked
    if certify and prepared.signature_count:
        raise InvalidInput(
            "已签名的文档不能再做认证签名（认证签名须为第一个签名）",
            "a signed document cannot be certified (the certification signature must come first)",
        )
    now = utcnow().replace(microsecond=0)
    grant = authorize_use(session, es_id=es_id, department_id=department_id, at=now)
    dept = session.get(Department, grant.department_id)
    if dept is None:  # pragma: no cover - foreign key
        raise NotFound("部门不存在", "department not found")
    picture = seal_picture(grant.seal_der, dept.name)
    stamp = build_stamp(picture, prepared.page, x_mm=x_mm, y_mm=y_mm, department_name=dept.name, when=now)
    field_name = _field_name(grant.es_id, prepared)
    time_stamped = level is PadesLevel.B_T
    signer, md_algorithm, cert_der, reserved = _signer_for(
        session, keystore, grant, kind, now, tsa if time_stamped else None, sm2_flavour
    )
    output = _sign(
        prepared,
        signer,
        stamp,
        field_name=field_name,
        md_algorithm=md_algorithm,
        certify=certify,
        reason=f"电子印章 {grant.es_id}",
        name=dept.name,
        timestamper=SourceTimeStamper(tsa)
        if time_stamped and tsa is not None and kind is not KeyKind.SM2
        else None,
        bytes_reserved=reserved,
    )
    _self_check(output, prepared, field_name)
    cert_sm3 = sm3_hex(cert_der)
    audit_append(
        session,
        actor=actor,
        action="signature.made",
        subject_type="seal",
        subject_id=grant.seal_id,
        details={
            "es_id": grant.es_id,
            "department_id": grant.department_id,
            "format": "pdf",
            "document_sm3": sm3_hex(prepared.data),
            "sealed_sm3": sm3_hex(output),
            "field": field_name,
            "page": page,
            "key_kind": kind.value,
            "pades_level": level.value,
            "certified": certify,
            "signer_certificate_sm3": cert_sm3,
            "signing_time": now.isoformat(),
            "time_stamped": time_stamped,
            "picture": picture.source,
        },
    )
    return SealedPdf(output, field_name, kind, level, certify, now, cert_sm3)


def _signer_for(
    session: Session,
    keystore: KeyStore,
    grant: SealGrant,
    kind: KeyKind,
    now: dt.datetime,
    tsa: TimestampSource | None,
    flavour: CmsFlavour,
) -> tuple[signers.Signer, str, bytes, int | None]:
    """(pyHanko signer, digest algorithm, signer certificate DER, bytes to reserve or None)."""
    if kind is KeyKind.SM2:
        sm2_signer = Sm2PdfSigner(
            keystore,
            grant.signer_key_id,
            grant.signer_certificate_der,
            flavour=flavour,
            timestamp=tsa,
            signing_time=now,
        )
        reserved = _bytes_reserved((grant.signer_certificate_der,), tsa is not None)
        return sm2_signer, "sm3", grant.signer_certificate_der, reserved
    algorithm = KeyAlgorithm.EC_P256 if kind is KeyKind.ECDSA else KeyAlgorithm.RSA_3072
    row = pades_certificate_for(session, grant.department_id, algorithm, now)
    assert row.key_id is not None  # pades_certificate_for only returns rows with a key
    root = current_certificate(session, CertRole.PADES_ROOT)
    return KeyStorePdfSigner(keystore, row.key_id, row.der, [root.der]), "sha256", row.der, None


def seal_pdf(
    session: Session,
    keystore: KeyStore,
    pdf_bytes: bytes,
    *,
    es_id: str,
    department_id: str,
    page: int = 1,
    x_mm: float,
    y_mm: float,
    key_kind: KeyKind | str = KeyKind.ECDSA,
    certify: bool = False,
    pades_level: PadesLevel | str = PadesLevel.B_B,
    tsa: TimestampSource | None = None,
    actor: str,
) -> bytes:
    """Seal ``pdf_bytes`` with seal ``es_id`` of ``department_id``; the sealed PDF.

    ``key_kind``: ``ecdsa`` or ``rsa`` (the department's PAdES certificate, readable by PDF readers)
    or ``sm2`` (the seal's own certificate, GB/T 35275 CMS). ``certify=True`` makes a certification
    (DocMDP, form filling and further signatures allowed) signature, which must be the document's
    first; otherwise an approval signature. ``pades_level="B-T"`` adds a signature time-stamp from
    ``tsa`` (for ecdsa/rsa prefer :func:`pades_timestamp_authority`, whose tokens readers can
    check; for sm2 the region's SM2 TSA, :meth:`TimeStampAuthority.from_region`).

    Runs inside the caller's transaction: authorisation, signing and the ``signature.made`` audit
    entry commit together. Raises NotUsable/PermissionDenied/NotFound from the registry,
    InputTooLarge, EncryptedPdf, MalformedData (broken PDF), InvalidInput (page, position, options),
    DocumentLocked (certified against changes), PdfSigningError.
    """
    return seal_pdf_detailed(
        session,
        keystore,
        pdf_bytes,
        es_id=es_id,
        department_id=department_id,
        page=page,
        x_mm=x_mm,
        y_mm=y_mm,
        key_kind=key_kind,
        certify=certify,
        pades_level=pades_level,
        tsa=tsa,
        actor=actor,
    ).data


__all__ = [
    "DocumentLocked",
    "EncryptedPdf",
    "KeyKind",
    "PadesLevel",
    "PageBox",
    "PreparedPdf",
    "SealPicture",
    "SealedPdf",
    "build_stamp",
    "pades_timestamp_authority",
    "parse_key_kind",
    "parse_pades_level",
    "prepare_pdf",
    "seal_pdf",
    "seal_pdf_detailed",
    "seal_picture",
    "signing_time_text",
    "timestamp_authority_for",
]
