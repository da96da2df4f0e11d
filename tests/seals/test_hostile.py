"""Hostile and broken input: only MalformedData (or InputTooLarge above the limit) ever comes out."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InputTooLarge, MalformedData
from gmpki import seal as S

from .conftest import Tlv, walk_der
from .conftest import der_tlv as _tlv

pytestmark = pytest.mark.interop


def _both_fail(data: bytes) -> None:
    with pytest.raises(MalformedData):
        S.parse_seal(data)
    with pytest.raises(MalformedData):
        S.parse_ses_signature(data)


def test_truncated_prefixes(seal_v4: bytes, seal_v1: bytes, signed_value_v4: bytes) -> None:
    rng = random.Random(20240521)
    for data, parse in (
        (seal_v4, S.parse_seal),
        (seal_v1, S.parse_seal),
        (signed_value_v4, S.parse_ses_signature),
    ):
        lengths = {0, 1, 2, 3, 4, 5, 20, len(data) - 1, len(data) - 2} | set(rng.sample(range(len(data)), 30))
        for n in sorted(lengths):
            with pytest.raises(MalformedData):
                parse(data[:n])


def test_trailing_garbage(seal_v4: bytes, signed_value_v4: bytes) -> None:
    with pytest.raises(MalformedData, match="trailing"):
        S.parse_seal(seal_v4 + b"\x00")
    with pytest.raises(MalformedData):
        S.parse_ses_signature(signed_value_v4 + b"\x30\x00")
    with pytest.raises(MalformedData):
        S.detect_seal_version(seal_v4 + b"junk")


@pytest.mark.parametrize(
    ("offset", "new_tag"),
    [
        (0, 0x31),  # SESeal as SET
        (29, 0x0C),  # esID as UTF8String
        (67, 0x04),  # property.type as OCTET STRING
        (634, 0x17),  # createDate as UTCTime in a v4 seal
        (689, 0x13),  # picture type as PrintableString
        (16397, 0x03),  # maker cert as BIT STRING
        (16927, 0x04),  # algorithm as OCTET STRING
        (16937, 0x04),  # signature as OCTET STRING
        (98, 0x31),  # certList as SET
        (102, 0x30),  # certificate as SEQUENCE (a nested Certificate instead of OCTET STRING)
    ],
)
def test_wrong_tags(seal_v4: bytes, offset: int, new_tag: int) -> None:
    tree = walk_der(seal_v4)
    starts: set[int] = set()

    def collect(node: Tlv) -> None:
        starts.add(node.start)
        for child in node.children:
            collect(child)

    collect(tree)
    assert offset in starts  # the offsets above are element starts in UserV4.esl
    data = bytearray(seal_v4)
    data[offset] = new_tag
    with pytest.raises(MalformedData):
        S.parse_seal(bytes(data))


def test_nested_length_beyond_parent(seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    at = seal_v4.index(seal.picture_data) - 4  # 04 82 hh ll
    assert seal_v4[at : at + 2] == b"\x04\x82"
    data = bytearray(seal_v4)
    data[at + 2 : at + 4] = (len(seal.picture_data) + 100).to_bytes(2, "big")
    with pytest.raises(MalformedData, match="declared length"):
        S.parse_seal(bytes(data))


def test_declared_100_mb_picture_fails_fast(seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    at = seal_v4.index(seal.picture_data) - 4
    hundred_mb = (100 * 1024 * 1024).to_bytes(4, "big")
    small = seal_v4[:at] + b"\x04\x84" + hundred_mb + seal_v4[at + 4 :]
    outer = b"\x30\x84" + (100 * 1024 * 1024 + 50).to_bytes(4, "big") + seal_v4[4:200]
    for data in (small, outer, b"\x30\x84\x06\x00\x00\x00" + b"\x04\x84\x05\xf5\xe1\x00"):
        begin = time.perf_counter()
        _both_fail(data)
        assert time.perf_counter() - begin < 0.5


def test_size_limit(seal_v4: bytes) -> None:
    with pytest.raises(InputTooLarge):
        S.parse_seal(seal_v4, max_size=len(seal_v4) - 1)
    assert S.parse_seal(seal_v4, max_size=len(seal_v4)).raw == seal_v4


def test_not_der(seal_v4: bytes) -> None:
    # indefinite length (BER) on the outer SEQUENCE
    _both_fail(b"\x30\x80" + seal_v4[4:] + b"\x00\x00")
    # deep nesting
    deep = b""
    for _ in range(200):
        deep = _tlv(0x30, deep)
    _both_fail(deep)
    # constructed OCTET STRING, high tag number, empty input, lone tag
    _both_fail(b"\x24\x00")
    _both_fail(b"\x3f\x81\x01\x00")
    _both_fail(b"")
    _both_fail(b"\x30")


def test_two_element_things_that_are_not_v1(seal_v1: bytes, seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v1)
    info = seal.seal_info_bytes
    for second in (
        _tlv(0x30, b"\x04\x01x\x06\x01\x01"),  # signInfo without the signature
        _tlv(0x30, b""),
        _tlv(0x03, b"\x00abc"),  # the v1 SES_Signature layout
        _tlv(0x04, b"x"),
    ):
        with pytest.raises(MalformedData):
            S.parse_seal(_tlv(0x30, info + second))
    # right layout, wrong content: a v4 SES_SealInfo (GeneralizedTime, certListType) in a v1 shell
    v4_info = S.parse_seal(seal_v4).seal_info_bytes
    shell = seal_v1[seal_v1.index(b"\x30\x82\x02\x67", 16000) :]
    assert S.detect_seal_version(_tlv(0x30, v4_info + shell)) == 1
    with pytest.raises(MalformedData):
        S.parse_seal(_tlv(0x30, v4_info + shell))


def test_seal_is_not_a_signature_and_vice_versa(seal_v4: bytes, signed_value_v4: bytes) -> None:
    with pytest.raises(MalformedData):
        S.parse_ses_signature(seal_v4)
    with pytest.raises(MalformedData):
        S.parse_seal(signed_value_v4)


def test_unknown_header_version_is_reported(seal_v4: bytes) -> None:
    data = bytearray(seal_v4)
    assert data[14:17] == b"\x02\x01\x04"
    data[16] = 7
    seal = S.parse_seal(bytes(data))
    assert (seal.version, seal.header_version) == (4, 7)
    assert "unknown_header_version" in seal.warnings
    assert not S.verify_maker_signature(seal)  # the header is signed


def test_bad_certificate_and_algorithm_are_reasons_not_crashes(seal_v4: bytes) -> None:
    seal = S.parse_seal(seal_v4)
    cert_at = seal_v4.index(seal.maker_cert_der)
    cert_end = cert_at + len(seal.maker_cert_der)
    garbage = seal_v4[:cert_at] + bytes(len(seal.maker_cert_der)) + seal_v4[cert_end:]
    assert S.check_maker_signature(S.parse_seal(garbage)) is S.SignatureCheck.BAD_CERTIFICATE
    sig_at = len(seal_v4) - len(seal.signature)
    bad_sig = seal_v4[:sig_at] + b"\x31" + seal_v4[sig_at + 1 :]
    assert S.check_maker_signature(S.parse_seal(bad_sig)) is S.SignatureCheck.BAD_SIGNATURE_ENCODING


# --- fuzzing ----------------------------------------------------------------------------------------------
def _call_both(data: bytes) -> None:
    for parse in (S.parse_seal, S.parse_ses_signature, S.detect_seal_version, S.detect_signature_version):
        try:
            result = parse(data)
        except MalformedData:
            continue
        if isinstance(result, S.ParsedSeal):
            assert result.raw == data
            S.check_maker_signature(result)
        elif isinstance(result, S.ParsedSesSignature):
            S.check_signer_signature(result)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    _call_both(data)


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_sequence_shaped(data: bytes) -> None:
    _call_both(_tlv(0x30, data))


@pytest.fixture(scope="module")
def samples(seal_v4: bytes, seal_v1: bytes, signed_value_v4: bytes) -> list[bytes]:
    return [seal_v4, seal_v1, signed_value_v4]


@_FUZZ
@given(
    which=st.integers(0, 2),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    insert=st.binary(max_size=8),
    anywhere=st.booleans(),
)
def test_fuzz_mutated_samples(
    samples: list[bytes],
    which: int,
    edits: list[tuple[float, int]],
    cut: float | None,
    insert: bytes,
    anywhere: bool,
) -> None:
    data = bytearray(samples[which])
    # Bias towards the headers: the first 800 bytes hold every element header except the tail ones.
    span = len(data) if anywhere else min(len(data), 800)
    for where, value in edits:
        data[int(where * span)] = value
    if insert:
        at = int((cut or 0.5) * len(data))
        data[at:at] = insert
    elif cut is not None:
        del data[int(cut * len(data)) :]
    _call_both(bytes(data))


def _leaves(node: Tlv) -> list[Tlv]:
    if not node.children:
        return [node]
    return [leaf for child in node.children for leaf in _leaves(child)]


@_FUZZ
@given(
    which=st.integers(0, 2), pick=st.floats(0, 1, exclude_max=True), noise=st.binary(min_size=64, max_size=64)
)
def test_fuzz_leaf_contents(samples: list[bytes], which: int, pick: float, noise: bytes) -> None:
    """Keep the structure, garble one primitive's contents: exercises the field decoders."""
    data = samples[which]
    leaves = [leaf for leaf in _leaves(walk_der(data)) if leaf.end - leaf.body <= 600]
    leaf = leaves[int(pick * len(leaves))]
    size = leaf.end - leaf.body
    garbled = (noise * (size // 64 + 1))[:size]
    _call_both(data[: leaf.body] + garbled + data[leaf.end :])
