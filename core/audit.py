"""The append-only audit chain: every state change leaves an SM3-linked entry, heads are signed.

Each entry's ``entry_hash`` is ``SM3(prev_hash ‖ canonical(entry))``; the first entry links to 32 zero
bytes. A single-row ``audit_head`` table holds the last ``seq`` and hash. :func:`append` advances it
with one ``UPDATE … RETURNING`` statement, which is the serialisation point on both backends: on
PostgreSQL the row lock makes a second appender wait and then re-read the committed head (READ
COMMITTED), on SQLite the statement takes the database write lock before reading. Entries are
therefore numbered without gaps and the chain cannot fork, and a rollback of the caller's transaction
removes the entry together with the head move.

Because the head row is locked until the caller commits, append the audit entry as the last write of
a unit of work, so that transactions never wait on the head while holding other row locks.

:func:`append_many` appends several entries with one move of the head (``seq`` advanced by their
count in the same single statement) and one multi-row insert: the entries, numbers and hashes are
exactly those that appending them one by one in that order would give.

Anyone with write access to the database can rewrite the whole chain and the head row; what they
cannot forge are the SM2 signatures over heads (:func:`sign_head`). :func:`verify_chain` checks
both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from gmpki import sm2
from gmpki.signing import MessageSigner
from gmpki.sm3 import sm3, sm3_hex

from .db import Base, UtcDateTime, utcnow
from .errors import Conflict, EsealError, InvalidInput

GENESIS_HASH = "00" * 32
HEAD_ROW_ID = 1
ENTRY_FORMAT = "eseal-audit-entry/1"
HEAD_FORMAT = "eseal-audit-head/1"

# Column widths are enforced in append() too, because SQLite would silently store longer strings and
# the two backends must accept exactly the same entries.
ACTOR_MAX = 255
ACTION_MAX = 100
SUBJECT_TYPE_MAX = 100
SUBJECT_ID_MAX = 255


class AuditChainError(EsealError):
    """The chain cannot be extended because its stored state is inconsistent."""

    code = "audit_chain_error"
    status = 500
    title_zh, title_en = "审计链错误", "Audit chain error"


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)
    action: Mapped[str] = mapped_column(String(ACTION_MAX), nullable=False)
    subject_type: Mapped[str] = mapped_column(String(SUBJECT_TYPE_MAX), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entry_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (Index("ix_audit_entries_subject", "subject_type", "subject_id"),)

    def details_dict(self) -> dict[str, Any]:
        value = json.loads(self.details)
        return value if isinstance(value, dict) else {"value": value}

    def __repr__(self) -> str:
        subject = f"{self.subject_type}:{self.subject_id}"
        return f"AuditEntry(seq={self.seq}, action={self.action!r}, subject={subject})"


# A plain table rather than a mapped class: it is only ever touched by single locking statements, and
# an ORM identity map would hand back stale head values.
audit_head = Table(
    "audit_head",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    CheckConstraint(f"id = {HEAD_ROW_ID}", name="single_row"),
)


# Schemas made with metadata.create_all (tests of other packages) get the genesis head row too;
# Alembic inserts it in the migration.
@event.listens_for(audit_head, "after_create")
def _insert_genesis_head(target: Table, connection: Connection, **_kw: Any) -> None:
    connection.execute(insert(target).values(id=HEAD_ROW_ID, seq=0, entry_hash=GENESIS_HASH))


class AuditHeadSignature(Base):
    __tablename__ = "audit_head_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    entry_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signer_public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signer_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    time: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    def __repr__(self) -> str:
        return f"AuditHeadSignature(seq={self.seq}, signer={self.signer_fingerprint[:16]}…)"


# --- canonical encodings ---------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """The one JSON form hashed and stored: sorted keys, no spaces, UTF-8 text, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_time(value: datetime) -> str:
    """Fixed-width ISO 8601 UTC with microseconds, as hashed (both backends keep microseconds)."""
    if value.tzinfo is None:
        raise InvalidInput("审计时间缺少时区", "audit time has no time zone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_payload(
    *,
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: str,
) -> bytes:
    """Canonical bytes of one entry's fields; a JSON array, so field boundaries are unambiguous."""
    fields = [ENTRY_FORMAT, seq, format_time(time), actor, action, subject_type, subject_id, details]
    return canonical_json(fields).encode("utf-8")


def compute_entry_hash(prev_hash: str, payload: bytes) -> str:
    return sm3_hex(bytes.fromhex(prev_hash) + payload)


