"""Issuing: the licence OFD verifies PASSED with the region root, its QR code (decoded independently)
leads to the online check; bad input and crashes in the middle leave nothing behind."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import select

from core.audit import AuditEntry, history
from core.blobstore import BlobStore
from core.db import transaction
from core.errors import Conflict, InvalidInput, NotUsable, PermissionDenied
from licence_store import issuing
from licence_store.catalogue import create_type, update_type
from licence_store.identifier import parse_identifier
from licence_store.issuing import issue_licence
from licence_store.metadata import MetadataInvalid
from licence_store.models import Licence
from licence_store.verification import check_licence, identifier_from_payload
from seal_registry.lifecycle import SealState
from signer import ofd_sealing
from tests.registry.conftest import uscc

from .conftest import (
    BASE_URL,
    SCHEMA,
    SIGNER,
    TYPE_CODE,
    Store,
    assert_passed,
    decode_qr,
    metadata,
    zip_entries,
)

NS = {"ofd": "http://www.ofdspec.org/2016"}


def test_issued_licence_verifies_and_its_qr_leads_to_the_online_check(store: Store) -> None:
    row = store.issue()
    ident = parse_identifier(row.identifier)
    assert (ident.type_code, ident.issuer_code, ident.version) == (TYPE_CODE, store.department.uscc, 1)
    assert row.status == "01" and row.version == 1 and row.previous_identifier is None
    data = store.file(row)
    assert_passed(data, store.trust)

    entries = zip_entries(data)
    payload = decode_qr(entries["Doc_0/Res/qr.png"])
    assert payload == f"{BASE_URL}/v1/licences/check?id={row.identifier}"
    with transaction(store.sessions) as s:
        found, result = check_licence(s, identifier_from_payload(payload), presented=data)
    assert found.id == row.id
    assert result["valid"] is True and result["status"] == "01" and result["version"] == 1
    assert result["file_matches"] is True and result["file_sm3"] == row.ofd_sm3
    assert result["holder_name"] == "北京******公司" and result["holder_name_masked"] is True
    assert result["issuer_name"] == store.department.name and result["issuer_code"] == store.department.uscc
    with transaction(store.sessions) as s:
        _, tampered = check_licence(s, row.identifier, presented=data[:-1] + bytes([data[-1] ^ 1]))
    assert tampered["file_matches"] is False

    # The file names the licence; the page shows the fields through the template's labels.
    info = ET.fromstring(entries["OFD.xml"]).find("ofd:DocBody/ofd:DocInfo", NS)
    assert info is not None
    custom = {c.get("Name"): c.text for c in info.iterfind("ofd:CustomDatas/ofd:CustomData", NS)}
    assert custom["licence.identifier"] == row.identifier and custom["licence.version"] == "001"
    page = entries["Doc_0/Pages/Page_0/Content.xml"].decode()
    for text in ("营业执照", "注册资本（万元）", "有限责任公司", row.identifier, store.department.name):
        assert text in page

    # One transaction: the signature, then the licence, audited in that order.
    with store.sessions() as s:
        entries_log = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(2)))
    assert [e.action for e in entries_log] == ["licence.issued", "signature.made"]
    assert entries_log[0].details_dict()["file_sm3"] == row.ofd_sm3
    assert entries_log[1].details_dict()["es_id"] == store.seal.es_id
    with store.sessions() as s:
        assert [e.action for e in history(s, "licence", row.base_identifier)] == ["licence.issued"]


def test_serials_follow_on_and_numbers_are_unique(store: Store) -> None:
    first = store.issue(1)
    second = store.issue(2)
    assert parse_identifier(first.identifier).serial[:10] == parse_identifier(second.identifier).serial[:10]
    assert (
        int(parse_identifier(second.identifier).serial[-8:])
        == int(parse_identifier(first.identifier).serial[-8:]) + 1
    )
    before = store.snapshot()
    with pytest.raises(Conflict) as caught:
        store.issue(1)
    assert caught.value.details["identifier"] == first.identifier
    assert store.snapshot() == before


def test_invalid_metadata_changes_nothing(store: Store) -> None:
    store.issue(1)
    before = store.snapshot()
    bad = metadata(2, holder_code_type="nope")
    bad["fields"] = {"registered_capital": "lots"}
    with pytest.raises(MetadataInvalid) as caught, transaction(store.sessions) as s:
        issue_licence(
            s,
            store.services,
            type_ref=TYPE_CODE,
            department_id=store.department.id,
            metadata=bad,
            actor=SIGNER,
        )
    fields = {e["field"] for e in caught.value.details["errors"]}
    assert fields == {"holder_code_type", "fields.company_type", "fields.registered_capital"}
    assert store.snapshot() == before


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("power cut")


@pytest.mark.parametrize("where", ["audit", "record"])
def test_a_crash_after_sealing_leaves_nothing_half_issued(
    store: Store, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    first = store.issue(1)
    before = store.snapshot()
    sealed: list[bytes] = []
    real_seal = ofd_sealing.seal_ofd

    def seal_then_remember(*args: Any, **kwargs: Any) -> bytes:
        out = real_seal(*args, **kwargs)
        sealed.append(out)
        return out

    monkeypatch.setattr(issuing, "seal_ofd", seal_then_remember)
    if where == "audit":
        monkeypatch.setattr(issuing, "audit_append", _fail)  # the licence.issued entry, the last write
    else:
        monkeypatch.setattr(issuing, "add_event", _fail)  # after the row is added, before its audit
    with pytest.raises(RuntimeError, match="power cut"):
        store.issue(2)
    assert len(sealed) == 1  # it did get as far as sealing
    after = store.snapshot()
    assert after.counts == before.counts and after.head == before.head and after.serials == before.serials
    with store.sessions() as s:
        assert s.scalar(select(Licence.identifier)) == first.identifier
        signatures = s.scalars(select(AuditEntry).where(AuditEntry.action == "signature.made")).all()
    assert len(signatures) == 1  # only the first licence's
    # At most an unreferenced blob remains (content-addressed, never served without a record).
    assert after.blobs <= before.blobs + 1
    monkeypatch.undo()
    again = store.issue(2)
    assert parse_identifier(again.identifier).serial[-8:] == "00000002"  # the serial was not used up


def test_seal_choice_and_refusals(store: Store) -> None:
    before = store.snapshot()
    # The type needs an official seal; a contract seal of the department is refused by type.
    contract = store.reg.seal_in(SealState.ISSUED, seal_type_key="contract")
    with pytest.raises(InvalidInput, match="official"), transaction(store.sessions) as s:
        issue_licence(
            s,
            store.services,
            type_ref=TYPE_CODE,
            department_id=store.department.id,
            metadata=metadata(),
            actor=SIGNER,
            es_id=contract.es_id,
        )
    # Another department's official seal: authorize_use refuses it.
    other_seal = store.reg.seal_in(
        SealState.ISSUED, seal_type_key="official", department_id=store.platform.id
    )
    with pytest.raises(PermissionDenied), transaction(store.sessions) as s:
        issue_licence(
            s,
            store.services,
            type_ref=TYPE_CODE,
            department_id=store.department.id,
            metadata=metadata(),
            actor=SIGNER,
            es_id=other_seal.es_id,
        )
    # A suspended seal cannot sign, and with it suspended there is no usable one to choose.
    store.reg.act(store.seal.id, "suspend")
    with pytest.raises(NotUsable), transaction(store.sessions) as s:
        issue_licence(
            s,
            store.services,
            type_ref=TYPE_CODE,
            department_id=store.department.id,
            metadata=metadata(),
            actor=SIGNER,
        )
    after = store.snapshot()
    assert (after.counts["licences"], after.serials) == (before.counts["licences"], before.serials)
    store.reg.act(store.seal.id, "resume")
    assert store.issue().es_id == store.seal.es_id


def test_only_listed_issuers_may_issue_and_retired_types_refuse(store: Store) -> None:
    with transaction(store.sessions) as s:
        update_type(s, TYPE_CODE, actor="admin:t", issuing_authorities=[uscc(77)])
    with pytest.raises(PermissionDenied):
        store.issue()
    with transaction(store.sessions) as s:
        update_type(s, TYPE_CODE, actor="admin:t", issuing_authorities=[store.department.uscc], active=False)
    with pytest.raises(Conflict, match="retired"):
        store.issue()
    with transaction(store.sessions) as s:
        row = update_type(s, TYPE_CODE, actor="admin:t", active=True)
    assert row.revision == 4
    assert store.issue().issuer_code == store.department.uscc
    with pytest.raises(Conflict), transaction(store.sessions) as s:
        create_type(
            s,
            type_code=TYPE_CODE,
            name="x",
            defining_authority_name="y",
            metadata_schema=SCHEMA,
            seal_type="official",
            actor="a",
        )


def test_template_layout_and_long_term_validity(store: Store) -> None:
    with transaction(store.sessions) as s:
        create_type(
            s,
            type_code=uscc(901) + "002",
            name="食品经营许可证",
            defining_authority_name="国家市场监督管理总局",
            metadata_schema={
                "type": "object",
                "properties": {"scope": {"type": "string", "title": "经营项目"}},
            },
            template={
                "title": "食品经营许可证",
                "fields": [{"key": "scope", "label": "经营项目"}],
                "page": {"width": 297, "height": 210},
                "seal": {"x": 200, "y": 140},
                "footer": "国家市场监督管理总局监制",
            },
            seal_type="official",
            actor="admin:t",
        )
        row = issue_licence(
            s,
            store.services,
            type_ref=uscc(901) + "002",
            department_id=store.department.id,
            metadata=metadata(9, fields={"scope": "预包装食品销售"}),
            actor=SIGNER,
        )
    assert row.valid_until is None  # the type has no default validity: long-term
    data = store.file(row)
    assert_passed(data, store.trust)
    entries = zip_entries(data)
    assert b"0 0 297 210" in entries["Doc_0/Document.xml"]
    sig = ET.fromstring(entries["Doc_0/Signs/Sign_0/Signature.xml"])
    stamp = sig.find("ofd:SignedInfo/ofd:StampAnnot", NS)
    assert stamp is not None and stamp.get("Boundary", "").startswith("200 140 ")
    page = entries["Doc_0/Pages/Page_0/Content.xml"].decode()
    assert "长期" in page and "预包装食品销售" in page and "国家市场监督管理总局监制" in page


def test_blob_store_keeps_the_file_by_sm3(store: Store) -> None:
    row = store.issue()
    assert BlobStore(store.blobs.root).get(row.ofd_sm3) == store.file(row)
    path = store.blobs.path(row.ofd_sm3)
    assert path.name == row.ofd_sm3 and path.stat().st_size == row.ofd_size
