"""A region's trust list: content, deltas, publication over HTTP, an independent reader, and the
reader's refusal of every kind of bad list (each with its own reason)."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.db import transaction
from core.errors import CertificateError, EsealError, InputTooLarge, InvalidSignature, MalformedData
from seal_registry import trust_list
from seal_registry.pki import CertRole, certificate_of, current_certificate, signer_for
from seal_registry.trust_list import published_trust_list
from tests.conftest import require_or_skip
from verify.peer_trust import (
    MAX_HISTORY,
    TRUST_LIST_FORMAT,
    TrustList,
    make_envelope,
    parse_payload,
    verify_trust_list,
)
from verify.status_snapshot import canonical_bytes

from .conftest import Region, after_the_second_of, serving


def _publish(region: Region) -> bytes:
    with transaction(region.sessions) as s:
        return published_trust_list(s, region.ctx.keystore, region.ctx.settings).envelope


def _pin(region: Region) -> set[bytes]:
    return {bytes.fromhex(region.registry_sm3())}


def _resign(region: Region, payload: bytes) -> bytes:
    """``payload`` signed by the region's real registry key: a list only the parser can refuse."""
    with region.sessions() as s:
        row = current_certificate(s, CertRole.SERVICE)
        return make_envelope(
            payload, signer_for(region.ctx.keystore, row).sign(payload), certificate_of(row), ()
        )


def _doc(envelope: bytes) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(json.loads(envelope)["payload"])))


def test_list_names_operator_roots_makers_and_seal_history(region_b: Region) -> None:
    seal = region_b.issue_seal()
    suspended = region_b.act(region_b.issue_seal("finance"), "suspend")
    tl = verify_trust_list(_publish(region_b), pinned=_pin(region_b))
    assert (tl.kind, tl.region_code, tl.operator_name) == ("full", "320000", "江苏省 Jiangsu")
    assert tl.issued_at <= tl.next_update
    with region_b.sessions() as s:
        root = current_certificate(s, CertRole.ROOT)
        maker = current_certificate(s, CertRole.SEAL_MAKER)
    assert [c.sm3 for c in tl.ca_roots] == [root.sm3] and tl.ca_roots[0].status == "granted"
    assert [c.sm3 for c in tl.seal_makers] == [maker.sm3] and tl.seal_makers[0].valid_to == maker.not_after
    assert len(tl.crls) == 1 and tl.crls[0].issuer == root.subject
    record = tl.by_sm3(seal.seal_sm3 or "")
    assert record is not None and record.es_id == seal.es_id and record.seal_type == "02"
    assert [h.state for h in record.history] == ["applied", "reviewed", "made", "filed", "issued"]
    other = tl.by_es_id(suspended.es_id)
    assert other is not None and other.seal_type == "05" and other.current.state == "suspended"
    assert {t.code for t in tl.seal_types} >= {"01", "02", "05"}
    assert tl.extensions[0].id == "publication_url" and not tl.extensions[0].critical


def test_publication_is_reused_until_the_registry_changes(region_b: Region) -> None:
    first = _publish(region_b)
    assert _publish(region_b) == first  # nothing changed: same bytes, same ETag
    region_b.issue_seal()
    second = _publish(region_b)
    tl1 = verify_trust_list(first, pinned=_pin(region_b))
    tl2 = verify_trust_list(second, pinned=_pin(region_b))
    assert tl2.sequence > tl1.sequence and len(tl2.seals) == len(tl1.seals) + 1


def test_delta_carries_only_changed_seals_whole_and_merges(region_b: Region) -> None:
    kept = region_b.issue_seal()
    changed = region_b.issue_seal()
    base = verify_trust_list(_publish(region_b), pinned=_pin(region_b))
    after_the_second_of(changed.state_changed_at)
    region_b.act(changed, "cancel")
    with transaction(region_b.sessions) as s:
        envelope = trust_list.build_delta(
            s, region_b.ctx.keystore, region_b.ctx.settings, since=base.sequence
        )
    delta = verify_trust_list(envelope, pinned=_pin(region_b))
    assert (delta.kind, delta.since) == ("delta", base.sequence) and delta.sequence > base.sequence
    assert [s.es_id for s in delta.seals] == [changed.es_id]
    assert [h.state for h in delta.seals[0].history][-2:] == ["issued", "cancelled"]
    merged = base.merge(delta)
    assert merged.kind == "full" and merged.sequence == delta.sequence
    assert merged.by_es_id(changed.es_id).current.state == "cancelled"  # type: ignore[union-attr]
    assert merged.by_es_id(kept.es_id) == base.by_es_id(kept.es_id)
    # A delta that does not follow the base cannot be merged
    with pytest.raises(MalformedData):
        merged.merge(delta.__class__(**{**delta.__dict__, "since": merged.sequence + 1}))


