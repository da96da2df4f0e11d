"""Batch jobs end to end on SQLite and PostgreSQL: a pool of processes seals 20 licences that all verify,
re-submission is idempotent, a seal suspended mid-job fails the rest with not_usable and nothing else,
concurrent runners never sign an item twice, and bad documents fail alone with typed errors."""

from __future__ import annotations

import csv
import io
import threading

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry, verify_chain
from core.db import transaction
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from gmpki import seal as ses
from gmpki.sm3 import sm3_hex
from seal_registry.seals import authorize_use
from signer.batch import (
    CSV_COLUMNS,
    BatchInput,
    JobProgress,
    JobSpec,
    add_items,
    create_job,
    get_job,
    item_output,
    job_progress,
    job_results,
    results_csv,
    run_job,
)
from signer.batch_models import BatchItem, ItemState
from signer.batch_worker import JobSigner
from verify import Indication, verify_bytes

from .conftest import SIGNER, BatchEnv, licences, signatures_by_item

pytestmark = pytest.mark.interop


def _job(env: BatchEnv, items: list[BatchInput], **spec: object) -> str:
    with transaction(env.reg.sessions) as s:
        job = create_job(s, JobSpec(env.department_id, env.seal.es_id, **spec), actor=SIGNER)  # type: ignore[arg-type]
        add_items(s, env.res.blobs, job, items)
        return job.id


