"""The verifier's content caches: a warm verification of a one-seal OFD costs one SM2 verify (the
signer's, over bytes never seen before) and no certificate parse, and no cached result ever answers
for different bytes, a different key or another thread's input."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.errors import InputTooLarge, MalformedData
from gmpki import sm2
from gmpki import x509 as gm_x509
from gmpki.crl import CertificateRevocationList
from gmpki.ofd import OfdPackage
from gmpki.seal import parse_seal, parse_ses_signature
from gmpki.x509 import Certificate, LruCache, load_certificate_der
from tests.verify.conftest import Pki, flip, rewrite_entry
from verify import FileTrustSource, Indication, Result, SealStatusFact, TrustSource, verify_bytes

pytestmark = pytest.mark.interop

SIGNED_VALUE = "Doc_0/Signs/Sign_0/SignedValue.dat"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts SM2 verifications and certificate parses while a test runs."""
    counts = {"sm2": 0, "parse": 0}
    verify_digest, parse = sm2.verify_digest, gm_x509._parse_certificate_der

    def counting_verify(*args: object, **kwargs: object) -> bool:
        counts["sm2"] += 1
        return verify_digest(*args, **kwargs)  # type: ignore[arg-type]

    def counting_parse(der: bytes, max_size: int) -> Certificate:
        counts["parse"] += 1
        return parse(der, max_size)

    monkeypatch.setattr(sm2, "verify_digest", counting_verify)
    monkeypatch.setattr(gm_x509, "_parse_certificate_der", counting_parse)
    yield counts


def test_warm_verification_costs_one_sm2_verify_and_no_parse(
    sealed: bytes, root_pem: Path, counted: dict[str, int]
) -> None:
    trust = FileTrustSource.from_paths([root_pem])
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED  # warm
    counted.update(sm2=0, parse=0)
    report = verify_bytes(sealed, trust=trust)
    assert report.indication is Indication.PASSED
    # Maker signature (by seal), two certificate signatures (by certificate and key) and all parses
    # are answered from the caches; the signer's signature over this document is verified afresh.
    assert counted == {"sm2": 1, "parse": 0}


def test_a_new_document_with_the_same_seal_costs_one_sm2_verify(
    pki: Pki, sealed: bytes, interop_file: Callable[[str], bytes], counted: dict[str, int]
) -> None:
    from tests.verify.conftest import seal_ofd

    trust = pki.trust()
    verify_bytes(sealed, trust=trust)
    other = seal_ofd(
        interop_file("ofdrw-sign__helloworld.ofd"), pki, when=pki.created + dt.timedelta(seconds=5)
    )
    counted.update(sm2=0, parse=0)
    assert verify_bytes(other, trust=trust).indication is Indication.PASSED
    assert counted == {"sm2": 1, "parse": 0}


def test_cached_maker_result_does_not_answer_for_a_changed_seal(sealed: bytes, pki: Pki) -> None:
    trust = pki.trust()
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
    value = OfdPackage(sealed).read(SIGNED_VALUE)
    maker_signature = parse_ses_signature(value).seal.signature
    at = value.index(maker_signature) + len(maker_signature) - 1
    (sig,) = verify_bytes(rewrite_entry(sealed, SIGNED_VALUE, lambda b: flip(b, at)), trust=trust).signatures
    assert sig.check("seal.maker_signature").result is Result.FAILED
    # The seal is part of TBS_Sign and equal to Seal.esl no more: those fail too, nothing else.
    failed = {k for k, v in sig.results().items() if v is Result.FAILED}
    assert failed == {"seal.maker_signature", "signer.signature", "document.seal_file_match"}


def test_certificate_signature_cache_is_keyed_by_issuer_key(pki: Pki) -> None:
    assert pki.department.verify_signature(pki.root.public_key)
    assert not pki.department.verify_signature(pki.outsider.public_key)
    assert pki.department.verify_signature(pki.root.public_key)


def test_certificate_parse_cache_is_by_content(pki: Pki) -> None:
    der = pki.department.der
    assert load_certificate_der(der) is load_certificate_der(bytes(bytearray(der)))
    changed = flip(der, len(der) - 1)  # last signature byte: still parses, as another certificate
    other = load_certificate_der(changed)
    assert other is not load_certificate_der(der) and other.der == changed
    assert not other.verify_signature(pki.root.public_key)
    for _ in range(2):  # a failure is never cached as a success
        with pytest.raises(Exception, match=r"(?i)certificate|证书"):
            load_certificate_der(der[:-5])