def head_message(seq: int, entry_hash: str) -> bytes:
    """The bytes an SM2 head signature covers."""
    return canonical_json({"format": HEAD_FORMAT, "seq": seq, "entry_hash": entry_hash}).encode("utf-8")


def key_fingerprint(public_key: sm2.SM2PublicKey) -> str:
    """SM3 hex of the 65-byte public point."""
    return sm3(public_key.point).hex()


def _check_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"审计字段 {name} 必须为非空字符串", f"audit field {name} must be a non-empty string"
        )
    if len(value) > limit:
        raise InvalidInput(
            f"审计字段 {name} 超过 {limit} 个字符", f"audit field {name} exceeds {limit} characters"
        )
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded as UTF-8 for hashing.
    if "\x00" in value:
        raise InvalidInput(f"审计字段 {name} 含有 NUL 字符", f"audit field {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"审计字段 {name} 不是有效的 Unicode 文本", f"audit field {name} is not valid Unicode text"
        ) from exc


def _details_text(details: Mapping[str, Any] | None) -> str:
    try:
        text = canonical_json(dict(details) if details is not None else {})
        text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(
            "审计详情必须是可 JSON 序列化的对象", "audit details must be a JSON-serialisable object"
        ) from exc
    return text


# --- the head --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainHead:
    seq: int
    entry_hash: str


def _move_head(session: Session, step: int) -> ChainHead | None:
    """Lock the head row (advancing seq by ``step``) and return it; None if the row is missing."""
    stmt = (
        update(audit_head)
        .where(audit_head.c.id == HEAD_ROW_ID)
        .values(seq=audit_head.c.seq + step)
        .returning(audit_head.c.seq, audit_head.c.entry_hash)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else ChainHead(int(row.seq), str(row.entry_hash))


def _create_head_row(session: Session) -> None:
    if session.execute(select(AuditEntry.seq).limit(1)).first() is not None:
        raise AuditChainError(
            "审计链头记录缺失而链中已有记录，拒绝追加",
            "the audit chain head row is missing but entries exist",
        )
    values = {"id": HEAD_ROW_ID, "seq": 0, "entry_hash": GENESIS_HASH}
    dialect = session.get_bind().dialect.name
    # Two first appenders may race to create the row; the loser must not fail.
    if dialect == "postgresql":
        session.execute(postgresql.insert(audit_head).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(audit_head).values(values).on_conflict_do_nothing())
    else:
        session.execute(insert(audit_head).values(values))


def _lock_head(session: Session, step: int) -> ChainHead:
    head = _move_head(session, step)
    if head is None:
        _create_head_row(session)
        head = _move_head(session, step)
    if head is None:  # pragma: no cover - the row was just inserted
        raise AuditChainError("无法创建审计链头", "could not create the audit chain head")
    return head


def current_head(session: Session) -> ChainHead:
    """The committed (or this transaction's) head, without locking it."""
    row = session.execute(
        select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == HEAD_ROW_ID)
    ).one_or_none()
    return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(int(row.seq), str(row.entry_hash))


# --- append and sign -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditRecord:
    """One entry to append with :func:`append_many`: who did what to which subject."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: Mapping[str, Any] | None = None


def _checked_fields(record: AuditRecord) -> tuple[str, str, str, str, str]:
    """The record's fields as hashed and stored (details as canonical JSON); InvalidInput if bad."""
    _check_text("actor", record.actor, ACTOR_MAX)
    _check_text("action", record.action, ACTION_MAX)
    _check_text("subject_type", record.subject_type, SUBJECT_TYPE_MAX)
    _check_text("subject_id", record.subject_id, SUBJECT_ID_MAX)
    details_text = _details_text(record.details)
    return record.actor, record.action, record.subject_type, record.subject_id, details_text


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, Any] | None = None,
    signer: MessageSigner | None = None,
    sign_every: int = 1,
) -> AuditEntry:
    """Add an entry inside the caller's transaction (the caller commits or rolls back).

    With a ``signer``, the new head is signed when its seq is a multiple of ``sign_every``.
    """
    *_, details_text = _checked_fields(AuditRecord(actor, action, subject_type, subject_id, details))
    if sign_every < 1:
        raise InvalidInput("sign_every 必须为正整数", "sign_every must be a positive integer")

    head = _lock_head(session, 1)
    seq, prev_hash = head.seq, head.entry_hash
    time = utcnow()
    payload = entry_payload(
        seq=seq,
        time=time,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details_text,
    )
    entry = AuditEntry(
        seq=seq,
        time=time,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details_text,
        prev_hash=prev_hash,
        entry_hash=compute_entry_hash(prev_hash, payload),
    )
    session.add(entry)
    session.execute(
        update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(entry_hash=entry.entry_hash)
    )
    session.flush()
    if signer is not None and seq % sign_every == 0:
        sign_head(session, signer)
    return entry