def _audit_count(env: BatchEnv) -> int:
    with env.reg.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_twenty_licences_sealed_by_a_process_pool_all_verify(env: BatchEnv, helloworld: bytes) -> None:
    documents = licences(helloworld, 20)
    job_id = _job(env, documents, placement={"page": 1, "x": 100, "y": 150}, name="twenty")
    seen: list[JobProgress] = []
    summary = run_job(
        env.res, job_id, actor=SIGNER, workers=2, group_size=4, inline_below=0, on_progress=seen.append
    )
    assert summary.errors == () and summary.signed == 20 and summary.failed == 0
    assert summary.progress == JobProgress(total=20, pending=0, done=20, failed=0)
    assert seen[0].pending == 20 and seen[-1].done == 20  # progress was reported as groups finished
    assert summary.phase_seconds[2] > 0

    trust = env.trust()
    by_key = {d.key: d for d in documents}
    with env.reg.sessions() as s:
        results = job_results(s, job_id)
        assert get_job(s, "twenty").finished_at is not None
        assert len(results) == 20 and all(r.state is ItemState.DONE and r.error_code is None for r in results)
        for r in results:
            item, sealed = item_output(s, env.res.blobs, job_id, r.key)
            assert sm3_hex(sealed) == r.output_sm3 == item.output_sm3
            assert r.input_sm3 == sm3_hex(by_key[r.key].data)
            report = verify_bytes(sealed, trust=trust)
            assert report.indication is Indication.PASSED, report.dumps()
            (signature,) = report.signatures
            assert signature.indication is Indication.PASSED
    # One signature.made entry per item, naming the job, the key, the document and the seal; the
    # entries appended a group at a time keep the chain intact.
    assert signatures_by_item(env.reg, job_id) == dict.fromkeys(by_key, 1)
    with env.reg.sessions() as s:
        chain = verify_chain(s)
        assert chain.ok, chain.message
    with env.reg.sessions() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "signature.made").limit(1))
        assert entry is not None and entry.actor == SIGNER and entry.subject_id == env.seal.id
        details = entry.details_dict()
    assert details["document_sm3"] == sm3_hex(by_key[details["batch_item_key"]].data)
    assert details["es_id"] == env.seal.es_id and details["format"] == "ofd"

    rows = list(csv.reader(io.StringIO(results_csv(results))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 21
    assert {row[0]: (row[2], row[3]) for row in rows[1:]} == {r.key: ("done", r.output_sm3) for r in results}


def test_resubmitting_is_idempotent_and_never_signs_twice(env: BatchEnv, helloworld: bytes) -> None:
    documents = licences(helloworld, 5)
    job_id = _job(env, documents)
    with transaction(env.reg.sessions) as s:
        again = add_items(
            s, env.res.blobs, get_job(s, job_id), documents[:3] + licences(helloworld, 1, start=5)
        )
    assert [a.created for a in again] == [False, False, False, True]
    assert run_job(env.res, job_id, actor=SIGNER).signed == 6
    audit_before = _audit_count(env)

    with transaction(env.reg.sessions) as s:
        job = get_job(s, job_id)
        replay = add_items(s, env.res.blobs, job, documents)
        assert all(not a.created and a.result.state is ItemState.DONE and a.result.output_sm3 for a in replay)
        outputs = {r.key: r.output_sm3 for r in job_results(s, job_id)}
        assert {a.result.key: a.result.output_sm3 for a in replay} == {
            d.key: outputs[d.key] for d in documents
        }
    second = run_job(env.res, job_id, actor=SIGNER)
    assert second.signed == 0 and second.progress.done == 6
    assert _audit_count(env) == audit_before
    assert set(signatures_by_item(env.reg, job_id).values()) == {1}

    # The same key with other content is refused as a whole; nothing is added.
    changed = BatchInput(documents[0].key, "x.ofd", licences(helloworld, 1, start=99)[0].data)
    with pytest.raises(Conflict), transaction(env.reg.sessions) as s:
        add_items(s, env.res.blobs, get_job(s, job_id), [*licences(helloworld, 1, start=50), changed])
    with env.reg.sessions() as s:
        assert job_progress(s, job_id).total == 6
    with pytest.raises(InvalidInput), transaction(env.reg.sessions) as s:
        add_items(s, env.res.blobs, get_job(s, job_id), [documents[0], documents[0]])


def test_seal_suspended_mid_job_fails_the_rest_with_not_usable(env: BatchEnv, helloworld: bytes) -> None:
    job_id = _job(env, licences(helloworld, 12))
    suspended = threading.Event()

    def suspend_after_first_group(progress: JobProgress) -> None:
        if progress.done and not suspended.is_set():
            env.reg.act(env.seal.id, "suspend", reason="lost")
            suspended.set()

    summary = run_job(env.res, job_id, actor=SIGNER, group_size=4, on_progress=suspend_after_first_group)
    assert summary.progress == JobProgress(total=12, pending=0, done=4, failed=8)
    with env.reg.sessions() as s:
        results = job_results(s, job_id)
        failed = [r for r in results if r.state is ItemState.FAILED]
        assert len(failed) == 8
        for r in failed:
            assert r.error_code == "not_usable" and r.output_sm3 is None
            assert r.error_zh and "暂停" in r.error_zh and r.error_en and "suspended" in r.error_en
            with pytest.raises(Conflict):
                item_output(s, env.res.blobs, job_id, r.key)
    made = signatures_by_item(env.reg, job_id)
    assert set(made) == {r.key for r in results if r.state is ItemState.DONE} and set(made.values()) == {1}

    # Resumed seal: a retry signs exactly the failed ones.
    env.reg.act(env.seal.id, "resume")
    retry = run_job(env.res, job_id, actor=SIGNER, retry_failed=True)
    assert retry.signed == 8 and retry.progress.done == 12
    assert set(signatures_by_item(env.reg, job_id).values()) == {1}


def test_seal_suspended_while_a_group_is_signed_delivers_none_of_it(
    env: BatchEnv, helloworld: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups are signed between two authorisations, holding no lock: a suspension that commits
    in that window refuses the whole group at the second one, so no row, audit entry or output
    names any signature made for it."""
    job_id = _job(env, licences(helloworld, 6))
    audit_before = _audit_count(env)
    made: list[bytes] = []
    real_sign = JobSigner.sign

    def sign_then_suspend(self: JobSigner, tbs: bytes, time_stamp: object = None) -> bytes:
        signature = real_sign(self, tbs, None)
        made.append(signature)
        if len(made) == 3:  # mid-group: the seal is suspended by another transaction
            env.reg.act(env.seal.id, "suspend", reason="lost while signing")
        return signature

    monkeypatch.setattr(JobSigner, "sign", sign_then_suspend)
    summary = run_job(env.res, job_id, actor=SIGNER, group_size=6)
    assert len(made) == 6  # the group was signed before the second authorisation refused it
    assert summary.signed == 0
    assert summary.progress == JobProgress(total=6, pending=0, done=0, failed=6)
    with env.reg.sessions() as s:
        results = job_results(s, job_id)
    assert {r.error_code for r in results} == {"not_usable"}
    assert all(r.output_sm3 is None and r.signing_time is None for r in results)
    assert signatures_by_item(env.reg, job_id) == {}
    # Only the suspension itself was audited.
    with env.reg.sessions() as s:
        actions = list(
            s.scalars(select(AuditEntry.action).where(AuditEntry.seq > audit_before).order_by(AuditEntry.seq))
        )
    assert "signature.made" not in actions and actions

    monkeypatch.setattr(JobSigner, "sign", real_sign)
    env.reg.act(env.seal.id, "resume")
    retry = run_job(env.res, job_id, actor=SIGNER, retry_failed=True)
    assert retry.signed == 6 and set(signatures_by_item(env.reg, job_id).values()) == {1}


def test_concurrent_runners_sign_each_item_once(env: BatchEnv, helloworld: bytes) -> None:
    job_id = _job(env, licences(helloworld, 24))
    signed: list[int] = []

    def runner() -> None:
        signed.append(run_job(env.res, job_id, actor=SIGNER, group_size=3).signed)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(signed) == 24
    assert signatures_by_item(env.reg, job_id) == {f"licence-{n:04d}.ofd": 1 for n in range(24)}


def test_bad_documents_fail_alone_with_typed_errors(env: BatchEnv, helloworld: bytes) -> None:
    good = licences(helloworld, 2)
    bad = [
        BatchInput("not-a-zip.ofd", "not-a-zip.ofd", b"%PDF-1.7 not an OFD"),
        BatchInput("no-page-9.ofd", "no-page-9.ofd", licences(helloworld, 1, start=7)[0].data),
    ]
    job_id = _job(env, [*good, bad[0]])
    summary = run_job(env.res, job_id, actor=SIGNER)
    assert summary.progress == JobProgress(total=3, pending=0, done=2, failed=1)
    with env.reg.sessions() as s:
        failed = {r.key: r for r in job_results(s, job_id) if r.state is ItemState.FAILED}
    assert failed["not-a-zip.ofd"].error_code == "malformed_data"
    assert set(signatures_by_item(env.reg, job_id)) == {g.key for g in good}

    placed = _job(env, bad[1:], placement={"page": 9, "x": 10, "y": 10})
    assert run_job(env.res, placed, actor=SIGNER).progress.failed == 1
    with env.reg.sessions() as s:
        (result,) = job_results(s, placed)
    assert result.error_code == "invalid_input" and result.error_en


def test_job_creation_refusals(env: BatchEnv) -> None:
    other, _cert = env.reg.new_department(2)
    with env.reg.sessions() as s:
        with pytest.raises(PermissionDenied):
            create_job(s, JobSpec(other.id, env.seal.es_id), actor=SIGNER)
        with pytest.raises(NotFound):
            create_job(s, JobSpec(env.department_id, "11000099999999"), actor=SIGNER)
        with pytest.raises(InvalidInput):
            create_job(s, JobSpec(env.department_id, env.seal.es_id, kind="pdf"), actor=SIGNER)
        with pytest.raises(InvalidInput):
            create_job(s, JobSpec(env.department_id, env.seal.es_id, placement={"x": 1}), actor=SIGNER)
        with pytest.raises(InvalidInput):
            create_job(
                s,
                JobSpec(env.department_id, env.seal.es_id, kind="ses", placement={"riding": True}),
                actor=SIGNER,
            )
        s.rollback()
    _job(env, [], name="taken")
    with pytest.raises(Conflict), env.reg.sessions() as s:
        create_job(s, JobSpec(env.department_id, env.seal.es_id, name="taken"), actor=SIGNER)
    with env.reg.sessions() as s, pytest.raises(PermissionDenied):
        get_job(s, "taken", department_id=other.id)


def test_job_signer_writes_what_gmpki_writes(env: BatchEnv) -> None:
    import datetime as dt

    with env.reg.sessions() as s:
        grant = authorize_use(s, es_id=env.seal.es_id, department_id=env.department_id)
        s.rollback()
    signer = JobSigner(grant, env.reg.keystore)
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    for data_hash, info in [
        (bytes(32), "a"),
        (bytes(range(32)), "/Doc_0/Signs/Sign_12/Signature.xml"),
        (b"\xff" * 32, "x" * 300),
    ]:
        tbs = signer.tbs(data_hash, info, when)
        assert tbs == ses.build_tbs_sign(grant.seal_der, data_hash, info, when)
    with pytest.raises(InvalidInput):
        signer.tbs(bytes(31), "a", when)
    with pytest.raises(InvalidInput):
        signer.tbs(bytes(32), "签章", when)


def test_items_rows_reference_no_output_until_done(env: BatchEnv, helloworld: bytes) -> None:
    job_id = _job(env, licences(helloworld, 3))
    with env.reg.sessions() as s:
        rows = list(s.scalars(select(BatchItem).where(BatchItem.job_id == job_id)))
    assert all(r.state == ItemState.PENDING.value and r.output_sm3 is None for r in rows)
    assert all(env.res.blobs.exists(r.input_sm3) for r in rows)
