"""Verifying PDFs that are unsigned, damaged, hostile or judged without the right anchors."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.errors import ConfigurationError, EsealError
from gmpki.x509_interop import load_interop_certificate
from seal_registry.models import Seal
from tests.registry.conftest import Registry
from verify import DocumentReport, FileTrustSource, Indication, Result, SubIndication, detect, verify_bytes
from verify.engine import InputKind
from verify.pdf import InteropTrustSource

from .conftest import Anchors, seal_document
from .test_refusals import _encrypted_pdf


@pytest.fixture(scope="module")
def sealed(region: Registry, seal: Seal, blank_pdf: bytes) -> dict[str, bytes]:
    return {kind: seal_document(region, seal, blank_pdf, key_kind=kind) for kind in ("ecdsa", "sm2")}


def test_unsigned_pdf_is_not_signed(blank_pdf: bytes) -> None:
    report = verify_bytes(blank_pdf)
    assert detect(blank_pdf) is InputKind.PDF
    assert (report.format, report.signed, report.indication) == ("pdf", False, Indication.NOT_SIGNED)
    assert report.signatures == () and report.checks == ()


@pytest.mark.parametrize(
    "damage",
    [
        lambda pdf: pdf[: len(pdf) // 2],  # truncated
        lambda pdf: re.sub(rb"startxref\s+\d+\s+%%EOF\s*$", b"startxref\n17\n%%EOF\n", pdf),  # broken xref
        lambda pdf: pdf[:40] + b"\x00" * (len(pdf) - 40),  # everything after the header wiped
    ],
    ids=["truncated", "broken-xref", "wiped"],
)
def test_damaged_signed_pdf_is_a_format_failure(sealed: dict[str, bytes], damage: object) -> None:
    data = damage(sealed["ecdsa"])  # type: ignore[operator]
    report = verify_bytes(data)
    assert report.indication in (Indication.FAILED, Indication.INDETERMINATE)
    assert report.sub_indication is SubIndication.FORMAT_FAILURE
    failed = [c for c in (*report.checks, *(c for s in report.signatures for c in s.checks))]
    assert any(c.id == "format.parse" and c.result is not Result.PASSED for c in failed)


def test_encrypted_pdf_is_a_format_failure() -> None:
    report = verify_bytes(_encrypted_pdf())
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert "encrypted" in report.checks[0].message_en


def test_contents_with_trailing_garbage_is_a_format_failure(sealed: dict[str, bytes]) -> None:
    data = sealed["sm2"]
    # The last hex digits of /Contents are zero padding; a non-zero byte there is not allowed.
    at = data.index(b"0000>", data.index(b"/Contents <")) + 3
    tampered = data[:at] + b"1" + data[at + 1 :]
    report = verify_bytes(tampered)
    sig = report.signatures[0]
    assert sig.check("format.parse").result is Result.FAILED
    assert "zero padding" in sig.check("format.parse").message_en
    assert report.sub_indication is SubIndication.FORMAT_FAILURE


def test_without_interop_anchor_the_chain_is_indeterminate(
    sealed: dict[str, bytes], region: Registry, anchors: Anchors
) -> None:
    # The SM2 root alone trusts the SM2 signature but not the ECDSA one.
    from gmpki.x509 import load_certificate_der

    sm2_only = FileTrustSource((load_certificate_der(anchors.sm2_root),))
    report = verify_bytes(sealed["ecdsa"], trust=sm2_only)
    chain = report.signatures[0].check("signer.certificate_chain")
    assert chain.result is Result.INDETERMINATE and "interop trust anchor" in chain.message_en
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
    assert verify_bytes(sealed["sm2"], trust=sm2_only).indication is Indication.PASSED
    # The interop root alone does the opposite.
    interop_only = InteropTrustSource(None, (anchors.pades_root,))
    assert verify_bytes(sealed["ecdsa"], trust=interop_only).indication is Indication.PASSED
    assert verify_bytes(sealed["sm2"], trust=interop_only).indication is Indication.INDETERMINATE


def test_expired_signer_certificate_at_signing_time_fails(
    sealed: dict[str, bytes], trust: InteropTrustSource
) -> None:
    # The claimed signing time is used, not the validation time: a far-future validation still passes.
    later = verify_bytes(sealed["ecdsa"], trust=trust, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3650))
    assert later.indication is Indication.PASSED


def test_interop_trust_from_files(tmp_path: Path, anchors: Anchors) -> None:
    bundle = tmp_path / "anchors.pem"
    pem = b""
    for der in (anchors.sm2_root, anchors.pades_root):
        import base64

        body = base64.encodebytes(der).replace(b"\n", b"")
        lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        pem += b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"
    bundle.write_bytes(pem)
    trust = InteropTrustSource.from_paths([bundle])
    assert trust.interop_anchors(dt.datetime.now(dt.UTC)) == (anchors.pades_root,)  # SM2 roots belong in base
    leaf = tmp_path / "leaf.der"
    leaf.write_bytes(anchors.pades_tsa)  # an end-entity certificate is no anchor
    with pytest.raises(ConfigurationError):
        InteropTrustSource.from_paths([leaf])
    with pytest.raises(ConfigurationError):
        InteropTrustSource.from_paths([tmp_path / "missing.pem"])
    assert load_interop_certificate(anchors.pades_root).key_algorithm == "ec"
    assert load_interop_certificate(anchors.sm2_root).key_algorithm == "sm2"


def test_two_signatures_are_reported_in_signing_order(
    region: Registry, seal: Seal, sealed: dict[str, bytes], trust: InteropTrustSource
) -> None:
    both = seal_document(region, seal, sealed["sm2"], key_kind="rsa", x_mm=100)
    report = verify_bytes(both, trust=trust)
    assert [s.id for s in report.signatures] == ["eseal_" + seal.es_id + "_1", "eseal_" + seal.es_id + "_2"]
    assert "sm2" in report.signatures[0].check("format.parse").message_en
    assert "rsa" in report.signatures[1].check("format.parse").message_en
    assert report.indication is Indication.PASSED


# --- fuzzing: mutated signed PDFs never crash or hang the verifier -------------------------------------
_FLIPS = st.lists(
    # Past the header: a PDF without "%PDF-" is simply not recognised (UnusableInput).
    st.tuples(
        st.floats(min_value=0.005, max_value=1, exclude_max=True), st.integers(min_value=0, max_value=255)
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["ecdsa", "sm2"]),
    flips=_FLIPS,
    cut=st.one_of(st.none(), st.floats(min_value=0.05, max_value=1, exclude_max=True)),
)
def test_fuzz_mutated_pdf(
    sealed: dict[str, bytes],
    trust: InteropTrustSource,
    kind: str,
    flips: list[tuple[float, int]],
    cut: float | None,
) -> None:
    original = sealed[kind]
    data = bytearray(original)
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    started = time.monotonic()
    try:
        report = verify_bytes(bytes(data), trust=trust)
    except EsealError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # a typed refusal (the header is gone, ...) is fine
    assert isinstance(report, DocumentReport)
    assert time.monotonic() - started < 10
    event(f"{report.indication.value} {report.sub_indication.value if report.sub_indication else ''}")
    if bytes(data) != original and report.indication is Indication.PASSED:
        # Only bytes no signature covers may change without notice: inside /Contents' zero padding
        # or after the signed revision... of which a sealed file has none but the padding.
        changed = [i for i in range(min(len(data), len(original))) if data[i] != original[i]]
        contents = original.index(b"/Contents <")
        assert cut is None and all(i > contents for i in changed)
