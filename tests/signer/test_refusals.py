"""Refusals: unusable seals (suspended, cancelled, expired, revoked certificate) and another
department on both database backends; hostile or malformed documents. Every refusal is a typed
error, returns nothing, and leaves the audit chain as it was."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update

from core.db import transaction, utcnow
from core.errors import EsealError, InputTooLarge, MalformedData, NotUsable, PermissionDenied
from seal_registry.lifecycle import SealState
from seal_registry.models import Seal
from seal_registry.pki import revoke_certificate
from signer.ofd_sealing import seal_ofd
from signer.placement import AtPosition
from signer.ses_signing import sign_data
from tests.registry.conftest import ACTOR, Registry

from .conftest import make_zip, seal_document, zip_entries

pytestmark = pytest.mark.interop


def _expire(registry: Registry, seal: Seal) -> None:
    with transaction(registry.sessions) as s:
        s.execute(update(Seal).where(Seal.id == seal.id).values(valid_end=utcnow() - timedelta(minutes=1)))


def _revoke(registry: Registry, seal: Seal) -> None:
    with transaction(registry.sessions) as s:
        revoke_certificate(s, registry.certificate.id, reason="key_compromise", actor=ACTOR)


@pytest.mark.parametrize(
    ("state", "spoil", "zh", "en"),
    [
        (SealState.SUSPENDED, None, "印章已暂停", "suspended"),
        (SealState.CANCELLED, None, "印章已注销", "cancelled"),
        (SealState.ISSUED, _expire, "印章已过有效期", "expired"),
        (SealState.ISSUED, _revoke, "证书已吊销", "revoked"),
    ],
)
def test_unusable_seal_is_refused_with_nothing_written(
    registry: Registry,
    helloworld: bytes,
    state: SealState,
    spoil: Callable[[Registry, Seal], None] | None,
    zh: str,
    en: str,
) -> None:
    seal = registry.seal_in(state)
    if spoil is not None:
        spoil(registry, seal)
    before = registry.audit_count()
    with pytest.raises(NotUsable) as ofd_refusal:
        seal_document(registry, seal, helloworld, AtPosition(1, 10, 10))
    assert zh in ofd_refusal.value.message_zh and en in ofd_refusal.value.message_en
    assert ofd_refusal.value.status == 409
    with pytest.raises(NotUsable), transaction(registry.sessions) as s:
        sign_data(
            s, registry.keystore, b"data", es_id=seal.es_id, department_id=registry.department.id, actor="x"
        )
    assert registry.audit_count() == before


def test_another_departments_seal_is_refused(registry: Registry, helloworld: bytes) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    other, _cert = registry.new_department(2)
    before = registry.audit_count()
    with pytest.raises(PermissionDenied), transaction(registry.sessions) as s:
        seal_ofd(
            s,
            registry.keystore,
            helloworld,
            es_id=seal.es_id,
            department_id=other.id,
            placement=None,
            actor="department_signer:other",
        )
    assert registry.audit_count() == before


# --- hostile and malformed documents (refused before the database is touched) ---------------------------
def _xxe(hello: bytes) -> bytes:
    entries = zip_entries(hello)
    entries["Doc_0/Document.xml"] = (
        entries["Doc_0/Document.xml"]
        .replace(
            b"?>\n<ofd:Document",
            b'?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<ofd:Document',
        )
        .replace(b"<ofd:MaxUnitID>4", b"<ofd:MaxUnitID>&x;4")
    )
    assert b"ENTITY" in entries["Doc_0/Document.xml"]
    return make_zip(entries)


def _billion_laughs(hello: bytes) -> bytes:
    entries = zip_entries(hello)
    entries["OFD.xml"] = (
        b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody><ofd:DocRoot>&b;</ofd:DocRoot>'
        b"</ofd:DocBody></ofd:OFD>"
    )
    return make_zip(entries)


def _bomb(hello: bytes) -> bytes:
    entries = zip_entries(hello)
    entries["Doc_0/Res/padding.bin"] = bytes(24 * 1024 * 1024)
    bomb = make_zip(entries)
    assert len(bomb) < 100_000  # about 1000:1
    return bomb


def _escape(hello: bytes) -> bytes:
    entries = list(zip_entries(hello).items())
    entries.append(("../evil.xml", b"<x/>"))
    return make_zip(entries)


def _absolute(hello: bytes) -> bytes:
    return make_zip([*zip_entries(hello).items(), ("/etc/cron.d/x", b"x")])


def _not_ofd(_hello: bytes) -> bytes:
    return make_zip({"readme.txt": b"just a zip"})


def _not_zip(_hello: bytes) -> bytes:
    return b"%PDF-1.7\n" + bytes(200)


def _truncated(hello: bytes) -> bytes:
    return hello[: len(hello) // 2]


def _no_pages(hello: bytes) -> bytes:
    entries = zip_entries(hello)
    entries["Doc_0/Document.xml"] = entries["Doc_0/Document.xml"].replace(
        b'<ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/>', b""
    )
    return make_zip(entries)


def _broken_xml(hello: bytes) -> bytes:
    entries = zip_entries(hello)
    entries["OFD.xml"] = entries["OFD.xml"][:-20]
    return make_zip(entries)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (_xxe, MalformedData),
        (_billion_laughs, MalformedData),
        (_bomb, InputTooLarge),
        (_escape, MalformedData),
        (_absolute, MalformedData),
        (_not_ofd, MalformedData),
        (_not_zip, MalformedData),
        (_truncated, MalformedData),
        (_no_pages, MalformedData),
        (_broken_xml, MalformedData),
    ],
)
def test_hostile_documents_are_refused(
    region: Registry, seal: Seal, helloworld: bytes, build: Callable[[bytes], bytes], error: type[EsealError]
) -> None:
    data = build(helloworld)
    before = region.audit_count()
    with pytest.raises(error) as refused:
        seal_document(region, seal, data, AtPosition(1, 10, 10))
    assert refused.value.message_zh and refused.value.message_en
    assert region.audit_count() == before
