"""The licence lifecycle: change and renewal make new sealed versions (the old one reports superseded),
withholding/return/revocation/cancellation change the status the online check reports, expiry is
automatic; illegal steps change nothing; every step is audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select

from core.audit import history
from core.db import transaction
from core.errors import Conflict, IllegalTransition, InvalidInput, PermissionDenied
from licence_store import lifecycle
from licence_store.identifier import parse_identifier
from licence_store.metadata import MetadataInvalid, today_in_china
from licence_store.models import Licence, LicenceEvent
from licence_store.records import current_version, get_licence
from licence_store.verification import check_licence

from .conftest import Store, assert_passed, decode_qr, zip_entries


def _check(store: Store, identifier: str) -> dict[str, object]:
    with transaction(store.sessions) as s:
        return check_licence(s, identifier)[1]


def test_change_makes_a_new_sealed_version_and_supersedes_the_old(store: Store) -> None:
    old = store.issue()
    with transaction(store.sessions) as s:
        new = lifecycle.change(
            s,
            store.services,
            old.identifier,
            {
                "holder_name": "北京新名称科技有限公司",
                "fields": {"registered_capital": 500, "business_scope": None},
            },
            actor="department_signer:t",
            reason="名称变更",
        )
    old_id, new_id = parse_identifier(old.identifier), parse_identifier(new.identifier)
    assert new_id.base == old_id.base and (old_id.version, new_id.version) == (1, 2)
    assert new_id.check != old_id.check or new_id.body != old_id.body
    assert new.previous_identifier == old.identifier and new.status == "01"
    assert new.issue_date == today_in_china() and new.valid_until == old.valid_until
    data = store.file(new)
    assert_passed(data, store.trust)
    assert new.ofd_sm3 != old.ofd_sm3
    assert decode_qr(zip_entries(data)["Doc_0/Res/qr.png"]).endswith(f"?id={new.identifier}")
    page = zip_entries(data)["Doc_0/Pages/Page_0/Content.xml"].decode()
    assert "北京新名称科技有限公司" in page and "500" in page and "软件开发" not in page

    stale = _check(store, old.identifier)
    assert stale["superseded"] is True and stale["valid"] is False and stale["status"] == "99"
    assert stale["superseded_by"] == new.identifier and stale["latest_identifier"] == new.identifier
    assert stale["latest_status"] == "01"
    fresh = _check(store, new.identifier)
    assert fresh["valid"] is True and fresh["previous_identifier"] == old.identifier
    # The superseded version still verifies as a file: it was valid when sealed.
    assert_passed(store.file(old), store.trust)

    with pytest.raises(Conflict, match="superseded"), transaction(store.sessions) as s:
        lifecycle.revoke(s, old.identifier, actor="t", reason="x")
    with store.sessions() as s:
        actions = [e.action for e in history(s, "licence", old.base_identifier)]
        assert actions == ["licence.issued", "licence.changed"]
        events = s.scalars(select(LicenceEvent).order_by(LicenceEvent.id)).all()
        assert [(e.action, e.from_status, e.to_status) for e in events] == [
            ("issue", None, "01"),
            ("superseded_by_change", "01", "99"),
            ("change", None, "01"),
        ]


def test_change_refusals_change_nothing(store: Store) -> None:
    old = store.issue()
    other = store.issue(2)
    before = store.snapshot()
    with pytest.raises(MetadataInvalid), transaction(store.sessions) as s:
        lifecycle.change(s, store.services, old.identifier, {"fields": {"registered_capital": -1}}, actor="t")
    with pytest.raises(InvalidInput), transaction(store.sessions) as s:
        lifecycle.change(s, store.services, old.identifier, {}, actor="t")
    with pytest.raises(Conflict), transaction(store.sessions) as s:  # the number of another licence
        lifecycle.change(
            s, store.services, old.identifier, {"licence_number": other.licence_number}, actor="t"
        )
    with pytest.raises(PermissionDenied), transaction(store.sessions) as s:
        lifecycle.change(
            s,
            store.services,
            old.identifier,
            {"holder_name": "x"},
            actor="t",
            department_id=store.platform.id,
        )
    assert store.snapshot() == before


def test_status_actions_and_what_the_check_says(store: Store) -> None:
    row = store.issue()
    ident = row.identifier

    def act(fn: Callable[..., Licence], reason: str = "依法处理") -> str:
        with transaction(store.sessions) as s:
            return fn(
                s, ident, actor="department_signer:t", reason=reason, department_id=store.department.id
            ).status

    assert act(lifecycle.withhold) == "02"
    result = _check(store, ident)
    assert (result["status"], result["status_en"], result["valid"]) == ("02", "withheld", False)
    assert act(lifecycle.return_licence, "") == "01"
    assert _check(store, ident)["valid"] is True
    with pytest.raises(InvalidInput, match="reason"), transaction(store.sessions) as s:
        lifecycle.revoke(s, ident, actor="t", reason=" ")
    assert act(lifecycle.revoke) == "03"
    result = _check(store, ident)
    assert (result["status"], result["status_zh"], result["valid"]) == ("03", "撤销", False)
    before = store.snapshot()
    for fn in (lifecycle.withhold, lifecycle.return_licence, lifecycle.cancel, lifecycle.revoke):
        with pytest.raises(IllegalTransition), transaction(store.sessions) as s:
            fn(s, ident, actor="t", reason="again")
    with pytest.raises(IllegalTransition), transaction(store.sessions) as s:
        lifecycle.change(s, store.services, ident, {"holder_name": "x"}, actor="t")
    assert store.snapshot() == before
    with store.sessions() as s:
        actions = [e.action for e in history(s, "licence", row.base_identifier)]
    assert actions == ["licence.issued", "licence.withheld", "licence.returned", "licence.revoked"]

    cancelled = store.issue(2)
    with transaction(store.sessions) as s:
        lifecycle.cancel(s, cancelled.identifier, actor="t", reason="申请注销")
    assert _check(store, cancelled.identifier)["status"] == "04"
    with pytest.raises(PermissionDenied), transaction(store.sessions) as s:
        lifecycle.withhold(
            s, store.issue(3).identifier, actor="t", reason="x", department_id=store.platform.id
        )


def test_expiry_and_renewal(store: Store) -> None:
    today = today_in_china()
    past = store.issue(
        1,
        valid_from=(today - dt.timedelta(days=400)).isoformat(),
        valid_until=(today - dt.timedelta(days=1)).isoformat(),
    )
    current = store.issue(2)
    # Past its end it reads expired before any sweep ran.
    assert _check(store, past.identifier)["status"] == "05"
    with store.sessions() as s:
        assert get_licence(s, past.identifier).status == "01"
    with transaction(store.sessions) as s:
        assert lifecycle.expire_due(s) == [past.identifier]
    with transaction(store.sessions) as s:
        assert lifecycle.expire_due(s) == []
        assert get_licence(s, past.identifier).status == "05"
        assert get_licence(s, current.identifier).status == "01"
    # Renewal revives it as a new version.
    until = today + dt.timedelta(days=365)
    with pytest.raises(InvalidInput), transaction(store.sessions) as s:
        lifecycle.renew(
            s, store.services, past.identifier, valid_until=today - dt.timedelta(days=2), actor="t"
        )
    with transaction(store.sessions) as s:
        renewed = lifecycle.renew(
            s, store.services, past.identifier, valid_until=until, actor="t", reason="延续"
        )
    assert renewed.version == 2 and renewed.valid_until == until and renewed.status == "01"
    assert_passed(store.file(renewed), store.trust)
    assert _check(store, past.identifier)["superseded_by"] == renewed.identifier
    with store.sessions() as s:
        assert current_version(s, past.base_identifier).identifier == renewed.identifier
        assert [e.action for e in history(s, "licence", past.base_identifier)] == [
            "licence.issued",
            "licence.expired",
            "licence.renewed",
        ]
    # Long-term renewal of a valid licence.
    with transaction(store.sessions) as s:
        forever = lifecycle.renew(s, store.services, current.identifier, valid_until=None, actor="t")
    assert forever.valid_until is None
