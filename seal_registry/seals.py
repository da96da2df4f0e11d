"""Seals through their life: application, review, making, filing (备案), issue, suspension, cancellation
(注销) and renewal — and :func:`authorize_use`, the one place that decides whether a seal may sign.

Every function takes the caller's session and leaves committing to it. Each state change writes the
seal row, one :class:`SealEvent` (from, to, actor, reason, time) and, as the last write of the unit of
work, one audit entry — so the registry, its history and the audit chain commit or roll back together.

Locking. A transition locks the seal row ``FOR UPDATE``; :func:`authorize_use` locks it ``FOR SHARE``.
On PostgreSQL a cancel therefore waits for every signing transaction that has already authorised the
seal, and a signing transaction that starts after the cancel commits sees the cancellation. SQLite
has no row locks and ignores both clauses, so there a no-op ``UPDATE`` of the row takes the database
write lock first: transitions and signings then run one at a time, which gives the same guarantee.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, IllegalTransition, InvalidInput, NotFound, NotUsable, PermissionDenied
from gmpki import seal as ses
from gmpki.sm3 import sm3
from hsm_adapters.keystore import KeyStore, KeyStoreSigner

from . import picture as pictures
from .departments import get_department
from .lifecycle import STATE_LABELS_ZH, TERMINAL, SealAction, SealState, SealType, next_state, seal_type
from .models import Department, PkiCertificate, Seal, SealCodeCounter, SealEvent
from .pki import CertRole, current_certificate, signer_for

SEAL_VID = "eseal"
SEAL_VERSION = 4
DEFAULT_VALID_DAYS = 365
MAX_VALID_DAYS = 3650
MAX_REASON = 1000
MAX_SERIAL = 999_999

# Actions whose record must say why: they take a seal away from its department or refuse it one.
_REASON_REQUIRED = frozenset({SealAction.REJECT, SealAction.SUSPEND, SealAction.CANCEL})

_AUDIT_ACTION = {
    SealAction.REVIEW: "seal.reviewed",
    SealAction.REJECT: "seal.rejected",
    SealAction.MAKE: "seal.made",
    SealAction.FILE: "seal.filed",
    SealAction.ISSUE: "seal.issued",
    SealAction.SUSPEND: "seal.suspended",
    SealAction.RESUME: "seal.resumed",
    SealAction.CANCEL: "seal.cancelled",
}

_STATE_EN = {
    SealState.APPLIED: "only applied for",
    SealState.REVIEWED: "only reviewed, not yet made",
    SealState.REJECTED: "rejected",
    SealState.MADE: "made but not yet filed",
    SealState.FILED: "filed but not yet issued",
    SealState.ISSUED: "issued",
    SealState.SUSPENDED: "suspended",
    SealState.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class PictureUpload:
    """A picture supplied by the applicant instead of the generated one."""

    data: bytes = field(repr=False)
    declared_type: str | None = None
    width_mm: int | None = None
    height_mm: int | None = None


@dataclass(frozen=True)
class SealGrant:
    """Permission to sign once with a seal, valid inside the transaction that obtained it."""

    es_id: str
    seal_id: str
    department_id: str
    seal_der: bytes = field(repr=False)
    seal_sm3: str
    signer_certificate_der: bytes = field(repr=False)
    signer_key_id: str
    valid_start: datetime
    valid_end: datetime


@dataclass
class _Pending:
    """An audit entry to append once every row of the unit of work is written."""

    action: str
    seal: Seal
    details: dict[str, Any]


# --- small checks ---------------------------------------------------------------------------------
def _reason(reason: str, action: SealAction | None = None) -> str:
    reason = (reason or "").strip()
    if action in _REASON_REQUIRED and not reason:
        raise InvalidInput(f"“{action.value}”操作必须说明理由", f"Action '{action.value}' requires a reason")
    if len(reason) > MAX_REASON:
        raise InvalidInput(
            f"理由不能超过 {MAX_REASON} 个字符", f"Reason must be at most {MAX_REASON} characters"
        )
    if "\x00" in reason:
        raise InvalidInput("理由含有 NUL 字符", "Reason contains a NUL character")
    return reason


def _actor(actor: str) -> str:
    if not actor or len(actor) > 200:
        raise InvalidInput("操作者名称须为 1–200 个字符", "Actor must be 1–200 characters")
    return actor


def _valid_days(days: int) -> int:
    if not 1 <= days <= MAX_VALID_DAYS:
        raise InvalidInput(
            f"印章有效期须为 1 至 {MAX_VALID_DAYS} 天", f"Seal validity must be 1 to {MAX_VALID_DAYS} days"
        )
    return days


def _seal_name(name: str | None, dept: Department, kind: SealType) -> str:
    if name is None or not name.strip():
        if kind.picture_style == "square":
            raise InvalidInput(
                "名章须给出姓名（2–4 个字）", "A name seal needs the person's name (2–4 characters)"
            )
        name = dept.name if kind.key == "official" else f"{dept.name}{kind.name_zh}"
    name = name.strip()
    if len(name) > 200 or not name.isprintable():
        raise InvalidInput(
            "印章名称须为不超过 200 个可打印字符", "Seal name must be 1–200 printable characters"
        )
    return name


def _cert_problem(cert: PkiCertificate, at: datetime) -> tuple[str, str] | None:
    """Why ``cert`` may not sign at ``at`` (zh, en), or None if it may."""
    if cert.revoked_at is not None:
        return "签章者证书已吊销", "the signer certificate is revoked"
    if at < cert.not_before:
        return "签章者证书尚未生效", "the signer certificate is not yet valid"
    if at > cert.not_after:
        return "签章者证书已过期", "the signer certificate has expired"
    if cert.key_id is None:
        return "签章者证书没有本地密钥", "the signer certificate has no key in the key store"
    return None


def _department_certificate(
    session: Session, dept: Department, cert_id: int | None, now: datetime
) -> PkiCertificate:
    if cert_id is None:
        candidates = session.scalars(
            select(PkiCertificate)
            .where(
                PkiCertificate.department_id == dept.id,
                PkiCertificate.role == CertRole.DEPARTMENT.value,
                PkiCertificate.revoked_at.is_(None),
            )
            .order_by(PkiCertificate.id.desc())
        )
        for row in candidates:
            if _cert_problem(row, now) is None:
                return row
        raise NotUsable(
            f"部门“{dept.name}”没有可用的签章者证书",
            f"Department '{dept.name}' has no usable signing certificate",
        )
    cert = session.get(PkiCertificate, cert_id)
    if cert is None:
        raise NotFound(f"证书 {cert_id} 不存在", f"Certificate {cert_id} not found")
    if cert.department_id != dept.id or cert.role != CertRole.DEPARTMENT.value:
        raise InvalidInput(
            f"证书 {cert_id} 不是部门“{dept.name}”的签章者证书",
            f"Certificate {cert_id} is not a signing certificate of department '{dept.name}'",
        )
    problem = _cert_problem(cert, now)
    if problem is not None:
        raise NotUsable(
            f"证书 {cert_id}：{problem[0]}", f"Certificate {cert_id}: {problem[1]}", certificate_id=cert_id
        )
    return cert


def _picture(
    kind: SealType, dept: Department, name: str, upload: PictureUpload | None
) -> tuple[str, bytes, int, int]:
    """(type, bytes, width mm, height mm) of the seal picture: the upload checked, or one drawn."""
    if upload is not None:
        info = pictures.validate_picture(upload.data, upload.declared_type)
        width = upload.width_mm or kind.default_width_mm
        height = upload.height_mm or kind.default_height_mm
        for side in (width, height):
            if not pictures.MIN_SIDE_MM <= side <= pictures.MAX_SIDE_MM:
                raise InvalidInput(
                    f"印章尺寸须在 {pictures.MIN_SIDE_MM}–{pictures.MAX_SIDE_MM} 毫米之间",
                    f"Seal size must be {pictures.MIN_SIDE_MM}–{pictures.MAX_SIDE_MM} mm",
                )
        return info.type, bytes(upload.data), width, height
    if kind.picture_style == "square":
        drawn = pictures.render_name_seal(
            name, width_mm=kind.default_width_mm, height_mm=kind.default_height_mm
        )
    elif kind.picture_style == "oval":
        drawn = pictures.render_oval_seal(
            dept.name,
            tax_number=dept.uscc,
            seal_type_text=kind.name_zh,
            width_mm=kind.default_width_mm,
            height_mm=kind.default_height_mm,
        )
    else:
        drawn = pictures.render_round_seal(
            dept.name,
            horizontal_text=None if kind.key == "official" else kind.name_zh,
            diameter_mm=kind.default_width_mm,
        )
    return "png", drawn.png, drawn.width_mm, drawn.height_mm


# --- locking --------------------------------------------------------------------------------------
def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _lock_seal(session: Session, where: ColumnElement[bool], *, shared: bool) -> Seal | None:
    if _is_sqlite(session):
        # No row locks in SQLite: this no-op write takes the database write lock before the read.
        session.execute(
            update(Seal).where(where).values(revision=Seal.revision),
            execution_options={"synchronize_session": False},
        )
    return session.scalar(
        select(Seal).where(where).with_for_update(read=shared).execution_options(populate_existing=True)
    )


def _seal_for_update(session: Session, seal_id: str) -> Seal:
    seal = _lock_seal(session, Seal.id == seal_id, shared=False)
    if seal is None:
        raise NotFound(f"印章 {seal_id} 不存在", f"Seal {seal_id} not found")
    return seal


def _allocate_es_id(session: Session, region_code: str, kind: SealType) -> str:
    """region(6) ‖ type(2) ‖ serial(6): the counter row is locked until the caller commits."""
    prefix = f"{region_code}{kind.code}"
    values = {"prefix": prefix, "next_serial": 1}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(SealCodeCounter).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(SealCodeCounter).values(values).on_conflict_do_nothing())
    counter = session.scalar(
        select(SealCodeCounter)
        .where(SealCodeCounter.prefix == prefix)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if counter is None:  # pragma: no cover - inserted just above
        raise Conflict("无法分配印章编码", "Could not allocate a seal code")
    serial = counter.next_serial
    if serial > MAX_SERIAL:
        raise Conflict(
            f"编码段 {prefix} 的印章编号已用尽", f"Seal serial numbers for prefix {prefix} are exhausted"
        )
    counter.next_serial = serial + 1
    return f"{prefix}{serial:06d}"


# --- transitions ----------------------------------------------------------------------------------
def _event(
    session: Session, seal: Seal, from_state: SealState | None, to: SealState, actor: str, reason: str
) -> None:
    now = utcnow()
    seal.state = to.value
    seal.state_changed_at = now
    session.add(
        SealEvent(
            seal_id=seal.id,
            from_state=None if from_state is None else from_state.value,
            to_state=to.value,
            actor=actor,
            reason=reason,
            at=now,
        )
    )


def _transition(session: Session, seal: Seal, action: SealAction, *, actor: str, reason: str) -> _Pending:
    """Move ``seal`` by ``action`` (rows only); IllegalTransition before anything is written."""
    current = SealState(seal.state)
    target = next_state(current, action)
    seal.revision += 1
    _event(session, seal, current, target, actor, reason)
    return _Pending(
        _AUDIT_ACTION[action],
        seal,
        {"es_id": seal.es_id, "from": current.value, "to": target.value, "reason": reason},
    )


def _commit_audit(session: Session, actor: str, pending: Sequence[_Pending]) -> None:
    # Rows first, audit entries last: the audit head stays locked until commit (core.audit).
    session.flush()
    for p in pending:
        audit_append(
            session,
            actor=actor,
            action=p.action,
            subject_type="seal",
            subject_id=p.seal.id,
            details=p.details,
        )


def _simple(session: Session, seal_id: str, action: SealAction, actor: str, reason: str) -> Seal:
    _actor(actor)
    reason = _reason(reason, action)
    seal = _seal_for_update(session, seal_id)
    pending = _transition(session, seal, action, actor=actor, reason=reason)
    _commit_audit(session, actor, [pending])
    return seal


def _new_seal(
    session: Session,
    *,
    dept: Department,
    kind: SealType,
    name: str,
    cert: PkiCertificate,
    picture: tuple[str, bytes, int, int],
    valid_days: int,
    actor: str,
    reason: str,
    previous: Seal | None,
) -> Seal:
    # The picture is drawn before this point: the code counter stays locked until commit.
    es_id = _allocate_es_id(session, dept.region_code, kind)
    now = utcnow()
    picture_type, data, width, height = picture
    seal = Seal(
        id=str(uuid.uuid4()),
        es_id=es_id,
        department_id=dept.id,
        seal_type=kind.key,
        name=name,
        state=SealState.APPLIED.value,
        picture_type=picture_type,
        picture=data,
        width_mm=width,
        height_mm=height,
        # Provisional: make_seal moves the window to start when the seal is made, same length.
        valid_start=now,
        valid_end=now + timedelta(days=valid_days),
        signer_certificate_id=cert.id,
        previous_seal_id=previous.id if previous is not None else None,
        applicant=actor,
        created_at=now,
        state_changed_at=now,
        revision=0,
    )
    session.add(seal)
    session.flush()
    _event(session, seal, None, SealState.APPLIED, actor, reason)
    return seal


def apply_seal(
    session: Session,
    *,
    department_id: str,
    seal_type_key: str,
    name: str | None = None,
    signer_certificate_id: int | None = None,
    picture: PictureUpload | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    actor: str,
    reason: str = "",
) -> Seal:
    """Record an application (state ``applied``) and assign its esID.

    ``signer_certificate_id`` defaults to the department's newest usable signing certificate; it must
    belong to the department, be unrevoked and in date. Without ``picture`` one is drawn from the
    department's name in the style of the seal type.
    """
    _actor(actor)
    reason = _reason(reason)
    kind = seal_type(seal_type_key)
    _valid_days(valid_days)
    dept = get_department(session, department_id)
    seal_name = _seal_name(name, dept, kind)
    cert = _department_certificate(session, dept, signer_certificate_id, utcnow())
    drawn = _picture(kind, dept, seal_name, picture)
    seal = _new_seal(
        session,
        dept=dept,
        kind=kind,
        name=seal_name,
        cert=cert,
        picture=drawn,
        valid_days=valid_days,
        actor=actor,
        reason=reason,
        previous=None,
    )
    pending = _Pending(
        "seal.applied",
        seal,
        {
            "es_id": seal.es_id,
            "to": SealState.APPLIED.value,
            "department_id": dept.id,
            "seal_type": kind.key,
            "name": seal_name,
            "signer_certificate_id": cert.id,
            "reason": reason,
        },
    )
    _commit_audit(session, actor, [pending])
    return seal


def review(session: Session, seal_id: str, *, actor: str, reason: str = "") -> Seal:
    """applied → reviewed (审核通过)."""
    return _simple(session, seal_id, SealAction.REVIEW, actor, reason)


def reject(session: Session, seal_id: str, *, actor: str, reason: str) -> Seal:
    """applied | reviewed → rejected (terminal). A reason is required."""
    return _simple(session, seal_id, SealAction.REJECT, actor, reason)


def make_seal(session: Session, keystore: KeyStore, seal_id: str, *, actor: str, reason: str = "") -> Seal:
    """reviewed → made: build SES_SealInfo (v4, certListType 1 with the department's signer
    certificate), sign it with the region's seal-maker key, store the seal and its SM3.

    The validity window starts now and keeps the length applied for, cut at the signer certificate's
    end: a seal listing only that certificate cannot sign after it, so it must not claim to.
    """
    _actor(actor)
    reason = _reason(reason, SealAction.MAKE)
    seal = _seal_for_update(session, seal_id)
    next_state(SealState(seal.state), SealAction.MAKE)  # refuse before any work is done
    now = utcnow().replace(microsecond=0)
    cert = session.get(PkiCertificate, seal.signer_certificate_id)
    if cert is None:  # pragma: no cover - foreign key
        raise NotFound("签章者证书不存在", "Signer certificate not found")
    problem = _cert_problem(cert, now)
    if problem is not None:
        raise NotUsable(
            f"无法制作印章：{problem[0]}", f"Cannot make the seal: {problem[1]}", es_id=seal.es_id
        )
    length = seal.valid_end - seal.valid_start
    valid_start, valid_end = now, min(now + length, cert.not_after.replace(microsecond=0))
    maker_row = current_certificate(session, CertRole.SEAL_MAKER)
    maker: KeyStoreSigner = signer_for(keystore, maker_row)
    kind = seal_type(seal.seal_type)
    info = ses.build_seal_info(
        es_id=seal.es_id,
        name=seal.name,
        seal_type=int(kind.code),
        certs=[cert.der],
        create_date=now,
        valid_start=valid_start,
        valid_end=valid_end,
        picture_type=seal.picture_type.upper(),
        picture_data=seal.picture,
        picture_width=seal.width_mm,
        picture_height=seal.height_mm,
        vid=SEAL_VID,
        version=SEAL_VERSION,
    )
    der = ses.make_seal(info, maker_row.der, maker)
    seal.seal_der = der
    seal.seal_sm3 = sm3(der).hex()
    seal.valid_start, seal.valid_end = valid_start, valid_end
    pending = _transition(session, seal, SealAction.MAKE, actor=actor, reason=reason)
    pending.details.update({"seal_sm3": seal.seal_sm3, "maker_certificate_sm3": maker_row.sm3})
    _commit_audit(session, actor, [pending])
    return seal


def file_seal(session: Session, seal_id: str, *, actor: str, reason: str = "") -> Seal:
    """made → filed (备案)."""
    return _simple(session, seal_id, SealAction.FILE, actor, reason)


def issue_seal(session: Session, seal_id: str, *, actor: str, reason: str = "") -> Seal:
    """filed → issued. Issuing a renewal cancels the seal it replaces in the same transaction."""
    _actor(actor)
    reason = _reason(reason, SealAction.ISSUE)
    seal = _seal_for_update(session, seal_id)
    pending = [_transition(session, seal, SealAction.ISSUE, actor=actor, reason=reason)]
    if seal.previous_seal_id is not None:
        old = _seal_for_update(session, seal.previous_seal_id)
        if SealState(old.state) not in TERMINAL:
            pending.append(
                _transition(session, old, SealAction.CANCEL, actor=actor, reason=f"renewed by {seal.es_id}")
            )
    _commit_audit(session, actor, pending)
    return seal


def suspend(session: Session, seal_id: str, *, actor: str, reason: str) -> Seal:
    """issued → suspended (暂停). A reason is required."""
    return _simple(session, seal_id, SealAction.SUSPEND, actor, reason)


def resume(session: Session, seal_id: str, *, actor: str, reason: str = "") -> Seal:
    """suspended → issued."""
    return _simple(session, seal_id, SealAction.RESUME, actor, reason)


def cancel(session: Session, seal_id: str, *, actor: str, reason: str) -> Seal:
    """Any non-terminal state → cancelled (注销, terminal). A reason is required.

    Waits for signing transactions that hold the seal (see :func:`authorize_use`).
    """
    return _simple(session, seal_id, SealAction.CANCEL, actor, reason)


def renew_seal(
    session: Session,
    old_id: str,
    *,
    signer_certificate_id: int | None = None,
    picture: PictureUpload | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    actor: str,
    reason: str = "",
) -> Seal:
    """Apply for the successor of an issued or suspended seal: same department, type and name, a new
    esID, linked by ``previous_seal_id``. It goes through the whole lifecycle; issuing it cancels the
    old seal. The old seal keeps the picture unless a new one is given. One renewal at a time.
    """
    _actor(actor)
    reason = _reason(reason)
    _valid_days(valid_days)
    old = _seal_for_update(session, old_id)
    if SealState(old.state) not in (SealState.ISSUED, SealState.SUSPENDED):
        raise _not_renewable(old)
    pending_successor = session.scalar(
        select(Seal.es_id).where(
            Seal.previous_seal_id == old.id,
            Seal.state.not_in([s.value for s in TERMINAL]),
        )
    )
    if pending_successor is not None:
        raise Conflict(
            f"印章 {old.es_id} 已有进行中的换发申请 {pending_successor}",
            f"Seal {old.es_id} already has a renewal in progress ({pending_successor})",
            es_id=old.es_id,
            successor=pending_successor,
        )
    dept = get_department(session, old.department_id)
    kind = seal_type(old.seal_type)
    cert = _department_certificate(session, dept, signer_certificate_id, utcnow())
    if picture is not None:
        drawn = _picture(kind, dept, old.name, picture)
    else:
        drawn = (old.picture_type, old.picture, old.width_mm, old.height_mm)
    seal = _new_seal(
        session,
        dept=dept,
        kind=kind,
        name=old.name,
        cert=cert,
        picture=drawn,
        valid_days=valid_days,
        actor=actor,
        reason=reason or f"renewal of {old.es_id}",
        previous=old,
    )
    pending = _Pending(
        "seal.renewal_applied",
        seal,
        {
            "es_id": seal.es_id,
            "to": SealState.APPLIED.value,
            "previous_seal_id": old.id,
            "previous_es_id": old.es_id,
            "signer_certificate_id": cert.id,
            "reason": reason,
        },
    )
    _commit_audit(session, actor, [pending])
    return seal


def _not_renewable(old: Seal) -> IllegalTransition:
    state = SealState(old.state)
    return IllegalTransition(
        f"印章处于“{STATE_LABELS_ZH[state]}”状态，不能换发（仅已发放或已暂停的印章可换发）",
        f"A seal in state '{state.value}' cannot be renewed (only issued or suspended seals can)",
        state=state.value,
        action="renew",
    )


# --- reading --------------------------------------------------------------------------------------
def get_seal(session: Session, ref: str) -> Seal:
    """A seal by its id or its esID."""
    seal = session.get(Seal, ref) if len(ref) == 36 else None
    if seal is None:
        seal = session.scalar(select(Seal).where(Seal.es_id == ref))
    if seal is None:
        raise NotFound(f"印章 {ref} 不存在", f"Seal {ref} not found")
    return seal


def list_seals(
    session: Session, *, department_id: str | None = None, state: SealState | None = None
) -> list[Seal]:
    stmt = select(Seal).order_by(Seal.created_at, Seal.es_id)
    if department_id is not None:
        stmt = stmt.where(Seal.department_id == department_id)
    if state is not None:
        stmt = stmt.where(Seal.state == state.value)
    return list(session.scalars(stmt))


# --- use ------------------------------------------------------------------------------------------
def not_usable_message(state: SealState) -> tuple[str, str]:
    """The bilingual reason a seal in ``state`` cannot sign, e.g. 印章已注销 / seal is cancelled."""
    return f"印章{STATE_LABELS_ZH[state]}，不能签章", f"seal is {_STATE_EN[state]} and cannot sign"


def authorize_use(
    session: Session, *, es_id: str, department_id: str, at: datetime | None = None
) -> SealGrant:
    """Decide whether ``department_id`` may sign with seal ``es_id`` at ``at`` (default now).

    The seal must be issued and belong to the department (:class:`PermissionDenied` otherwise), ``at``
    inside its validity, its signer certificate unrevoked and in date, its bytes present; anything
    else is :class:`NotUsable` with the reason. The seal row (and its certificate row) stay share-
    locked until the caller's transaction ends, so **the caller must sign and append its audit entry
    inside the same transaction** and commit promptly: a concurrent cancel or certificate revocation
    waits for it, and takes effect for every signing that starts after it commits.
    """
    at = utcnow() if at is None else at
    if at.tzinfo is None:
        raise InvalidInput("签章时间必须带时区", "The signing time must be timezone-aware")
    seal = _lock_seal(session, Seal.es_id == es_id, shared=True)
    if seal is None:
        raise NotFound(f"印章 {es_id} 不存在", f"Seal {es_id} not found")
    if seal.department_id != department_id:
        raise PermissionDenied(
            f"印章 {es_id} 不属于该部门", f"Seal {es_id} does not belong to this department", es_id=es_id
        )
    state = SealState(seal.state)
    if state is not SealState.ISSUED:
        zh, en = not_usable_message(state)
        raise NotUsable(zh, en, es_id=es_id, state=state.value)
    if at < seal.valid_start:
        raise NotUsable("印章尚未生效，不能签章", "seal is not yet valid and cannot sign", es_id=es_id)
    if at > seal.valid_end:
        raise NotUsable("印章已过有效期，不能签章", "seal has expired and cannot sign", es_id=es_id)
    cert = session.scalar(
        select(PkiCertificate)
        .where(PkiCertificate.id == seal.signer_certificate_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if cert is None:  # pragma: no cover - foreign key
        raise NotUsable("签章者证书不存在", "the signer certificate is missing", es_id=es_id)
    problem = _cert_problem(cert, at)
    if problem is not None:
        raise NotUsable(f"{problem[0]}，印章不能签章", f"{problem[1]}; the seal cannot sign", es_id=es_id)
    if seal.seal_der is None or seal.seal_sm3 is None or cert.key_id is None:
        raise NotUsable("印章数据缺失，不能签章", "seal data is missing; it cannot sign", es_id=es_id)
    return SealGrant(
        es_id=seal.es_id,
        seal_id=seal.id,
        department_id=seal.department_id,
        seal_der=seal.seal_der,
        seal_sm3=seal.seal_sm3,
        signer_certificate_der=cert.der,
        signer_key_id=cert.key_id,
        valid_start=seal.valid_start,
        valid_end=seal.valid_end,
    )


@dataclass(frozen=True)
class ToBeSigned:
    """What a signing caller hands back once it knows the seal: the data's SM3 and the propertyInfo,
    plus facts for the audit entry (e.g. the SM3 of the whole document)."""

    data_hash: bytes
    property_info: str
    audit_details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignatureMade:
    grant: SealGrant
    signature: bytes = field(repr=False)  # SES_Signature DER
    signing_time: datetime


def sign_prepared(
    session: Session,
    keystore: KeyStore,
    *,
    es_id: str,
    department_id: str,
    actor: str,
    prepare: Callable[[SealGrant, datetime], ToBeSigned],
    time_stamp: Callable[[bytes], bytes] | None = None,
    at: datetime | None = None,
) -> SignatureMade:
    """Authorise, let ``prepare`` build what is signed, sign it and audit it — all in the caller's
    transaction.

    ``prepare`` runs after :func:`authorize_use` (so it sees the seal bytes, e.g. to size a stamp or
    write Seal.esl into the document) and receives the signing time that goes into ``timeInfo``.
    ``at`` fixes that time (replays and tests; the API and CLI never pass it); it is truncated to
    whole seconds because GeneralizedTime carries no fractions here. The audit entry
    ``signature.made`` carries ``prepare``'s ``audit_details`` next to the standard facts.
    """
    _actor(actor)
    now = (utcnow() if at is None else at).replace(microsecond=0)
    grant = authorize_use(session, es_id=es_id, department_id=department_id, at=now)
    request = prepare(grant, now)
    if len(request.data_hash) != 32:
        raise InvalidInput("dataHash 必须为 32 字节 SM3 摘要", "data_hash must be a 32-byte SM3 digest")
    signature = ses.make_ses_signature(
        grant.seal_der,
        bytes(request.data_hash),
        request.property_info,
        grant.signer_certificate_der,
        KeyStoreSigner(keystore, grant.signer_key_id),
        now,
        time_stamp=time_stamp,
    )
    details: dict[str, Any] = dict(request.audit_details)
    details.update(
        {
            "es_id": grant.es_id,
            "department_id": grant.department_id,
            "data_sm3": bytes(request.data_hash).hex(),
            "signature_sm3": sm3(signature).hex(),
            "property_info": request.property_info,
            "signing_time": now.isoformat(),
            "time_stamped": time_stamp is not None,
        }
    )
    audit_append(
        session,
        actor=actor,
        action="signature.made",
        subject_type="seal",
        subject_id=grant.seal_id,
        details=details,
    )
    return SignatureMade(grant, signature, now)


def sign_with_seal(
    session: Session,
    keystore: KeyStore,
    *,
    es_id: str,
    department_id: str,
    data_hash: bytes,
    property_info: str,
    actor: str,
    time_stamp: Callable[[bytes], bytes] | None = None,
    audit_details: Mapping[str, Any] | None = None,
) -> bytes:
    """An SES_Signature (GB/T 38540) over ``data_hash`` (SM3 of the signed data), made now with the
    department's key, after :func:`authorize_use`; audited as ``signature.made`` in the caller's
    transaction. Returns the DER.
    """
    if len(data_hash) != 32:
        raise InvalidInput("dataHash 必须为 32 字节 SM3 摘要", "data_hash must be a 32-byte SM3 digest")
    request = ToBeSigned(bytes(data_hash), property_info, dict(audit_details or {}))
    made = sign_prepared(
        session,
        keystore,
        es_id=es_id,
        department_id=department_id,
        actor=actor,
        prepare=lambda _grant, _now: request,
        time_stamp=time_stamp,
    )
    return made.signature
