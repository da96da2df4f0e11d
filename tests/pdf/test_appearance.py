"""The stamp's picture: the seal's own raster picture, or a drawn round seal when it has none usable."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image

from core.errors import InvalidInput
from gmpki import seal as ses
from seal_registry.pki import CertRole, current_certificate, signer_for
from signer.pdf_sealing import PageBox, SealPicture, build_stamp, seal_picture, signing_time_text
from tests.registry.conftest import PICTURE, Registry


def _seal(region: Registry, picture_type: str, data: bytes, size_mm: int = 42) -> bytes:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with region.sessions() as s:
        maker = current_certificate(s, CertRole.SEAL_MAKER)
        info = ses.build_seal_info(
            es_id="110000990000001",
            name="图片测试章",
            seal_type=2,
            certs=[region.certificate.der],
            create_date=now,
            valid_start=now,
            valid_end=now + dt.timedelta(days=30),
            picture_type=picture_type,
            picture_data=data,
            picture_width=size_mm,
            picture_height=size_mm,
            vid="eseal",
        )
        return ses.make_seal(info, maker.der, signer_for(region.keystore, maker))


def _red_share(img: Image.Image) -> float:
    raw = img.convert("RGBA").tobytes()
    pixels = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    red = sum(1 for r, g, b, a in pixels if a > 128 and r > 180 and g < 90 and b < 90)
    return red / len(pixels)


def test_raster_picture_is_used_as_is(region: Registry) -> None:
    picture = seal_picture(_seal(region, "PNG", PICTURE, 38), "测试单位")
    assert picture.source == "seal" and (picture.width_mm, picture.height_mm) == (38.0, 38.0)
    assert picture.image.size == Image.open(io.BytesIO(PICTURE)).size


@pytest.mark.parametrize(
    ("kind", "data"), [("OFD", b"PK\x03\x04not really an ofd"), ("PNG", b"\x89PNG broken")]
)
def test_ofd_or_broken_picture_falls_back_to_a_drawn_seal(region: Registry, kind: str, data: bytes) -> None:
    picture = seal_picture(_seal(region, kind, data, 42), "测试市市场监督管理局")
    assert picture.source == "drawn" and picture.width_mm == 42.0
    assert _red_share(picture.image) > 0.02  # a red ring, star and characters


def test_stamp_geometry_and_caption() -> None:
    page = PageBox(0, 0.0, 0.0, 595.0, 842.0)
    img = Image.new("RGBA", (100, 100), (230, 0, 18, 255))
    stamp = build_stamp(
        SealPicture(img, 40.0, 40.0, "seal"),
        page,
        x_mm=10,
        y_mm=20,
        department_name="测试部门",
        when=dt.datetime(2025, 1, 1, 4, 0, tzinfo=dt.UTC),
    )
    x0, y0, x1, y1 = stamp.box
    assert (x0, y1) == (round(10 * 72 / 25.4), round(842 - 20 * 72 / 25.4))
    assert x1 - x0 == round(40 * 72 / 25.4) and y1 - y0 > x1 - x0  # the caption sits beneath the seal
    assert stamp.text_params == {"department": "测试部门", "signing_time": "2025-01-01 12:00:00 (UTC+8)"}
    assert signing_time_text(dt.datetime(2025, 1, 1, 16, 0, tzinfo=dt.UTC)) == "2025-01-02 00:00:00 (UTC+8)"
    with pytest.raises(InvalidInput):
        build_stamp(
            SealPicture(img, 40.0, 40.0, "seal"),
            page,
            x_mm=180,
            y_mm=20,
            department_name="测试部门",
            when=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )
