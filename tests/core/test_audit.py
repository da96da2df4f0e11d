"""The audit chain detects edits, deletions, reordering and truncation, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import gmalg
import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import AuditEntry, AuditHeadSignature, ChainBreak, verify_chain
from core.db import Base, make_engine, make_session_factory, transaction
from core.errors import Conflict, InvalidInput
from gmpki import sm2
from gmpki.signing import InMemorySigner


def _append_n(factory: sessionmaker[Session], n: int, **kwargs: Any) -> list[AuditEntry]:
    entries = []
    for i in range(n):
        with transaction(factory) as s:
            entries.append(
                audit.append(
                    s,
                    actor=f"user-{i % 3}",
                    action="seal.issue" if i % 2 else "seal.create",
                    subject_type="seal",
                    subject_id=f"110000{i:010d}",
                    details={"i": i, "名称": "测试印章", "nested": {"b": [1, 2], "a": None}},
                    **kwargs,
                )
            )
    return entries


def _verify(factory: sessionmaker[Session], **kwargs: Any) -> audit.ChainReport:
    with factory() as s:
        return verify_chain(s, **kwargs)


def _sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def _sm3_independent(data: bytes) -> str:
    h = gmalg.SM3()
    h.update(data)
    return bytes(h.value()).hex()


def test_append_links_entries_and_verifies(factory: sessionmaker[Session]) -> None:
    _append_n(factory, 5)
    with factory() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
        prev = "00" * 32
        for r in rows:
            assert r.prev_hash == prev
            # Recompute with an independent SM3 implementation over the documented canonical form.
            payload = audit.canonical_json(
                [
                    "eseal-audit-entry/1",
                    r.seq,
                    r.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    r.actor,
                    r.action,
                    r.subject_type,
                    r.subject_id,
                    r.details,
                ]
            ).encode("utf-8")
            assert r.entry_hash == _sm3_independent(bytes.fromhex(prev) + payload)
            prev = r.entry_hash
        assert rows[0].details == '{"i":0,"nested":{"a":null,"b":[1,2]},"名称":"测试印章"}'
        assert audit.current_head(s) == audit.ChainHead(5, prev)
    report = _verify(factory)
    assert report.ok, report.message
    assert (report.entries_checked, report.last_seq, report.last_hash) == (5, 5, prev)
    assert report.reason is None and report.broken_seq is None
    assert "审计链完整" in report.message_zh and "intact" in report.message_en


def test_empty_chain_verifies(factory: sessionmaker[Session]) -> None:
    report = _verify(factory)
    assert report.ok and report.entries_checked == 0 and report.last_hash == "00" * 32


def test_history_lists_a_subject_oldest_first(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        for action in ("seal.create", "seal.issue", "seal.revoke"):
            audit.append(s, actor="admin", action=action, subject_type="seal", subject_id="S1")
        audit.append(s, actor="admin", action="seal.create", subject_type="seal", subject_id="S2")
    with factory() as s:
        assert [e.action for e in audit.history(s, "seal", "S1")] == [
            "seal.create",
            "seal.issue",
            "seal.revoke",
        ]
        assert audit.history(s, "seal", "S2")[0].details_dict() == {}


def test_edited_details_is_a_hash_mismatch_at_that_entry(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 6)
    _sql(migrated_engine, "UPDATE audit_entries SET details = :d WHERE seq = 4", d='{"i":99}')
    report = _verify(factory)
    assert not report.ok
    assert (report.broken_seq, report.reason) == (4, ChainBreak.HASH_MISMATCH)
    assert report.entries_checked == 3
    assert "第 4 条" in report.message_zh and "entry 4" in report.message_en


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "mallory"), ("time", None), ("subject_id", "other"), ("action", "seal.revoke")],
)
def test_any_edited_field_breaks_the_hash(
    factory: sessionmaker[Session], migrated_engine: Engine, column: str, value: str | None
) -> None:
    _append_n(factory, 3)
    if column == "time":
        # Shift by one microsecond: the smallest edit either backend can store.
        with factory() as s:
            old = s.scalars(select(AuditEntry.time).where(AuditEntry.seq == 2)).one()
            s.execute(
                update(AuditEntry).where(AuditEntry.seq == 2).values(time=old + timedelta(microseconds=1))
            )
            s.commit()
    else:
        _sql(migrated_engine, f"UPDATE audit_entries SET {column} = :v WHERE seq = 2", v=value)
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 2, ChainBreak.HASH_MISMATCH)


def test_deleted_entry_is_reported_as_the_gap(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 6)
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq = 3")
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, ChainBreak.GAP)
    assert "缺少第 3 条" in report.message_zh


def test_deleted_entry_with_renumbering_breaks_the_link(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 5)
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq = 3")
    for seq in (4, 5):
        _sql(migrated_engine, "UPDATE audit_entries SET seq = :n WHERE seq = :o", n=seq - 1, o=seq)
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, ChainBreak.PREV_MISMATCH)


def _swap(engine: Engine, a: int, b: int, columns: list[str]) -> None:
    with engine.begin() as conn:
        rows = {
            r.seq: r
            for r in conn.execute(
                text(f"SELECT seq, {', '.join(columns)} FROM audit_entries WHERE seq IN (:a, :b)"),
                {"a": a, "b": b},
            )
        }
        for target, source in ((a, b), (b, a)):
            sets = ", ".join(f"{c} = :{c}" for c in columns)
            values = {c: getattr(rows[source], c) for c in columns}
            conn.execute(text(f"UPDATE audit_entries SET {sets} WHERE seq = :seq"), {**values, "seq": target})


def test_reordered_entries_are_reported(factory: sessionmaker[Session], migrated_engine: Engine) -> None:
    _append_n(factory, 6)
    everything = [
        "time",
        "actor",
        "action",
        "subject_type",
        "subject_id",
        "details",
        "prev_hash",
        "entry_hash",
    ]
    _swap(migrated_engine, 4, 5, everything)
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 4, ChainBreak.PREV_MISMATCH)


def test_swapped_payloads_under_kept_hashes_are_reported(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 6)
    _swap(migrated_engine, 2, 3, ["time", "actor", "action", "subject_id", "details"])
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 2, ChainBreak.HASH_MISMATCH)


def test_truncated_tail_is_a_head_mismatch(factory: sessionmaker[Session], migrated_engine: Engine) -> None:
    _append_n(factory, 5)
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq >= 4")
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 4, ChainBreak.HEAD_MISMATCH)
    assert report.entries_checked == 3


def test_entries_beyond_the_head_are_a_head_mismatch(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 4)
    # Roll the head row back as if entries 3 and 4 had been slipped in behind it.
    with factory() as s:
        hash2 = s.scalars(select(AuditEntry.entry_hash).where(AuditEntry.seq == 2)).one()
    _sql(migrated_engine, "UPDATE audit_head SET seq = 2, entry_hash = :h", h=hash2)
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, ChainBreak.HEAD_MISMATCH)


def test_altered_head_hash_is_a_head_mismatch(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _append_n(factory, 3)
    _sql(migrated_engine, "UPDATE audit_head SET entry_hash = :h", h="ab" * 32)
    report = _verify(factory)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, ChainBreak.HEAD_MISMATCH)


def _signer() -> InMemorySigner:
    return InMemorySigner(sm2.SM2PrivateKey.generate())


def test_signed_heads_verify(factory: sessionmaker[Session]) -> None:
    signer = _signer()
    _append_n(factory, 7, signer=signer, sign_every=3)
    with factory() as s:
        sigs = s.scalars(select(AuditHeadSignature).order_by(AuditHeadSignature.seq)).all()
        assert [g.seq for g in sigs] == [3, 6]
        entry6 = s.get(AuditEntry, 6)
        assert entry6 is not None and sigs[1].entry_hash == entry6.entry_hash
        assert sigs[0].signer_fingerprint == audit.key_fingerprint(signer.public_key)
        assert sm2.verify(signer.public_key, audit.head_message(6, sigs[1].entry_hash), sigs[1].signature)
    report = _verify(factory, public_key=signer.public_key)
    assert report.ok, report.message
    assert (report.signatures_checked, report.last_signed_seq, report.signatures_authenticated) == (
        2,
        6,
        True,
    )
    unauthenticated = _verify(factory)
    assert unauthenticated.ok and not unauthenticated.signatures_authenticated


def test_sign_head_is_idempotent_and_refuses_an_empty_chain(factory: sessionmaker[Session]) -> None:
    signer = _signer()
    with transaction(factory) as s, pytest.raises(Conflict):
        audit.sign_head(s, signer)
    _append_n(factory, 2)
    with transaction(factory) as s:
        first = audit.sign_head(s, signer)
        again = audit.sign_head(s, signer)
        assert first.id == again.id and first.seq == 2
    assert _verify(factory, public_key=signer.public_key).ok


def test_forged_head_signature_fails(factory: sessionmaker[Session], migrated_engine: Engine) -> None:
    signer = _signer()
    _append_n(factory, 4, signer=signer, sign_every=2)
    with factory() as s:
        sig = s.scalars(select(AuditHeadSignature.signature).where(AuditHeadSignature.seq == 4)).one()
    forged = bytearray(sig)
    forged[-1] ^= 0x01
    _sql(migrated_engine, "UPDATE audit_head_signatures SET signature = :g WHERE seq = 4", g=bytes(forged))
    for key in (signer.public_key, None):
        report = _verify(factory, public_key=key)
        assert (report.ok, report.broken_seq, report.reason) == (False, 4, ChainBreak.BAD_HEAD_SIGNATURE)
    assert "签名无效" in report.message_zh


def test_head_signed_by_another_key_fails_against_the_trusted_key(factory: sessionmaker[Session]) -> None:
    trusted, other = _signer(), _signer()
    _append_n(factory, 2, signer=trusted, sign_every=1)
    with transaction(factory) as s:
        audit.append(s, actor="x", action="a", subject_type="t", subject_id="3", signer=other)
    assert _verify(factory).ok  # internally consistent, but not by the trusted key
    report = _verify(factory, public_key=trusted.public_key)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, ChainBreak.BAD_HEAD_SIGNATURE)


def _rehash_from(engine: Engine, start: int) -> None:
    """Play the forger with database access: recompute every hash from ``start`` and the head row."""
    with engine.begin() as conn:
        prev = conn.execute(
            text("SELECT entry_hash FROM audit_entries WHERE seq = :s"), {"s": start - 1}
        ).scalar()
        prev = prev or "00" * 32
        factory = make_session_factory(engine)
        with factory() as s:
            rows = s.execute(
                select(AuditEntry).where(AuditEntry.seq >= start).order_by(AuditEntry.seq)
            ).scalars()
            for r in rows:
                payload = audit.entry_payload(
                    seq=r.seq,
                    time=r.time,
                    actor=r.actor,
                    action=r.action,
                    subject_type=r.subject_type,
                    subject_id=r.subject_id,
                    details=r.details,
                )
                new = audit.compute_entry_hash(prev, payload)
                conn.execute(
                    text("UPDATE audit_entries SET prev_hash = :p, entry_hash = :h WHERE seq = :s"),
                    {"p": prev, "h": new, "s": r.seq},
                )
                prev = new
        last = conn.execute(text("SELECT max(seq) FROM audit_entries")).scalar()
        conn.execute(text("UPDATE audit_head SET seq = :s, entry_hash = :h"), {"s": last, "h": prev})


def test_rewritten_chain_is_caught_only_by_the_signed_head(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    signer = _signer()
    _append_n(factory, 6, signer=signer, sign_every=4)
    _sql(migrated_engine, "UPDATE audit_entries SET details = :d WHERE seq = 2", d='{"forged":true}')
    _rehash_from(migrated_engine, 2)
    report = _verify(factory, public_key=signer.public_key)
    assert (report.ok, report.broken_seq, report.reason) == (False, 4, ChainBreak.HEAD_MISMATCH)
    assert report.entries_checked == 3


def test_truncation_below_a_signed_head_is_caught_even_with_the_head_row_fixed(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    signer = _signer()
    _append_n(factory, 6, signer=signer, sign_every=5)
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq >= 5")
    _rehash_from(migrated_engine, 5)  # only moves the head row back to entry 4
    report = _verify(factory, public_key=signer.public_key)
    assert (report.ok, report.broken_seq, report.reason) == (False, 5, ChainBreak.HEAD_MISMATCH)


def test_rollback_removes_the_entry_and_leaves_no_gap(factory: sessionmaker[Session]) -> None:
    _append_n(factory, 2)
    with pytest.raises(RuntimeError), transaction(factory) as s:
        audit.append(s, actor="a", action="seal.revoke", subject_type="seal", subject_id="X")
        raise RuntimeError("state change failed")
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 2
        assert audit.current_head(s).seq == 2
    with transaction(factory) as s:
        assert audit.append(s, actor="a", action="seal.revoke", subject_type="seal", subject_id="X").seq == 3
    assert _verify(factory).ok


def test_verification_streams_in_batches(factory: sessionmaker[Session], migrated_engine: Engine) -> None:
    with transaction(factory) as s:
        for i in range(25):
            audit.append(s, actor="bulk", action="licence.issue", subject_type="licence", subject_id=str(i))
    assert _verify(factory, batch_size=4).entries_checked == 25
    _sql(migrated_engine, "UPDATE audit_entries SET actor = 'x' WHERE seq = 23")
    report = _verify(factory, batch_size=4)
    assert (report.broken_seq, report.reason) == (23, ChainBreak.HASH_MISMATCH)


@pytest.mark.parametrize(
    "bad",
    [
        {"actor": ""},
        {"actor": "a" * 256},
        {"subject_id": "nul\x00byte"},
        {"action": "\ud800"},
        {"details": {"x": float("nan")}},
        {"details": {"x": object()}},
        {"details": {"x": "\udfff"}},
        {"sign_every": 0},
    ],
)
def test_append_rejects_bad_fields(factory: sessionmaker[Session], bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"actor": "a", "action": "b", "subject_type": "c", "subject_id": "d", **bad}
    with factory() as s:
        with pytest.raises(InvalidInput):
            audit.append(s, **fields)
        s.rollback()
        assert audit.current_head(s).seq == 0


def test_concurrent_appends_do_not_fork_the_chain(factory: sessionmaker[Session]) -> None:
    threads_n, per_thread = 6, 8
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(tid: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with transaction(factory) as s:
                    # A state change first, so the head lock is taken inside a busy transaction.
                    s.execute(select(func.count()).select_from(AuditEntry))
                    audit.append(
                        s, actor=f"t{tid}", action="op", subject_type="thread", subject_id=f"{tid}-{i}"
                    )
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = threads_n * per_thread
    with factory() as s:
        seqs = s.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
        assert seqs == list(range(1, total + 1))
        assert len(set(s.scalars(select(AuditEntry.prev_hash)).all())) == total  # no two share a parent
    report = _verify(factory)
    assert report.ok and report.entries_checked == total


def test_postgres_second_appender_waits_for_the_first(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    if migrated_engine.dialect.name != "postgresql":
        pytest.skip("row-lock interleaving is specific to PostgreSQL (SQLite serialises whole writes)")
    first = factory()
    audit.append(first, actor="a", action="op", subject_type="t", subject_id="1")
    done = threading.Event()
    result: list[int] = []

    def second() -> None:
        with transaction(factory) as s:
            result.append(audit.append(s, actor="b", action="op", subject_type="t", subject_id="2").seq)
        done.set()

    t = threading.Thread(target=second)
    t.start()
    assert not done.wait(0.5), "second appender must block on the head lock"
    first.commit()
    first.close()
    t.join(10)
    assert result == [2]
    assert _verify(factory).ok


# --- append_many ------------------------------------------------------------------------------------------
def _records(n: int, start: int = 0) -> list[audit.AuditRecord]:
    return [
        audit.AuditRecord(
            f"batch-{i % 2}",
            "signature.made",
            "seal",
            "S1",
            {"i": i, "文档": f"第{i}份", "nested": {"b": [i], "a": None}},
        )
        for i in range(start, start + n)
    ]


def _rows(factory: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with factory() as s:
        return [
            (
                e.seq,
                e.time,
                e.actor,
                e.action,
                e.subject_type,
                e.subject_id,
                e.details,
                e.prev_hash,
                e.entry_hash,
            )
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]


def test_append_many_gives_the_chain_one_by_one_appends_give(
    factory: sessionmaker[Session], migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _append_n(factory, 2)
    with transaction(factory) as s:
        positions = audit.append_many(s, _records(5))
        assert [p.seq for p in positions] == [3, 4, 5, 6, 7]
        assert audit.current_head(s) == positions[-1]
    with transaction(factory) as s:
        audit.append(s, actor="a", action="seal.issue", subject_type="seal", subject_id="S2")
        assert audit.append_many(s, []) == []
        audit.append_many(s, _records(1, start=5))
    many = _rows(factory)
    assert [r[0] for r in many] == list(range(1, 10))
    assert _verify(factory).ok

    # The same records appended one by one at the same times give the same rows, hashes included.
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq > 2")
    _sql(migrated_engine, "UPDATE audit_head SET seq = 2, entry_hash = :h", h=many[1][8])
    times = iter(r[1] for r in many[2:])
    monkeypatch.setattr(audit, "utcnow", lambda: next(times))
    for record in _records(5):
        with transaction(factory) as s:
            audit.append(
                s,
                actor=record.actor,
                action=record.action,
                subject_type=record.subject_type,
                subject_id=record.subject_id,
                details=record.details,
            )
    with transaction(factory) as s:
        audit.append(s, actor="a", action="seal.issue", subject_type="seal", subject_id="S2")
        (record,) = _records(1, start=5)
        audit.append(
            s,
            actor=record.actor,
            action=record.action,
            subject_type="seal",
            subject_id="S1",
            details=record.details,
        )
    assert _rows(factory) == many


def test_append_many_checks_every_record_first_and_rolls_back_whole(factory: sessionmaker[Session]) -> None:
    _append_n(factory, 1)
    bad = [*_records(3), audit.AuditRecord("a", "b", "c", "nul\x00")]
    with factory() as s:
        with pytest.raises(InvalidInput):
            audit.append_many(s, bad)
        s.rollback()
        assert audit.current_head(s).seq == 1
    with pytest.raises(RuntimeError), transaction(factory) as s:
        audit.append_many(s, _records(4))
        raise RuntimeError("the group failed")
    with transaction(factory) as s:
        assert [p.seq for p in audit.append_many(s, _records(2))] == [2, 3]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 3
    assert _verify(factory).ok


def test_concurrent_append_many_and_append_do_not_fork_the_chain(factory: sessionmaker[Session]) -> None:
    threads_n, rounds = 4, 5
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(tid: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                with transaction(factory) as s:
                    if tid % 2:
                        audit.append(
                            s, actor=f"t{tid}", action="op", subject_type="t", subject_id=f"{tid}-{i}"
                        )
                    else:
                        audit.append_many(s, _records(3, start=10 * tid + i))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = (threads_n // 2) * rounds * (3 + 1)
    with factory() as s:
        assert s.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all() == list(range(1, total + 1))
    report = _verify(factory)
    assert report.ok and report.entries_checked == total


def _create_all_engine(url: str) -> Engine:
    eng = make_engine(url)
    tables = [AuditEntry.__table__, audit.audit_head, AuditHeadSignature.__table__]
    Base.metadata.create_all(eng, tables=tables)  # type: ignore[arg-type]
    return eng


def test_create_all_schema_gets_a_genesis_head(db_url: str) -> None:
    eng = _create_all_engine(db_url)
    try:
        factory = make_session_factory(eng)
        with factory() as s:
            assert audit.current_head(s) == audit.ChainHead(0, "00" * 32)
        _append_n(factory, 2)
        assert _verify(factory).ok
    finally:
        eng.dispose()


def test_missing_head_row_is_recreated_only_for_an_empty_chain(
    factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    _sql(migrated_engine, "DELETE FROM audit_head")
    _append_n(factory, 1)
    assert _verify(factory).ok
    _sql(migrated_engine, "DELETE FROM audit_head")
    report = _verify(factory)
    assert (report.ok, report.reason) == (False, ChainBreak.HEAD_MISMATCH)
    with transaction(factory) as s, pytest.raises(audit.AuditChainError):
        audit.append(s, actor="a", action="b", subject_type="c", subject_id="d")


def test_report_serialises(factory: sessionmaker[Session], migrated_engine: Engine) -> None:
    _append_n(factory, 2)
    _sql(migrated_engine, "DELETE FROM audit_entries WHERE seq = 1")
    body = _verify(factory).to_dict()
    assert body["ok"] is False and body["reason"] == "gap" and body["broken_seq"] == 1
