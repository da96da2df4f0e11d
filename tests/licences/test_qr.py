"""The licence QR code (fixed mask, PNG written by us) decodes to its payload with an independent
reader (ZXing), also blurred and shrunk as a phone camera sees it, at error-correction level M, and
shows exactly the modules segno encodes for that mask."""

from __future__ import annotations

import io
import random

import pytest
import segno
from PIL import Image, ImageFilter

from licence_store.rendering import qr_png
from tests.conftest import require_or_skip

BASES = (
    "http://127.0.0.1:8000",
    "https://licences.example.test",
    "https://zwfw.beijing.gov.cn/dzzz",
    "https://a.very.long.government.portal.example.gov.cn/services/electronic-licences/public",
)


def _payloads(count: int) -> list[str]:
    rng = random.Random(20240601)
    out = []
    for _ in range(count):
        check = rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY")
        ident = (
            f"{rng.randrange(10**17, 10**18)}{rng.randrange(100, 1000)}.{rng.randrange(2000, 2100)}"
            f".{rng.randrange(10**6):06d}.{rng.randrange(1, 100)}.{check}"
        )
        out.append(f"{rng.choice(BASES)}/v1/licences/check?id={ident}")
    return [*out, "电子证照 核验 https://licences.example.test/?id=x"]


def test_qr_codes_decode_to_their_payload() -> None:
    try:
        import zxingcpp
    except ImportError:  # pragma: no cover - depends on the environment
        require_or_skip(False, "zxing-cpp (pip install zxing-cpp) is needed to decode QR codes")
        raise
    versions = set()
    for payload in _payloads(150):
        png = qr_png(payload)
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.mode == "1"
        found = zxingcpp.read_barcodes(image)
        assert [(r.format, r.text, r.ec_level) for r in found] == [
            (zxingcpp.BarcodeFormat.QRCode, payload, "M")
        ]
        # Shrunk to 60 % with smoothing and blurred: still read.
        side = int(image.size[0] * 0.6)
        camera = image.convert("L").resize((side, side), Image.BILINEAR).filter(ImageFilter.GaussianBlur(0.8))
        assert [r.text for r in zxingcpp.read_barcodes(camera)] == [payload]
        versions.add(segno.make(payload, error="m").version)
    assert len(versions) >= 3  # several symbol sizes covered


@pytest.mark.parametrize("payload", _payloads(5))
def test_qr_png_shows_segno_modules_for_its_mask(payload: str) -> None:
    """Pixel for pixel what segno's own PNG writer draws for the same symbol (mask 2, 4 px, 2-module
    border): our PNG writer changes nothing but the speed."""
    reference = io.BytesIO()
    segno.make(payload, error="m", micro=False, mask=2).save(reference, kind="png", scale=4, border=2)
    ours = Image.open(io.BytesIO(qr_png(payload))).convert("L")
    theirs = Image.open(reference).convert("L")
    assert ours.size == theirs.size and ours.tobytes() == theirs.tobytes()
    assert qr_png(payload) == qr_png(payload)  # deterministic
