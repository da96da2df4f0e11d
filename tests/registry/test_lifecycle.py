"""The seal lifecycle through the service functions, on SQLite and PostgreSQL: every state × action,
applications (esID, certificate and picture checks) and renewal."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.audit import AuditEntry
from core.db import transaction, utcnow
from core.errors import Conflict, IllegalTransition, InvalidInput, MalformedData, NotFound, NotUsable
from seal_registry import seals
from seal_registry.lifecycle import SealState
from seal_registry.models import PkiCertificate, Seal, SealEvent
from seal_registry.pki import revoke_certificate

from .conftest import ACTOR, PICTURE, Registry

S = SealState
ACTIONS = ("review", "reject", "make", "file", "issue", "suspend", "resume", "cancel", "renew")

# Written out independently of seal_registry.lifecycle, so a wrong rule there fails here.
LEGAL: dict[tuple[SealState, str], SealState] = {
    (S.APPLIED, "review"): S.REVIEWED,
    (S.APPLIED, "reject"): S.REJECTED,
    (S.REVIEWED, "reject"): S.REJECTED,
    (S.REVIEWED, "make"): S.MADE,
    (S.MADE, "file"): S.FILED,
    (S.FILED, "issue"): S.ISSUED,
    (S.ISSUED, "suspend"): S.SUSPENDED,
    (S.SUSPENDED, "resume"): S.ISSUED,
    **{(s, "cancel"): S.CANCELLED for s in (S.APPLIED, S.REVIEWED, S.MADE, S.FILED, S.ISSUED, S.SUSPENDED)},
    # renew leaves the old seal as it is and creates its successor in "applied"
    (S.ISSUED, "renew"): S.ISSUED,
    (S.SUSPENDED, "renew"): S.SUSPENDED,
}
AUDIT_ACTION = {
    "review": "seal.reviewed",
    "reject": "seal.rejected",
    "make": "seal.made",
    "file": "seal.filed",
    "issue": "seal.issued",
    "suspend": "seal.suspended",
    "resume": "seal.resumed",
    "cancel": "seal.cancelled",
    "renew": "seal.renewal_applied",
}
ES_ID = re.compile(r"^110000(\d{2})(\d{6})$")


def _row(registry: Registry, seal_id: str) -> tuple[Seal, list[SealEvent]]:
    with registry.sessions() as s:
        seal = s.get(Seal, seal_id)
        assert seal is not None
        events = list(s.scalars(select(SealEvent).where(SealEvent.seal_id == seal_id).order_by(SealEvent.id)))
        s.expunge_all()
        return seal, events


@pytest.mark.parametrize("state", list(SealState))
def test_every_action_from_every_state(registry: Registry, state: SealState) -> None:
    for action in ACTIONS:
        seal = registry.seal_in(state)
        before, events_before = _row(registry, seal.id)
        audits_before = registry.audit_count()
        reason = f"matrix {state.value}/{action}"
        where = f"{state.value} --{action}-->"
        expected = LEGAL.get((state, action))
        if expected is None:
            with pytest.raises(IllegalTransition) as info:
                registry.act(seal.id, action, actor="seal_officer:matrix", reason=reason)
            assert info.value.details["state"] == state.value, where
            after, events_after = _row(registry, seal.id)
            assert (after.state, after.revision, after.state_changed_at) == (
                before.state,
                before.revision,
                before.state_changed_at,
            ), where
            assert after.seal_der == before.seal_der, where
            assert len(events_after) == len(events_before), where
            assert registry.audit_count() == audits_before, where
            continue

        result = registry.act(seal.id, action, actor="seal_officer:matrix", reason=reason)
        after, events_after = _row(registry, seal.id)
        assert after.state == expected.value, where
        assert registry.audit_count() == audits_before + 1, where
        audit = registry.last_audit()
        assert audit.action == AUDIT_ACTION[action], where
        assert audit.actor == "seal_officer:matrix", where
        assert audit.details_dict()["reason"] == reason, where
        if action == "renew":
            assert result.id != seal.id and result.state == S.APPLIED.value, where
            assert result.previous_seal_id == seal.id, where
            assert len(events_after) == len(events_before), where
            assert audit.subject_id == result.id, where
            continue
        assert audit.subject_id == seal.id, where
        assert audit.details_dict()["from"] == state.value and audit.details_dict()["to"] == expected.value
        assert after.revision == before.revision + 1, where
        assert len(events_after) == len(events_before) + 1, where
        event = events_after[-1]
        assert (event.from_state, event.to_state, event.actor, event.reason) == (
            state.value,
            expected.value,
            "seal_officer:matrix",
            reason,
        ), where
        assert event.at == after.state_changed_at, where


def test_application_assigns_es_id_and_history(registry: Registry) -> None:
    a = registry.apply(seal_type_key="contract")
    b = registry.apply(seal_type_key="contract")
    c = registry.apply(seal_type_key="finance")
    ma, mb, mc = (ES_ID.match(x.es_id) for x in (a, b, c))
    assert ma and mb and mc
    assert ma.group(1) == mb.group(1) == "02" and mc.group(1) == "05"
    assert int(mb.group(2)) == int(ma.group(2)) + 1
    assert mc.group(2) == "000001"  # each (region, type) has its own counter
    assert a.state == "applied" and a.signer_certificate_id == registry.certificate.id
    _seal, events = _row(registry, a.id)
    assert [(e.from_state, e.to_state, e.actor, e.reason) for e in events] == [
        (None, "applied", ACTOR, "test application")
    ]
    with registry.sessions() as s:
        entry = s.scalar(
            select(AuditEntry).where(AuditEntry.subject_id == a.id, AuditEntry.action == "seal.applied")
        )
        assert entry is not None and entry.details_dict()["es_id"] == a.es_id
    # The esID stays what it was through the lifecycle
    made = registry.seal_in(SealState.ISSUED)
    assert ES_ID.match(made.es_id)
    with registry.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Seal).where(Seal.es_id == made.es_id)) == 1


def test_application_refuses_bad_certificates_and_writes_nothing(registry: Registry) -> None:
    other, other_cert = registry.new_department(2)
    assert other_cert is not None
    count = registry.audit_count()
    with pytest.raises(InvalidInput, match="不是部门"):
        registry.apply(signer_certificate_id=other_cert.id)
    with pytest.raises(NotFound):
        registry.apply(signer_certificate_id=99999)
    with transaction(registry.sessions) as s:
        revoke_certificate(s, other_cert.id, reason="key_compromise", actor=ACTOR)
    count = registry.audit_count()
    with pytest.raises(NotUsable, match="吊销"):
        registry.apply(department_id=other.id, signer_certificate_id=other_cert.id)
    with pytest.raises(NotUsable, match="没有可用的签章者证书"):
        registry.apply(department_id=other.id)  # its only certificate is revoked
    with transaction(registry.sessions) as s:
        s.execute(
            update(PkiCertificate)
            .where(PkiCertificate.id == registry.certificate.id)
            .values(not_after=utcnow() - timedelta(days=1))
        )
    with pytest.raises(NotUsable, match="过期"):
        registry.apply(signer_certificate_id=registry.certificate.id)
    assert registry.audit_count() == count
    with registry.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Seal)) == 0


def test_application_checks_input(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="未知印章类型"):
        registry.apply(seal_type_key="nonsense")
    with pytest.raises(InvalidInput):
        registry.apply(valid_days=0)
    with pytest.raises(NotFound):
        registry.apply(department_id="no-such-department")
    with pytest.raises(MalformedData):
        registry.apply(picture=seals.PictureUpload(b"\xff\xd8\xff" + b"\x00" * 50, "png"))
    with pytest.raises(MalformedData):
        registry.apply(picture=seals.PictureUpload(PICTURE[:60], "png"))
    with pytest.raises(InvalidInput):
        registry.apply(picture=seals.PictureUpload(PICTURE, "png", width_mm=500))
    with pytest.raises(InvalidInput, match="名章"):
        registry.apply(seal_type_key="legal_representative", picture=None)
    with pytest.raises(InvalidInput, match="理由"):
        seal = registry.apply()
        registry.act(seal.id, "reject", reason="  ")
    assert registry.apply(picture=None, seal_type_key="legal_representative", name="张三").name == "张三"


def test_generated_pictures_follow_the_seal_type(registry: Registry) -> None:
    from seal_registry.picture import validate_picture

    official = registry.apply(seal_type_key="official", picture=None)
    invoice = registry.apply(seal_type_key="invoice", picture=None)
    assert official.name == registry.department.name
    assert invoice.name == registry.department.name + "发票专用章"
    for seal, size in ((official, (42, 42)), (invoice, (40, 30))):
        info = validate_picture(seal.picture, "png")
        assert seal.picture_type == "png" and (seal.width_mm, seal.height_mm) == size
        assert info.width_px / info.height_px == pytest.approx(size[0] / size[1], rel=0.02)


def test_renewal_cancels_the_old_seal_when_issued(registry: Registry) -> None:
    old = registry.seal_in(SealState.ISSUED)
    new = registry.act(old.id, "renew", reason="expiring")
    assert (new.department_id, new.seal_type, new.name) == (old.department_id, old.seal_type, old.name)
    assert new.es_id != old.es_id and ES_ID.match(new.es_id)
    assert new.picture == old.picture
    with pytest.raises(Conflict, match="换发"):
        registry.act(old.id, "renew")  # one renewal at a time
    for action in ("review", "make", "file"):
        registry.act(new.id, action)
        assert _row(registry, old.id)[0].state == "issued"  # still usable until the successor is issued
    count = registry.audit_count()
    registry.act(new.id, "issue", actor="seal_officer:issuer")
    old_row, old_events = _row(registry, old.id)
    assert old_row.state == "cancelled"
    assert (old_events[-1].from_state, old_events[-1].to_state) == ("issued", "cancelled")
    assert old_events[-1].reason == f"renewed by {new.es_id}"
    assert old_events[-1].actor == "seal_officer:issuer"
    assert _row(registry, new.id)[0].state == "issued"
    with registry.sessions() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.seq > count).order_by(AuditEntry.seq)))
    assert [(e.action, e.subject_id) for e in entries] == [
        ("seal.issued", new.id),
        ("seal.cancelled", old.id),
    ]
    # The old seal is cancelled for good; the new one can be renewed in turn
    with pytest.raises(IllegalTransition):
        registry.act(old.id, "renew")


def test_renewal_issue_after_manual_cancel_and_rollback(registry: Registry) -> None:
    old = registry.seal_in(SealState.SUSPENDED)
    new = registry.act(old.id, "renew")
    registry.act(old.id, "cancel", reason="lost")
    for action in ("review", "make", "file", "issue"):
        registry.act(new.id, action)
    old_row, old_events = _row(registry, old.id)
    assert old_row.state == "cancelled" and old_events[-1].reason == "lost"  # not cancelled twice
    # A failure after a transition rolls the whole unit back: no state change, event or audit entry
    seal = registry.seal_in(SealState.APPLIED)
    count = registry.audit_count()
    with pytest.raises(RuntimeError), transaction(registry.sessions) as s:
        seals.review(s, seal.id, actor=ACTOR)
        raise RuntimeError("caller failed")
    row, events = _row(registry, seal.id)
    assert row.state == "applied" and len(events) == 1 and registry.audit_count() == count
