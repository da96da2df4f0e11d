"""Holder authorisation, annotated copies, the access log and objections (service level)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from core.audit import AuditEntry, verify_chain
from core.db import transaction, utcnow
from core.errors import IllegalTransition, InvalidInput, NotFound
from licence_store import grants, lifecycle, objections
from licence_store.access_log import Accessor, AccessQuery, query
from licence_store.grants import GrantRefused
from licence_store.models import LicenceAccess, LicenceGrant
from licence_store.sharing import LicenceNotUsable, read_licence, use_licence
from licence_store.verification import may_reveal_holder
from verify import verify_bytes

from .conftest import HOLDER_USCC, Store, assert_passed, utc, zip_entries

PLATFORM = "department_signer:platform"


def _platform(store: Store) -> Accessor:
    return Accessor(PLATFORM, department_id=store.platform.id, client="10.0.0.9")


def _grant(store: Store, identifier: str, *, days: float = 30, original: bool = False) -> LicenceGrant:
    with transaction(store.sessions) as s:
        return grants.create_grant(
            s,
            holder_code=HOLDER_USCC,
            identifier=identifier,
            grantee_department_id=store.platform.id,
            purpose="办理招投标资格审查",
            valid_until=utc(days),
            allow_original=original,
            actor=f"holder:{HOLDER_USCC}",
        )


def _log(store: Store) -> list[LicenceAccess]:
    with store.sessions() as s:
        return list(s.scalars(select(LicenceAccess).order_by(LicenceAccess.id)))


def _refused(store: Store, identifier: str, reason: str, **kwargs: object) -> None:
    log_before = len(_log(store))
    with store.sessions() as s:
        head = s.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    with pytest.raises(GrantRefused) as caught:
        use_licence(store.sessions, store.services, identifier=identifier, who=_platform(store), **kwargs)  # type: ignore[arg-type]
    assert caught.value.status == 403 and caught.value.details["reason"] == reason
    log = _log(store)
    assert len(log) == log_before + 1
    entry = log[-1]
    assert (entry.action, entry.outcome, entry.actor_department_id) == ("denied", "denied", store.platform.id)
    with store.sessions() as s:
        audit = s.get(AuditEntry, entry.audit_seq)
        assert audit is not None and audit.seq == (head or 0) + 1
        assert audit.action == "licence.access_denied" and audit.details_dict()["reason"] == reason


def test_no_grant_then_grant_then_expired_grant(store: Store) -> None:
    row = store.issue()
    _refused(store, row.identifier, "no_grant")
    _refused(store, row.identifier, "no_grant", want_original=True)

    grant = _grant(store, row.identifier)
    copy = use_licence(store.sessions, store.services, identifier=row.identifier, who=_platform(store))
    assert copy.kind == "copy" and copy.grant_id == grant.id
    assert_passed(copy.data, store.trust)
    report = verify_bytes(copy.data, trust=store.trust)
    assert [sig.seal.es_id for sig in report.signatures if sig.seal] == [_service_es_id(store)]
    entries = zip_entries(copy.data)
    assert entries["Doc_0/Attachs/licence.ofd"] == store.file(row)  # the original, byte for byte
    assert_passed(entries["Doc_0/Attachs/licence.ofd"], store.trust)
    pages = "".join(v.decode() for k, v in entries.items() if k.endswith("Content.xml"))
    assert "办理招投标资格审查" in pages and store.platform.name in pages and grant.id in pages
    last = _log(store)[-1]
    assert (last.action, last.grant_id, last.purpose) == ("copy", grant.id, "办理招投标资格审查")

    # The grant allows copies only.
    _refused(store, row.identifier, "original_not_granted", want_original=True)
    with pytest.raises(InvalidInput):
        use_licence(
            store.sessions,
            store.services,
            identifier=row.identifier,
            who=_platform(store),
            purpose="别的用途",
        )

    # Expired: the same grant, its end moved into the past.
    with transaction(store.sessions) as s:
        s.execute(update(LicenceGrant).where(LicenceGrant.id == grant.id).values(valid_until=utc(-1)))
    _refused(store, row.identifier, "grant_expired", grant_id=grant.id)
    _refused(store, row.identifier, "no_grant")


def _service_es_id(store: Store) -> str:
    from licence_store.sharing import get_service_seal

    with store.sessions() as s:
        return get_service_seal(s).es_id


def test_original_with_grant_withdrawal_and_revoked_licence(store: Store) -> None:
    row = store.issue()
    grant = _grant(store, row.identifier, original=True)
    got = use_licence(
        store.sessions, store.services, identifier=row.identifier, who=_platform(store), want_original=True
    )
    assert got.data == store.file(row) and got.kind == "original"
    # A grant follows the licence to its new version.
    with transaction(store.sessions) as s:
        new = lifecycle.change(
            s, store.services, row.identifier, {"fields": {"registered_capital": 9}}, actor="t"
        )
    got = use_licence(
        store.sessions, store.services, identifier=row.identifier, who=_platform(store), want_original=True
    )
    assert got.identifier == new.identifier and got.data == store.file(new)
    # Someone else's grant id does not work, a withdrawn one neither.
    with transaction(store.sessions) as s:
        grants.withdraw_grant(s, grant.id, holder_code=HOLDER_USCC, actor="holder:x")
    _refused(store, row.identifier, "grant_withdrawn", grant_id=grant.id)
    with pytest.raises(NotFound), transaction(store.sessions) as s:
        grants.withdraw_grant(s, grant.id, holder_code="someone-else", actor="holder:y")
    # A valid grant does not make a revoked licence usable.
    _grant(store, row.identifier)
    with transaction(store.sessions) as s:
        lifecycle.revoke(s, new.identifier, actor="t", reason="吊销")
    with pytest.raises(LicenceNotUsable):
        use_licence(store.sessions, store.services, identifier=row.identifier, who=_platform(store))
    assert _log(store)[-1].outcome == "denied"


def test_issuer_and_holder_need_no_grant_and_names_are_revealed_to_them(store: Store) -> None:
    row = store.issue()
    issuer = Accessor("department_signer:issuer", department_id=store.department.id)
    assert use_licence(
        store.sessions, store.services, identifier=row.identifier, who=issuer, want_original=True
    ).data
    holder = Accessor(f"holder:{HOLDER_USCC}")
    copy = use_licence(
        store.sessions,
        store.services,
        identifier=row.identifier,
        who=holder,
        holder_code=HOLDER_USCC,
        purpose="自用",
    )
    assert_passed(copy.data, store.trust)
    with pytest.raises(InvalidInput):  # a copy without a grant needs a purpose
        use_licence(
            store.sessions, store.services, identifier=row.identifier, who=holder, holder_code=HOLDER_USCC
        )
    record = read_licence(store.sessions, row.identifier, who=holder, holder_code=HOLDER_USCC)
    assert record["holder_code"] == HOLDER_USCC
    with pytest.raises(GrantRefused):
        read_licence(store.sessions, row.identifier, who=_platform(store))
    with store.sessions() as s:
        assert may_reveal_holder(s, row, holder_code=HOLDER_USCC, department_id=None, privileged=False)
        assert may_reveal_holder(
            s, row, holder_code=None, department_id=store.department.id, privileged=False
        )
        assert not may_reveal_holder(
            s, row, holder_code=None, department_id=store.platform.id, privileged=False
        )
        assert not may_reveal_holder(s, row, holder_code="x", department_id=None, privileged=False)
    _grant(store, row.identifier)
    with store.sessions() as s:
        assert may_reveal_holder(s, row, holder_code=None, department_id=store.platform.id, privileged=False)


def test_access_log_queries_and_chain(store: Store) -> None:
    row = store.issue()
    other = store.issue(
        2, holder_code="11010519491231002X", holder_code_type="citizen_id", holder_name="张三"
    )
    _refused(store, row.identifier, "no_grant")
    _grant(store, row.identifier)
    use_licence(store.sessions, store.services, identifier=row.identifier, who=_platform(store))
    read_licence(store.sessions, other.identifier, who=Accessor("auditor:a"), privileged=True)
    with store.sessions() as s:
        mine, total = query(s, AccessQuery(holder_code=HOLDER_USCC))
        assert total == 2 and [r.action for r in mine] == ["copy", "denied"]
        by_licence, _ = query(s, AccessQuery(base_identifier=other.base_identifier))
        assert [r.action for r in by_licence] == ["read"]
        by_platform, _ = query(s, AccessQuery(department_id=store.platform.id))
        assert {r.action for r in by_platform} == {"copy", "denied"}
        _by_issuer, n = query(s, AccessQuery(department_id=store.department.id))
        assert n == 3
        _window, n = query(
            s, AccessQuery(since=utcnow() - dt.timedelta(minutes=5), until=utcnow() + dt.timedelta(minutes=5))
        )
        assert n == 3
        empty, n = query(s, AccessQuery(until=utcnow() - dt.timedelta(days=1)))
        assert n == 0 and empty == []
        with pytest.raises(InvalidInput):
            query(s, AccessQuery(action="steal"))
        for r in mine:
            audit = s.get(AuditEntry, r.audit_seq)
            assert audit is not None and audit.subject_id == row.base_identifier
        assert verify_chain(s).ok


def test_grant_rules(store: Store) -> None:
    row = store.issue()
    with pytest.raises(NotFound), transaction(store.sessions) as s:  # not the holder's licence
        grants.create_grant(
            s,
            holder_code="someone",
            identifier=row.identifier,
            grantee_department_id=store.platform.id,
            purpose="x",
            valid_until=utc(1),
            actor="h",
        )
    for bad in (utc(-1), utc(4000), dt.datetime(2099, 1, 1)):
        with pytest.raises(InvalidInput), transaction(store.sessions) as s:
            grants.create_grant(
                s,
                holder_code=HOLDER_USCC,
                identifier=row.identifier,
                grantee_department_id=store.platform.id,
                purpose="x",
                valid_until=bad,
                actor="h",
            )
    with pytest.raises(InvalidInput), transaction(store.sessions) as s:
        grants.create_grant(
            s,
            holder_code=HOLDER_USCC,
            identifier=row.identifier,
            grantee_department_id=store.platform.id,
            purpose=" ",
            valid_until=utc(1),
            actor="h",
        )
    grant = _grant(store, row.identifier)
    with store.sessions() as s:
        listed = grants.list_grants(s, holder_code=HOLDER_USCC)
        assert [grants.grant_dict(g)["state"] for g in listed] == ["active"] and listed[0].id == grant.id


def test_objections_accept_with_correction_and_reject(store: Store) -> None:
    row = store.issue()
    with transaction(store.sessions) as s:
        filed = objections.file_objection(
            s,
            identifier=row.identifier,
            field="fields.registered_capital",
            claim="注册资本应为 200 万元",
            evidence="股东会决议第 3 号",
            filer_kind="holder",
            filer_ref=HOLDER_USCC,
            actor="holder:x",
        )
    assert filed.state == "open" and filed.deadline > utcnow() + dt.timedelta(days=14)
    with pytest.raises(NotFound), transaction(store.sessions) as s:  # only the issuer decides
        objections.reject_objection(s, filed.id, reason="x", actor="t", department_id=store.platform.id)
    with transaction(store.sessions) as s:
        decided, new = objections.accept_objection(
            s,
            store.services,
            filed.id,
            corrections={"fields": {"registered_capital": 200}},
            actor="department_signer:t",
            department_id=store.department.id,
        )
    assert decided.state == "accepted" and decided.corrected_identifier == new.identifier
    assert new.version == 2 and '"registered_capital":200' in new.fields_json
    assert_passed(store.file(new), store.trust)
    with pytest.raises(IllegalTransition), transaction(store.sessions) as s:
        objections.reject_objection(s, filed.id, reason="x", actor="t")

    # A department may object only to a licence it was granted; then the issuer rejects.
    with pytest.raises(NotFound), transaction(store.sessions) as s:
        objections.file_objection(
            s,
            identifier=new.identifier,
            field="holder_name",
            claim="x",
            filer_kind="department",
            filer_ref=store.platform.id,
            actor="p",
        )
    _grant(store, new.identifier)
    with transaction(store.sessions) as s:
        second = objections.file_objection(
            s,
            identifier=new.identifier,
            field="holder_name",
            claim="名称有误",
            filer_kind="department",
            filer_ref=store.platform.id,
            actor="p",
        )
    with pytest.raises(InvalidInput), transaction(store.sessions) as s:
        objections.reject_objection(s, second.id, reason="", actor="t")
    with transaction(store.sessions) as s:
        rejected = objections.reject_objection(
            s, second.id, reason="与登记信息一致", actor="t", department_id=store.department.id
        )
    assert rejected.state == "rejected"
    with pytest.raises(InvalidInput), transaction(store.sessions) as s:
        objections.file_objection(
            s,
            identifier=new.identifier,
            field="no_such_field",
            claim="x",
            filer_kind="holder",
            filer_ref=HOLDER_USCC,
            actor="h",
        )
    # Overdue: an open objection past its deadline.
    with transaction(store.sessions) as s:
        third = objections.file_objection(
            s,
            identifier=new.identifier,
            field="other",
            claim="地址有误",
            filer_kind="holder",
            filer_ref=HOLDER_USCC,
            actor="h",
        )
    with store.sessions() as s:
        assert objections.list_objections(s, overdue_only=True) == []
        later = utcnow() + dt.timedelta(days=16)
        overdue = objections.list_objections(s, overdue_only=True, now=later)
        assert [o.id for o in overdue] == [third.id]
        assert objections.objection_dict(overdue[0], later)["overdue"] is True
        actions = [
            e.action
            for e in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("licence.objection%"))
                .order_by(AuditEntry.seq)
            )
        ]
    assert actions == [
        "licence.objection_filed",
        "licence.objection_accepted",
        "licence.objection_filed",
        "licence.objection_rejected",
        "licence.objection_filed",
    ]