def test_trust_list_over_http_with_caching_headers(region_b: Region) -> None:
    region_b.issue_seal()
    with serving(region_b), httpx.Client(base_url=region_b.url or "", timeout=10) as c:
        r = c.get("/v1/trust-list")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        etag = r.headers["etag"]
        assert etag.startswith('"') and "max-age=" in r.headers["cache-control"]
        assert r.headers["last-modified"].endswith("GMT")
        tl = verify_trust_list(r.content, pinned=_pin(region_b))
        assert r.headers["x-trust-list-sequence"] == str(tl.sequence)
        again = c.get("/v1/trust-list", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert c.get("/v1/trust-list", headers={"If-None-Match": '"other"'}).status_code == 200
        since = c.get("/v1/trust-list", headers={"If-Modified-Since": r.headers["last-modified"]})
        assert since.status_code == 304
        d = c.get("/v1/trust-list/delta", params={"since": tl.sequence})
        delta = verify_trust_list(d.content, pinned=_pin(region_b))
        assert delta.kind == "delta" and delta.seals == () and delta.issued_at == tl.issued_at
        beyond = c.get("/v1/trust-list/delta", params={"since": tl.sequence + 1000})
        assert beyond.status_code == 400 and beyond.json()["code"] == "invalid_input"
        assert c.get("/v1/trust-list/delta", params={"since": -1}).status_code == 422


# --- the independent reader ---------------------------------------------------------------------------
def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


def _openssl_verify(tmp: Path, payload: bytes, signature: bytes, cert_der: bytes) -> bool:
    (tmp / "payload.bin").write_bytes(payload)
    (tmp / "sig.der").write_bytes(signature)
    (tmp / "signer.der").write_bytes(cert_der)
    key = _openssl("x509", "-inform", "DER", "-in", str(tmp / "signer.der"), "-pubkey", "-noout")
    assert key.returncode == 0, key.stderr
    (tmp / "pub.pem").write_text(key.stdout)
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp / "pub.pem"), "-rawin",
        "-in", str(tmp / "payload.bin"), "-sigfile", str(tmp / "sig.der"),
        "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    return result.returncode == 0 and "Verified Successfully" in result.stdout


def _openssl_sm3(tmp: Path, data: bytes) -> str:
    (tmp / "blob").write_bytes(data)
    result = _openssl("dgst", "-sm3", "-r", str(tmp / "blob"))
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def test_independent_reader_checks_an_exported_list_with_openssl(region_b: Region, tmp_path: Path) -> None:
    """Written from docs/trust-list-format.md with json, base64 and the OpenSSL CLI only."""
    require_or_skip(shutil.which("openssl") is not None, "the openssl command is not installed")
    seal = region_b.issue_seal()
    exported = _publish(region_b)

    envelope = json.loads(exported.decode("utf-8"))
    assert set(envelope) == {"payload", "signature", "certificate", "chain"}
    payload = base64.b64decode(envelope["payload"], validate=True)
    signature = base64.b64decode(envelope["signature"], validate=True)
    signer = base64.b64decode(envelope["certificate"], validate=True)
    doc = json.loads(payload.decode("utf-8"))
    # §2: canonical form (sorted keys, no whitespace, UTF-8 as itself)
    assert json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == payload
    assert doc["format"] == "eseal-trust-list/1" and doc["type"] == "full" and doc["since"] is None
    assert doc["scheme_operator"] == {"name": "江苏省 Jiangsu", "region_code": "320000"}
    assert isinstance(doc["sequence"], int) and doc["issued_at"] <= doc["next_update"]
    # §1: SM2 signature over the payload bytes, default ID, by the pinned registry certificate
    assert _openssl_sm3(tmp_path, signer) == region_b.registry_sm3()
    assert _openssl_verify(tmp_path, payload, signature, signer)
    eku = _openssl(
        "x509", "-inform", "DER", "-in", str(tmp_path / "signer.der"), "-noout", "-ext", "extendedKeyUsage"
    )
    assert "OCSP Signing" in eku.stdout
    # §2.1: each listed certificate's sm3 is the SM3 of its DER
    for entry in doc["ca_roots"] + doc["seal_makers"]:
        assert _openssl_sm3(tmp_path, base64.b64decode(entry["certificate"])) == entry["sm3"]
    # §2.2: the seal, its identity and its history
    (listed,) = [s for s in doc["seals"] if s["es_id"] == seal.es_id]
    assert listed["seal_sm3"] == _openssl_sm3(tmp_path, seal.seal_der or b"")
    assert [h["state"] for h in listed["history"]][-1] == "issued"
    # One flipped payload byte: the same signature no longer verifies
    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 0x01
    assert not _openssl_verify(tmp_path, bytes(flipped), signature, signer)


