"""authorize_use and sign_with_seal: who may sign with which seal, when — and sign-vs-cancel races."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from core.audit import append as audit_append
from core.audit import history
from core.db import transaction, utcnow
from core.errors import InvalidInput, NotFound, NotUsable, PermissionDenied
from gmpki import seal as ses
from gmpki.sm3 import sm3
from hsm_adapters.keystore import KeyStoreSigner
from seal_registry import seals
from seal_registry.lifecycle import SealState
from seal_registry.pki import revoke_certificate

from .conftest import ACTOR, Registry

DATA_HASH = sm3(b"the licence to stamp")


def _authorize(registry: Registry, es_id: str, **kwargs: object) -> seals.SealGrant:
    args: dict[str, object] = {"es_id": es_id, "department_id": registry.department.id}
    args.update(kwargs)
    with transaction(registry.sessions) as s:
        return seals.authorize_use(s, **args)  # type: ignore[arg-type]


def _sign(registry: Registry, es_id: str, department_id: str | None = None) -> bytes:
    with transaction(registry.sessions) as s:
        return seals.sign_with_seal(
            s,
            registry.keystore,
            es_id=es_id,
            department_id=department_id or registry.department.id,
            data_hash=DATA_HASH,
            property_info="/Doc_0/Signs/Sign_0/Signature.xml",
            actor="department_signer:test",
        )


def test_issued_seal_is_granted(registry: Registry) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    grant = _authorize(registry, seal.es_id)
    assert (grant.es_id, grant.seal_id, grant.department_id) == (seal.es_id, seal.id, registry.department.id)
    assert grant.seal_der == seal.seal_der and grant.seal_sm3 == seal.seal_sm3
    assert grant.signer_certificate_der == registry.certificate.der
    assert grant.signer_key_id == registry.certificate.key_id
    # Inside the validity window at its very edges
    assert _authorize(registry, seal.es_id, at=seal.valid_start).es_id == seal.es_id
    assert _authorize(registry, seal.es_id, at=seal.valid_end).es_id == seal.es_id


@pytest.mark.parametrize(
    ("state", "zh", "en"),
    [
        (SealState.APPLIED, "印章已申请", "seal is only applied for"),
        (SealState.REVIEWED, "印章已审核", "not yet made"),
        (SealState.REJECTED, "印章已驳回", "seal is rejected"),
        (SealState.MADE, "印章已制作", "not yet filed"),
        (SealState.FILED, "印章已备案", "not yet issued"),
        (SealState.SUSPENDED, "印章已暂停", "seal is suspended"),
        (SealState.CANCELLED, "印章已注销", "seal is cancelled"),
    ],
)
def test_only_issued_seals_may_sign(registry: Registry, state: SealState, zh: str, en: str) -> None:
    seal = registry.seal_in(state)
    with pytest.raises(NotUsable) as info:
        _authorize(registry, seal.es_id)
    assert zh in info.value.message_zh and en in info.value.message_en
    assert info.value.details["state"] == state.value


def test_refusals_by_time_department_and_certificate(registry: Registry) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    with pytest.raises(NotUsable, match="seal has expired"):
        _authorize(registry, seal.es_id, at=seal.valid_end + timedelta(seconds=1))
    with pytest.raises(NotUsable, match="not yet valid"):
        _authorize(registry, seal.es_id, at=seal.valid_start - timedelta(seconds=1))
    with pytest.raises(InvalidInput):
        _authorize(registry, seal.es_id, at=utcnow().replace(tzinfo=None))
    with pytest.raises(NotFound):
        _authorize(registry, "11000002999999")

    other, _cert = registry.new_department(3)
    with pytest.raises(PermissionDenied):
        _authorize(registry, seal.es_id, department_id=other.id)

    count = registry.audit_count()
    with pytest.raises(PermissionDenied):
        _sign(registry, seal.es_id, department_id=other.id)
    assert registry.audit_count() == count

    with transaction(registry.sessions) as s:
        revoke_certificate(s, registry.certificate.id, reason="key_compromise", actor=ACTOR)
    with pytest.raises(NotUsable, match="revoked"):
        _authorize(registry, seal.es_id)


def test_sign_with_seal_makes_an_audited_ses_signature(registry: Registry) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    before = utcnow().replace(microsecond=0)
    der = _sign(registry, seal.es_id)
    parsed = ses.parse_ses_signature(der)
    assert parsed.seal.raw == seal.seal_der
    assert parsed.data_hash == DATA_HASH
    assert parsed.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert parsed.signer_cert_der == registry.certificate.der
    assert parsed.time_info is not None and parsed.time_info >= before
    assert ses.check_signer_signature(parsed) is ses.SignatureCheck.VALID
    assert ses.check_maker_signature(parsed.seal) is ses.SignatureCheck.VALID
    entry = registry.last_audit()
    assert (entry.action, entry.subject_id, entry.actor) == (
        "signature.made",
        seal.id,
        "department_signer:test",
    )
    details = entry.details_dict()
    assert details["es_id"] == seal.es_id and details["data_sm3"] == DATA_HASH.hex()
    assert details["signature_sm3"] == sm3(der).hex()
    with pytest.raises(InvalidInput), transaction(registry.sessions) as s:
        seals.sign_with_seal(
            s,
            registry.keystore,
            es_id=seal.es_id,
            department_id=registry.department.id,
            data_hash=b"short",
            property_info="x",
            actor="t",
        )


def test_cancelled_seal_refuses_to_sign_and_nothing_is_audited(registry: Registry) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    _sign(registry, seal.es_id)
    registry.act(seal.id, "cancel", reason="revoked by order")
    count = registry.audit_count()
    with pytest.raises(NotUsable) as info:
        _sign(registry, seal.es_id)
    assert "印章已注销" in str(info.value) and "seal is cancelled" in str(info.value)
    assert registry.audit_count() == count
    # Suspension refuses too, and resuming restores the right to sign
    other = registry.seal_in(SealState.SUSPENDED)
    with pytest.raises(NotUsable, match="suspended"):
        _sign(registry, other.es_id)
    registry.act(other.id, "resume")
    assert ses.parse_ses_signature(_sign(registry, other.es_id)).seal.es_id == other.es_id


def test_cancel_waits_for_an_open_signing_transaction(registry: Registry) -> None:
    """One thread authorises and keeps its transaction open; a concurrent cancel must wait until it has
    signed and committed,
    and a signing attempt after the cancel committed is refused. (PostgreSQL: FOR SHARE / FOR UPDATE
    row locks; SQLite: the database write lock.)"""
    seal = registry.seal_in(SealState.ISSUED)
    signed = threading.Event()
    release = threading.Event()
    cancel_started = threading.Event()
    times: dict[str, float] = {}
    errors: list[BaseException] = []

    def signer() -> None:
        # What a signing service does: authorise, sign, audit, commit — held open after authorising.
        try:
            with transaction(registry.sessions) as s:
                grant = seals.authorize_use(s, es_id=seal.es_id, department_id=registry.department.id)
                signed.set()
                assert release.wait(20)
                der = ses.make_ses_signature(
                    grant.seal_der,
                    DATA_HASH,
                    "x",
                    grant.signer_certificate_der,
                    KeyStoreSigner(registry.keystore, grant.signer_key_id),
                    utcnow(),
                )
                audit_append(
                    s,
                    actor="department_signer:slow",
                    action="signature.made",
                    subject_type="seal",
                    subject_id=grant.seal_id,
                    details={"signature_sm3": sm3(der).hex()},
                )
                times["signer_committing"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)
            signed.set()

    def canceller() -> None:
        try:
            cancel_started.set()
            with transaction(registry.sessions) as s:
                seals.cancel(s, seal.id, actor=ACTOR, reason="cancel during signing")
            times["cancel_committed"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    t1 = threading.Thread(target=signer)
    t1.start()
    assert signed.wait(20)
    t2 = threading.Thread(target=canceller)
    t2.start()
    assert cancel_started.wait(20)
    time.sleep(0.6)
    assert "cancel_committed" not in times, "cancel did not wait for the open signing transaction"
    release.set()
    t1.join(20)
    t2.join(20)
    assert not errors, errors
    assert times["cancel_committed"] >= times["signer_committing"]

    with registry.sessions() as s:
        entries = [e.action for e in history(s, "seal", seal.id)]
    assert entries[-2:] == ["signature.made", "seal.cancelled"]
    count = registry.audit_count()
    with pytest.raises(NotUsable, match="cancelled"):
        _sign(registry, seal.es_id)
    assert registry.audit_count() == count