def append_many(session: Session, records: Sequence[AuditRecord]) -> list[ChainHead]:
    """Add ``records`` in order inside the caller's transaction, with one move of the head.

    Every record is checked before anything is written (InvalidInput changes nothing). The head is
    locked and advanced by ``len(records)`` in one statement, so the entries get consecutive numbers
    with no other entry between them, each linked to the one before exactly as :func:`append` would
    link it. Returns each entry's (seq, entry_hash). Heads are not signed here (see
    :func:`sign_head`).
    """
    checked = [_checked_fields(r) for r in records]
    if not checked:
        return []
    head = _lock_head(session, len(checked))
    seq, prev_hash = head.seq - len(checked), head.entry_hash
    rows: list[dict[str, Any]] = []
    positions: list[ChainHead] = []
    for actor, action, subject_type, subject_id, details_text in checked:
        seq += 1
        time = utcnow()
        payload = entry_payload(
            seq=seq,
            time=time,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            details=details_text,
        )
        entry_hash = compute_entry_hash(prev_hash, payload)
        rows.append(
            {
                "seq": seq,
                "time": time,
                "actor": actor,
                "action": action,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "details": details_text,
                "prev_hash": prev_hash,
                "entry_hash": entry_hash,
            }
        )
        positions.append(ChainHead(seq, entry_hash))
        prev_hash = entry_hash
    if seq != head.seq:  # pragma: no cover - arithmetic above
        raise AuditChainError("审计链编号不连续", "audit entry numbers are not consecutive")
    session.execute(insert(AuditEntry), rows)
    session.execute(update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(entry_hash=prev_hash))
    return positions


def sign_head(session: Session, signer: MessageSigner) -> AuditHeadSignature:
    """Sign the current head inside the caller's transaction; idempotent per (seq, signer)."""
    head = _lock_head(session, 0)
    if head.seq == 0:
        raise Conflict("审计链为空，无链头可签", "the audit chain is empty; there is no head to sign")
    public_key = signer.public_key
    fingerprint = key_fingerprint(public_key)
    existing = session.scalars(
        select(AuditHeadSignature).where(
            AuditHeadSignature.seq == head.seq,
            AuditHeadSignature.entry_hash == head.entry_hash,
            AuditHeadSignature.signer_fingerprint == fingerprint,
        )
    ).first()
    if existing is not None:
        return existing
    record = AuditHeadSignature(
        seq=head.seq,
        entry_hash=head.entry_hash,
        signature=signer.sign(head_message(head.seq, head.entry_hash)),
        signer_public_key=public_key.point,
        signer_fingerprint=fingerprint,
        time=utcnow(),
    )
    session.add(record)
    session.flush()
    return record


def history(session: Session, subject_type: str, subject_id: str) -> list[AuditEntry]:
    """Entries about one subject, oldest first."""
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject_type == subject_type, AuditEntry.subject_id == subject_id)
            .order_by(AuditEntry.seq)
        )
    )


# --- verification ----------------------------------------------------------------------------------
class ChainBreak(StrEnum):
    HASH_MISMATCH = "hash_mismatch"
    PREV_MISMATCH = "prev_mismatch"
    GAP = "gap"
    HEAD_MISMATCH = "head_mismatch"
    BAD_HEAD_SIGNATURE = "bad_head_signature"