# --- refusals ------------------------------------------------------------------------------------------
def test_tampered_list_fails_the_signature(region_b: Region) -> None:
    region_b.issue_seal()
    envelope = json.loads(_publish(region_b))
    doc = _doc(_publish(region_b))
    doc["seals"][0]["history"] = doc["seals"][0]["history"][:-1]  # hide the issue
    envelope["payload"] = base64.b64encode(canonical_bytes(doc)).decode()
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_trust_list(canonical_bytes(envelope), pinned=_pin(region_b))


def test_list_signed_by_an_unpinned_key_is_refused(region_b: Region, region_a: Region) -> None:
    # Region A's own, perfectly valid list, offered where B's key is pinned
    with pytest.raises(CertificateError, match="unpinned key"):
        verify_trust_list(_publish(region_a), pinned=_pin(region_b))


def test_department_key_cannot_sign_a_list(region_b: Region) -> None:
    payload = _doc(_publish(region_b))
    body = canonical_bytes(payload)
    with region_b.sessions() as s:
        from seal_registry.models import PkiCertificate

        dept = s.query(PkiCertificate).filter(PkiCertificate.role == CertRole.DEPARTMENT.value).one()
        forged = make_envelope(
            body, signer_for(region_b.ctx.keystore, dept).sign(body), certificate_of(dept), ()
        )
        pin = {certificate_of(dept).fingerprint_sm3}
    with pytest.raises(CertificateError, match="OCSPSigning"):
        verify_trust_list(forged, pinned=pin)


def _mutations() -> list[tuple[str, Any, type[Exception], str]]:
    def set_(path: list[Any], value: Any) -> Any:
        def apply(doc: dict[str, Any]) -> None:
            target: Any = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value

        return apply

    def add_critical(doc: dict[str, Any]) -> None:
        doc["extensions"].append({"id": "x.must_understand", "critical": True, "value": {"a": 1}})

    def extra_field(doc: dict[str, Any]) -> None:
        doc["trust_everyone"] = True

    def huge_history(doc: dict[str, Any]) -> None:
        change = doc["seals"][0]["history"][-1]
        doc["seals"][0]["history"] = [change] * (MAX_HISTORY + 1)

    def huge_es_id(doc: dict[str, Any]) -> None:
        doc["seals"][0]["es_id"] = "3" * 1_000_000

    def deep_extension(doc: dict[str, Any]) -> None:
        value: Any = "x"
        for _ in range(40):
            value = [value]
        doc["extensions"].append({"id": "deep", "critical": False, "value": value})

    def out_of_order(doc: dict[str, Any]) -> None:
        doc["seals"][0]["history"].reverse()
        doc["seals"][0]["history"][0]["at"] = "2099-01-01T00:00:00Z"

    def wrong_sm3(doc: dict[str, Any]) -> None:
        doc["seal_makers"][0]["sm3"] = "0" * 64

    return [
        ("unknown critical extension", add_critical, MalformedData, "unknown critical extension"),
        ("unknown top-level member", extra_field, MalformedData, "unknown: \\['trust_everyone'\\]"),
        ("negative sequence", set_(["sequence"], -1), MalformedData, "non-negative"),
        ("sequence as text", set_(["sequence"], "7"), MalformedData, "non-negative"),
        ("other format", set_(["format"], "eseal-trust-list/9"), MalformedData, "unknown format"),
        (
            "bad state",
            set_(["seals", 0, "history", 0, "state"], "revived"),
            MalformedData,
            "unknown seal state",
        ),
        ("bad time", set_(["issued_at"], "yesterday"), MalformedData, "YYYY-MM-DD"),
        (
            "next update first",
            set_(["next_update"], "2000-01-01T00:00:00Z"),
            MalformedData,
            "before issued_at",
        ),
        ("history out of order", out_of_order, MalformedData, "time order"),
        ("certificate digest mismatch", wrong_sm3, MalformedData, "does not match"),
        ("huge history", huge_history, InputTooLarge, "history"),
        ("huge esID", huge_es_id, MalformedData, "invalid es_id"),
        ("deep extension", deep_extension, MalformedData, "nested too deeply"),
    ]


