"""Fixtures for the PDF tests: one region on SQLite (SM2 PKI, PAdES interop PKI, a department with SM2,
ECDSA and RSA certificates, issued seals), small PDFs written with pyHanko, and poppler's pdfsig /
pdftoppm run for real against an NSS database that trusts the interop root."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from core import migrate
from core.db import make_engine, make_session_factory, transaction
from core.settings import Settings
from hsm_adapters.keystore import KeyAlgorithm
from hsm_adapters.soft import SoftKeyStore
from seal_registry.departments import create_department
from seal_registry.lifecycle import SealState
from seal_registry.models import Seal
from seal_registry.pki import (
    CertRole,
    certificate_of,
    current_certificate,
    init_pades,
    init_region,
    issue_department_certificate,
    issue_pades_certificate,
)
from tests.conftest import require_or_skip
from tests.registry.conftest import ACTOR, FAST_SCRYPT, Registry, uscc
from verify import FileTrustSource
from verify.pdf import InteropTrustSource

A4 = (595.0, 842.0)


@pytest.fixture(scope="package")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A region shared by every PDF test (they only add seals and signatures)."""
    tmp = tmp_path_factory.mktemp("pdf-region")
    url = f"sqlite:///{tmp / 'eseal.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    keystore = SoftKeyStore(sessions, "pdf test passphrase", scrypt_params=FAST_SCRYPT)
    settings = Settings(var_dir=tmp / "var", database_url=url, keystore_passphrase="unused")
    with transaction(sessions) as s:
        init_region(s, keystore, settings, actor=ACTOR)
    with transaction(sessions) as s:
        init_pades(s, keystore, settings, actor=ACTOR)
    with transaction(sessions) as s:
        dept = create_department(
            s, name="测试市市场监督管理局", uscc=uscc(7), region_code="110000", actor=ACTOR
        )
    with transaction(sessions) as s:
        cert = issue_department_certificate(s, keystore, dept, actor=ACTOR)
    for algorithm in (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_3072):
        with transaction(sessions) as s:
            issue_pades_certificate(s, keystore, dept, algorithm=algorithm, actor=ACTOR)
    try:
        yield Registry(url, sessions, keystore, settings, dept, cert)
    finally:
        keystore.close()
        engine.dispose()


@pytest.fixture(scope="package")
def seal(region: Registry) -> Seal:
    return region.seal_in(SealState.ISSUED)


@dataclass(frozen=True)
class Anchors:
    sm2_root: bytes
    pades_root: bytes
    sm2_tsa: bytes
    pades_tsa: bytes


@pytest.fixture(scope="package")
def anchors(region: Registry) -> Anchors:
    with region.sessions() as s:
        return Anchors(
            current_certificate(s, CertRole.ROOT).der,
            current_certificate(s, CertRole.PADES_ROOT).der,
            current_certificate(s, CertRole.TSA).der,
            current_certificate(s, CertRole.PADES_TSA).der,
        )


@pytest.fixture(scope="package")
def trust(region: Registry, anchors: Anchors) -> InteropTrustSource:
    """The region's SM2 root for SM2 signatures plus the PAdES interop root for ECDSA/RSA ones."""
    with region.sessions() as s:
        base = FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))
    return InteropTrustSource(base, (anchors.pades_root,))


def make_pdf(pages: int = 1, *, size: tuple[float, float] = A4, rotate: int = 0) -> bytes:
    """A small PDF written by pyHanko: ``pages`` pages, each with a black rectangle on it."""
    writer = PdfFileWriter()
    for _ in range(pages):
        content = writer.add_object(generic.StreamObject(stream_data=b"0 0 0 rg 72 72 144 36 re f"))
        box = generic.ArrayObject(
            [
                generic.NumberObject(0),
                generic.NumberObject(0),
                generic.FloatObject(size[0]),
                generic.FloatObject(size[1]),
            ]
        )
        page = PageObject(contents=content, media_box=box)
        if rotate:
            page[generic.NameObject("/Rotate")] = generic.NumberObject(rotate)
        writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture(scope="package")
def blank_pdf() -> bytes:
    return make_pdf()


# --- poppler ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Poppler:
    pdfsig: str
    pdftoppm: str
    certutil: str | None
    nss_dir: Path | None

    def sig(self, pdf: Path) -> str:
        args = [self.pdfsig]
        if self.nss_dir is not None:
            args += ["-nssdir", f"sql:{self.nss_dir}"]
        done = subprocess.run([*args, str(pdf)], capture_output=True, text=True, timeout=60, check=False)
        return done.stdout + done.stderr

    def render(self, pdf: Path, out_prefix: Path, dpi: int = 72) -> Path:
        subprocess.run(
            [self.pdftoppm, "-png", "-r", str(dpi), "-f", "1", "-l", "1", str(pdf), str(out_prefix)],
            check=True,
            timeout=60,
            capture_output=True,
        )
        found = sorted(out_prefix.parent.glob(out_prefix.name + "*.png"))
        assert found, "pdftoppm wrote no image"
        return found[0]


@pytest.fixture(scope="package")
def poppler(tmp_path_factory: pytest.TempPathFactory, anchors: Anchors) -> Poppler:
    pdfsig, pdftoppm = shutil.which("pdfsig"), shutil.which("pdftoppm")
    require_or_skip(
        pdfsig is not None and pdftoppm is not None, "poppler-utils (pdfsig, pdftoppm) not installed"
    )
    assert pdfsig is not None and pdftoppm is not None
    certutil = shutil.which("certutil")
    nss_dir: Path | None = None
    if certutil is not None:
        nss_dir = tmp_path_factory.mktemp("nss")
        root = nss_dir / "pades-root.der"
        root.write_bytes(anchors.pades_root)
        subprocess.run([certutil, "-N", "-d", f"sql:{nss_dir}", "--empty-password"], check=True, timeout=60)
        subprocess.run(
            [
                certutil,
                "-A",
                "-d",
                f"sql:{nss_dir}",
                "-n",
                "eseal-pades-root",
                "-t",
                "C,C,C",
                "-i",
                str(root),
            ],
            check=True,
            timeout=60,
        )
    return Poppler(pdfsig, pdftoppm, certutil, nss_dir)


def seal_document(region: Registry, seal: Seal, pdf: bytes, **options: object) -> bytes:
    """Seal ``pdf`` in one transaction of its own (the way the API and CLI call it)."""
    from signer.pdf_sealing import seal_pdf

    args: dict[str, object] = {"x_mm": 20, "y_mm": 30, "actor": ACTOR}
    args.update(options)
    with transaction(region.sessions) as s:
        return seal_pdf(
            s,
            region.keystore,
            pdf,
            es_id=seal.es_id,
            department_id=region.department.id,
            **args,  # type: ignore[arg-type]
        )