_BREAK_MESSAGES: dict[ChainBreak, tuple[str, str]] = {
    ChainBreak.HASH_MISMATCH: (
        "第 {seq} 条审计记录与其哈希不符（记录被修改）",
        "audit entry {seq} does not match its hash (the entry was edited)",
    ),
    ChainBreak.PREV_MISMATCH: (
        "第 {seq} 条审计记录未链接到前一条（记录被删除、替换或重排）",
        "audit entry {seq} does not link to the previous entry (an entry was deleted, replaced or reordered)",
    ),
    ChainBreak.GAP: (
        "审计链缺少第 {seq} 条记录（记录被删除）",
        "audit entry {seq} is missing from the chain (an entry was deleted)",
    ),
    ChainBreak.HEAD_MISMATCH: (
        "审计链在第 {seq} 条处与链头不符（末尾被截断或链头被篡改）：{detail_zh}",
        "the audit chain disagrees with its head at entry {seq} "
        "(tail truncated or head altered): {detail_en}",
    ),
    ChainBreak.BAD_HEAD_SIGNATURE: (
        "第 {seq} 条处的链头签名无效：{detail_zh}",
        "the head signature at entry {seq} is invalid: {detail_en}",
    ),
}


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries_checked: int
    last_seq: int
    last_hash: str
    signatures_checked: int
    last_signed_seq: int | None
    signatures_authenticated: bool
    broken_seq: int | None = None
    reason: ChainBreak | None = None
    message_zh: str = ""
    message_en: str = ""

    @property
    def message(self) -> str:
        return f"{self.message_zh} / {self.message_en}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "signatures_checked": self.signatures_checked,
            "last_signed_seq": self.last_signed_seq,
            "signatures_authenticated": self.signatures_authenticated,
            "broken_seq": self.broken_seq,
            "reason": None if self.reason is None else str(self.reason),
            "message_zh": self.message_zh,
            "message_en": self.message_en,
        }


@dataclass(frozen=True)
class _SignedHead:
    seq: int
    entry_hash: str
    valid: bool
    problem_zh: str
    problem_en: str


class _Broken(Exception):
    def __init__(self, seq: int, reason: ChainBreak, detail_zh: str = "", detail_en: str = "") -> None:
        super().__init__(reason)
        self.seq, self.reason, self.detail_zh, self.detail_en = seq, reason, detail_zh, detail_en


def _load_signed_heads(session: Session, public_key: sm2.SM2PublicKey | None) -> dict[int, list[_SignedHead]]:
    trusted_fp = None if public_key is None else key_fingerprint(public_key)
    heads: dict[int, list[_SignedHead]] = {}
    rows = session.execute(
        select(
            AuditHeadSignature.seq,
            AuditHeadSignature.entry_hash,
            AuditHeadSignature.signature,
            AuditHeadSignature.signer_public_key,
            AuditHeadSignature.signer_fingerprint,
        ).order_by(AuditHeadSignature.seq, AuditHeadSignature.id)
    )
    for seq, entry_hash, signature, stored_key, stored_fp in rows:
        valid, zh, en = True, "", ""
        key: sm2.SM2PublicKey | None = public_key
        if key is None:
            try:
                key = sm2.SM2PublicKey.from_bytes(bytes(stored_key))
            except EsealError:
                key = None
        if key is None:
            valid, zh, en = False, "签名者公钥无效", "the stored signer public key is invalid"
        elif trusted_fp is not None and stored_fp != trusted_fp:
            valid, zh, en = False, "签名者不是受信任的密钥", "the signer is not the trusted key"
        elif not sm2.verify(key, head_message(int(seq), str(entry_hash)), bytes(signature)):
            valid, zh, en = False, "SM2 签名验证失败", "SM2 signature verification failed"
        heads.setdefault(int(seq), []).append(_SignedHead(int(seq), str(entry_hash), valid, zh, en))
    return heads


def _check_signed(signed: list[_SignedHead], seq: int, entry_hash: str) -> None:
    for head in signed:
        if not head.valid:
            raise _Broken(seq, ChainBreak.BAD_HEAD_SIGNATURE, head.problem_zh, head.problem_en)
        if head.entry_hash != entry_hash:
            raise _Broken(
                seq,
                ChainBreak.HEAD_MISMATCH,
                "已签名链头的哈希与该条记录不符",
                "the signed head's hash differs from this entry",
            )