@pytest.mark.parametrize(
    ("case", "mutate", "error", "reason"), _mutations(), ids=[m[0] for m in _mutations()]
)
def test_signed_but_malformed_lists_are_refused(
    region_b: Region, case: str, mutate: Any, error: type[Exception], reason: str
) -> None:
    region_b.issue_seal()
    doc = _doc(_publish(region_b))
    mutate(doc)
    with pytest.raises(error, match=reason):
        verify_trust_list(_resign(region_b, canonical_bytes(doc)), pinned=_pin(region_b))


def test_non_canonical_and_hostile_json_is_refused(region_b: Region) -> None:
    doc = _doc(_publish(region_b))
    spaced = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    with pytest.raises(MalformedData, match="canonical"):
        verify_trust_list(_resign(region_b, spaced), pinned=_pin(region_b))
    duplicated = canonical_bytes(doc).replace(b'{"ca_roots"', b'{"sequence":0,"ca_roots"', 1)
    with pytest.raises(MalformedData, match="duplicate"):
        verify_trust_list(_resign(region_b, duplicated), pinned=_pin(region_b))
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MalformedData):
        verify_trust_list(deep, pinned=_pin(region_b))
    with pytest.raises(MalformedData):
        verify_trust_list(_resign(region_b, deep), pinned=_pin(region_b))
    with pytest.raises(InputTooLarge):
        verify_trust_list(b" " * 2048, pinned=_pin(region_b), max_bytes=1024)
    for junk in (
        b"",
        b"null",
        b"\xff\xfe",
        b'{"payload":1}',
        b'{"payload":"!!","signature":"","certificate":"","chain":[]}',
    ):
        with pytest.raises(MalformedData):
            verify_trust_list(junk, pinned=_pin(region_b))


def test_unknown_non_critical_extension_is_kept_and_ignored(region_b: Region) -> None:
    doc = _doc(_publish(region_b))
    doc["extensions"].append({"id": "x.hint", "critical": False, "value": {"note": "ignored"}})
    tl = verify_trust_list(_resign(region_b, canonical_bytes(doc)), pinned=_pin(region_b))
    assert [e.id for e in tl.extensions] == ["publication_url", "x.hint"]


def test_serialiser_and_reader_round_trip(region_b: Region) -> None:
    region_b.issue_seal()
    envelope = _publish(region_b)
    tl = verify_trust_list(envelope, pinned=_pin(region_b))
    payload = base64.b64decode(json.loads(envelope)["payload"])
    assert tl.payload_bytes() == payload
    again: TrustList = parse_payload(payload)
    assert again == tl and again.to_payload()["format"] == TRUST_LIST_FORMAT


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def test_fuzzed_signed_lists_fail_only_with_typed_errors(region_b: Region) -> None:
    """Every leaf of a real list replaced by hostile values, re-signed: the reader either accepts the
    list or raises an eseal error — never anything else."""
    region_b.issue_seal()
    doc = _doc(_publish(region_b))
    hostile: list[Any] = [
        None,
        True,
        -1,
        2**70,
        1.5,
        "",
        "x" * 300,
        "\x00",
        [],
        {},
        [[[]]],
        {"a": None},
        "已注销",
    ]
    rng = random.Random(7)
    paths = _leaves(doc)
    accepted = refused = 0
    for _ in range(300):
        mutated = json.loads(json.dumps(doc))
        path = rng.choice(paths)
        target = mutated
        for key in path[:-1]:
            target = target[key]
        if path:
            target[path[-1]] = rng.choice(hostile)
        try:
            verify_trust_list(_resign(region_b, canonical_bytes(mutated)), pinned=_pin(region_b))
            accepted += 1
        except EsealError:
            refused += 1
    # Only free text (names, URLs) may take other values; nearly every mutation is refused.
    assert refused > 200 and accepted + refused == 300