def test_seal_parse_cache_is_by_content_and_keeps_the_limits(sealed: bytes) -> None:
    seal = parse_ses_signature(OfdPackage(sealed).read(SIGNED_VALUE)).seal.raw
    assert parse_seal(seal) is parse_seal(bytes(bytearray(seal)))  # the same bytes: parsed once
    changed = flip(seal, len(seal) - 1)  # last byte of the maker's signature: another seal
    assert parse_seal(changed) is not parse_seal(seal) and parse_seal(changed).raw == changed
    with pytest.raises(InputTooLarge):  # a cached seal is still too large for a smaller limit
        parse_seal(seal, max_size=len(seal) - 1)
    for _ in range(2):  # a failure is never cached as a success
        with pytest.raises(MalformedData):
            parse_seal(seal[:-5])


def test_lru_cache_is_bounded() -> None:
    cache: LruCache[int, str] = LruCache(3)
    for i in range(5):
        cache.put(i, str(i))
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) == "4"
    assert cache.get_or_compute(1, lambda: "new") == "new"
    assert cache.get(2) is None  # least recently used went first


def test_concurrent_verifications_agree_with_sequential_ones(sealed: bytes, pki: Pki) -> None:
    trust = pki.trust()
    tampered = rewrite_entry(sealed, "Doc_0/Signs/Sign_0/Signature.xml", lambda b: b + b" ")
    inputs = [sealed, tampered] * 24
    expected = {d: verify_bytes(d, trust=trust).signatures[0].results() for d in (sealed, tampered)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda d: verify_bytes(d, trust=trust).signatures[0].results(), inputs))
    assert all(r == expected[d] for r, d in zip(results, inputs, strict=True))
    assert expected[tampered]["document.data_hash"] is Result.FAILED


class _Counting:
    def __init__(self, base: TrustSource) -> None:
        self.base = base
        self.calls: list[tuple[str, dt.datetime]] = []

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        self.calls.append(("anchors", at))
        return self.base.trust_anchors(at)

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        self.calls.append(("intermediates", at))
        return self.base.intermediates(at)

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        self.calls.append(("crls", at))
        return self.base.crls(at)

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        self.calls.append(("status", at))
        return None


def test_trust_source_is_asked_each_question_once_per_document(sealed: bytes, pki: Pki) -> None:
    trust = _Counting(pki.trust())
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
    first = len(trust.calls)
    assert first == len(set(trust.calls)), trust.calls
    verify_bytes(sealed, trust=trust)  # a new document: asked again, never answered from before
    assert len(trust.calls) == 2 * first


class _Viewed:
    """A source over changing state: every document must take one view of it, and only one."""

    def __init__(self, base: TrustSource) -> None:
        self.base = base
        self.views: list[_Counting] = []

    def consistent_view(self) -> TrustSource:
        view = _Counting(self.base)
        self.views.append(view)
        return view

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        raise AssertionError("asked past its view")

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        raise AssertionError("asked past its view")

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        raise AssertionError("asked past its view")

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        raise AssertionError("asked past its view")


def test_a_consistent_source_is_viewed_once_per_document(sealed: bytes, pki: Pki) -> None:
    trust = _Viewed(pki.trust())
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
    assert len(trust.views) == 1 and trust.views[0].calls
    verify_bytes(sealed, trust=trust)  # the next document takes a view of its own, never the last one
    assert len(trust.views) == 2 and len(trust.views[1].calls) == len(trust.views[0].calls)


def test_warm_verification_is_fast(sealed: bytes, pki: Pki) -> None:
    trust = pki.trust()
    verify_bytes(sealed, trust=trust)
    start = time.perf_counter()
    for _ in range(50):
        verify_bytes(sealed, trust=trust)
    per = (time.perf_counter() - start) / 50
    # ~2 ms on the reference machine; the bound only catches losing the caches (≥ 7 ms before).
    assert per < 0.05, f"{per * 1000:.1f} ms per verification"