def verify_chain(
    session: Session, *, public_key: sm2.SM2PublicKey | None = None, batch_size: int = 1000
) -> ChainReport:
    """Walk the whole chain and report the first broken link, if any.

    With ``public_key``, every head signature must be by that key. Without it, signatures are checked
    against the public key stored beside them: this finds corrupted signatures and rewritten entries
    under an old signature, but a forger could have re-signed with a key of their own
    (``signatures_authenticated`` is then False).

    Entries are streamed (``yield_per``) so memory stays flat however long the chain is.
    """
    signed = _load_signed_heads(session, public_key)
    signatures_checked = sum(len(v) for v in signed.values())
    last_signed_seq = max(signed) if signed else None
    head_before = session.execute(
        select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == HEAD_ROW_ID)
    ).one_or_none()

    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    hash_at_head: str | None = None
    rows = session.execute(
        select(
            AuditEntry.seq,
            AuditEntry.time,
            AuditEntry.actor,
            AuditEntry.action,
            AuditEntry.subject_type,
            AuditEntry.subject_id,
            AuditEntry.details,
            AuditEntry.prev_hash,
            AuditEntry.entry_hash,
        )
        .order_by(AuditEntry.seq)
        .execution_options(yield_per=batch_size)
    )
    try:
        try:
            for row in rows:
                seq = int(row.seq)
                if seq != expected_seq:
                    raise _Broken(expected_seq, ChainBreak.GAP)
                if row.prev_hash != prev_hash:
                    raise _Broken(seq, ChainBreak.PREV_MISMATCH)
                payload = entry_payload(
                    seq=seq,
                    time=row.time,
                    actor=row.actor,
                    action=row.action,
                    subject_type=row.subject_type,
                    subject_id=row.subject_id,
                    details=row.details,
                )
                if compute_entry_hash(prev_hash, payload) != row.entry_hash:
                    raise _Broken(seq, ChainBreak.HASH_MISMATCH)
                _check_signed(signed.pop(seq, []), seq, row.entry_hash)
                prev_hash = row.entry_hash
                if head_before is not None and seq == head_before.seq:
                    hash_at_head = prev_hash
                expected_seq += 1
                checked += 1
        finally:
            rows.close()
        last_seq = expected_seq - 1
        _check_tail(session, signed, head_before, last_seq, prev_hash, hash_at_head)
    except _Broken as broken:
        zh, en = _BREAK_MESSAGES[broken.reason]
        fmt = {"seq": broken.seq, "detail_zh": broken.detail_zh, "detail_en": broken.detail_en}
        return ChainReport(
            ok=False,
            entries_checked=checked,
            last_seq=expected_seq - 1,
            last_hash=prev_hash,
            signatures_checked=signatures_checked,
            last_signed_seq=last_signed_seq,
            signatures_authenticated=public_key is not None,
            broken_seq=broken.seq,
            reason=broken.reason,
            message_zh=zh.format(**fmt),
            message_en=en.format(**fmt),
        )
    return ChainReport(
        ok=True,
        entries_checked=checked,
        last_seq=last_seq,
        last_hash=prev_hash,
        signatures_checked=signatures_checked,
        last_signed_seq=last_signed_seq,
        signatures_authenticated=public_key is not None,
        message_zh=f"审计链完整：共 {checked} 条记录，{signatures_checked} 个链头签名",
        message_en=f"audit chain intact: {checked} entries, {signatures_checked} head signatures",
    )


def _check_tail(
    session: Session,
    unmatched_signed: dict[int, list[_SignedHead]],
    head_before: Any,
    last_seq: int,
    last_hash: str,
    hash_at_head: str | None,
) -> None:
    """Compare the walked chain's end with the signed heads beyond it and with the head row."""
    for seq in sorted(unmatched_signed):
        for head in unmatched_signed[seq]:
            if not head.valid:
                raise _Broken(seq, ChainBreak.BAD_HEAD_SIGNATURE, head.problem_zh, head.problem_en)
        raise _Broken(
            last_seq + 1,
            ChainBreak.HEAD_MISMATCH,
            f"第 {seq} 条的链头已签名，但链只到第 {last_seq} 条",
            f"a head at entry {seq} was signed but the chain ends at entry {last_seq}",
        )
    if head_before is None:
        if last_seq > 0:
            raise _Broken(1, ChainBreak.HEAD_MISMATCH, "链头记录缺失", "the head row is missing")
        return
    head_seq, head_hash = int(head_before.seq), str(head_before.entry_hash)
    if last_seq < head_seq:
        raise _Broken(
            last_seq + 1,
            ChainBreak.HEAD_MISMATCH,
            f"链头为第 {head_seq} 条，但链只到第 {last_seq} 条",
            f"the head is at entry {head_seq} but the chain ends at entry {last_seq}",
        )
    if head_seq > 0 and hash_at_head != head_hash:
        raise _Broken(head_seq, ChainBreak.HEAD_MISMATCH, "链头哈希与记录不符", "the head hash differs")
    if last_seq > head_seq:
        # Appends committed while the walk ran move the head on together with their entries, so a
        # head re-read now must have caught up; entries beyond it were added behind its back.
        now = current_head(session)
        if now.seq < last_seq:
            raise _Broken(
                now.seq + 1,
                ChainBreak.HEAD_MISMATCH,
                f"第 {now.seq + 1} 条起的记录不在链头之内",
                f"entries from {now.seq + 1} on lie beyond the head",
            )
        if now.seq == last_seq and now.entry_hash != last_hash:
            raise _Broken(last_seq, ChainBreak.HEAD_MISMATCH, "链头哈希与记录不符", "the head hash differs")
