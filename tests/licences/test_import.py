"""Stock imports: every row validated before anything is written (row-level errors), then rendered,
sealed through the batch machinery and recorded with progress; a ``kill -9`` in the middle and a
rerun give exactly one licence per row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import transaction
from core.errors import InputTooLarge, MalformedData
from licence_store.models import Licence
from licence_store.stock_import import (
    ImportInvalid,
    ImportProgress,
    create_import,
    import_progress,
    run_import,
)
from signer.batch import WorkerResources
from signer.batch_models import BatchItem
from tests.registry.conftest import uscc

from .conftest import SIGNER, TYPE_CODE, Store, assert_passed, decode_qr, zip_entries

HEADER = (
    "licence_number,holder_name,holder_code,holder_code_type,issue_date,company_type,"
    "fields.registered_capital,client_key\n"
)


def _csv(n: int, start: int = 1) -> bytes:
    lines = [HEADER]
    for i in range(start, start + n):
        lines.append(
            f"S{i:05d},存量公司{i},{uscc(1000 + i)},uscc,2019-06-{1 + i % 28:02d},有限责任公司,{i},row-{i}\n"
        )
    return "".join(lines).encode()


def _create(store: Store, data: bytes, fmt: str = "csv") -> str:
    with transaction(store.sessions) as s:
        imp, _created = create_import(
            s, type_ref=TYPE_CODE, department_id=store.department.id, data=data, fmt=fmt, actor=SIGNER
        )
        return imp.id


def _resources(store: Store) -> WorkerResources:
    return WorkerResources(store.reg.settings, store.sessions, store.reg.keystore, store.blobs)


def _licences(store: Store) -> int:
    with store.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Licence)) or 0)


def test_import_validates_then_issues_with_progress(store: Store) -> None:
    import_id = _create(store, _csv(12))
    seen: list[ImportProgress] = []
    progress, summary = run_import(
        _resources(store), store.services, import_id, actor=SIGNER, workers=1, on_progress=seen.append
    )
    assert progress.issued == 12 and progress.failed == 0 and progress.finished
    assert summary is not None and summary.progress.done == 12
    assert seen[-1].issued == 12 and any(p.rendered == 12 for p in seen)
    assert [p.issued for p in seen] == sorted(p.issued for p in seen)
    with store.sessions() as s:
        rows = list(s.scalars(select(Licence).order_by(Licence.licence_number)))
    assert [r.client_key for r in rows] == [f"row-{i}" for i in range(1, 13)]
    assert (
        rows[0].issue_date.isoformat() == "2019-06-02"
        and json.loads(rows[0].fields_json)["registered_capital"] == 1
    )
    for row in (rows[0], rows[-1]):
        data = store.file(row)
        assert_passed(data, store.trust)
        assert decode_qr(zip_entries(data)["Doc_0/Res/qr.png"]).endswith(row.identifier)
    # Running again, or importing the same file again, adds nothing.
    again, _ = run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=1)
    assert again.issued == 12 and _licences(store) == 12
    assert _create(store, _csv(12)) == import_id
    # A new file repeating a row already issued (same client key) issues only the new row.
    overlapping = _create(store, _csv(2, start=12))
    done, _ = run_import(_resources(store), store.services, overlapping, actor=SIGNER, workers=1)
    assert done.issued == 2 and _licences(store) == 13


def test_rendering_in_a_process_pool_gives_the_same_licences(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licence_store import stock_import

    monkeypatch.setattr(stock_import, "POOL_RENDER_ABOVE", 3)
    import_id = _create(store, _csv(8))
    progress, _ = run_import(_resources(store), store.services, import_id, actor=SIGNER, workers=2)
    assert progress.issued == 8 and _licences(store) == 8
    with store.sessions() as s:
        rows = list(s.scalars(select(Licence).order_by(Licence.licence_number)))
    for row in rows[:2]:
        data = store.file(row)
        assert_passed(data, store.trust)
        assert decode_qr(zip_entries(data)["Doc_0/Res/qr.png"]).endswith(row.identifier)


def test_bad_rows_refuse_the_whole_file_and_change_nothing(store: Store) -> None:
    store.issue(1)
    data = _csv(5).decode()
    taken = store.issue(2)
    before = store.snapshot()
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2].replace("有限责任公司,2,", "有限责任公司,two,")  # row 2: not an integer
    lines[3] = lines[3].replace(",uscc,", ",uscc_code,")  # row 3: unknown code type
    lines[4] = lines[4].replace("row-4", "row-1")  # row 4: duplicate client key
    lines.append(
        f"{taken.licence_number},重复公司,{uscc(1999)},uscc,2019-06-01,有限责任公司,1,row-x\n"
    )  # row 6
    lines.append('"unterminated,quote\n')
    with pytest.raises(MalformedData, match="line 8"):
        _create(store, "".join(lines).encode())
    lines.pop()
    lines.append("S9,x\n")  # row 7: too few cells
    with pytest.raises(ImportInvalid) as caught:
        _create(store, "".join(lines).encode())
    errors = caught.value.details["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (2, "fields.registered_capital"),
        (3, "holder_code_type"),
        (4, "client_key"),
        (6, "licence_number"),
        (7, "$"),
    ]
    assert [e["line"] for e in errors] == [3, 4, 5, 7, 8]
    assert caught.value.details["rows"] == 7 and caught.value.details["bad_rows"] == 5
    with pytest.raises(ImportInvalid, match="unknown columns"):
        _create(store, b"licence_number,shoe_size\nX,42\n")
    with pytest.raises(ImportInvalid) as caught:
        _create(store, json.dumps([{"licence_number": "J1"}, "not an object"]).encode(), "json")
    assert {(e["row"], e["field"]) for e in caught.value.details["errors"]} >= {(1, "holder_name"), (2, "$")}
    with pytest.raises(MalformedData):
        _create(store, b"\xff\xfe not utf-8")
    with pytest.raises(MalformedData):
        _create(store, b"[1, 2", "json")
    with pytest.raises(InputTooLarge):
        from licence_store import stock_import

        stock_import.parse_rows(b" " * (stock_import.MAX_IMPORT_BYTES + 1), "csv", {})
    assert store.snapshot() == before


def _child_env(store: Store) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ESEAL_VAR_DIR": str(store.reg.settings.var_dir),
            "ESEAL_DATABASE_URL": store.reg.url,
            "ESEAL_KEYSTORE_PASSPHRASE": "registry test passphrase",
            "ESEAL_PUBLIC_BASE_URL": store.services.public_base_url,
        }
    )
    return env


def _sealed(store: Store) -> int:
    with store.sessions() as s:
        return int(
            s.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state == "done")) or 0
        )


def test_kill_9_halfway_then_rerun_gives_exactly_one_licence_per_row(store: Store, tmp_path: Path) -> None:
    n = 90
    source = tmp_path / "stock.csv"
    source.write_bytes(_csv(n))
    command = [
        str(Path(sys.executable).with_name("eseal")),
        "licence",
        "import",
        str(source),
        "--type",
        TYPE_CODE,
        "--department",
        store.department.id,
        "--workers",
        "1",
    ]
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        command, cwd=root, env=_child_env(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while _sealed(store) < n // 3:
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    halfway = _sealed(store)
    assert n // 3 <= halfway < n and _licences(store) == 0  # killed while sealing

    rerun = subprocess.run(
        command, cwd=root, env=_child_env(store), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "继续导入 resuming import" in rerun.stdout and f"issued {n}, failed 0, total {n}" in rerun.stdout
    with store.sessions() as s:
        rows = list(s.scalars(select(Licence)))
        imp_id = s.scalar(select(func.min(BatchItem.job_id)))
        assert imp_id is not None
    assert len(rows) == n
    assert len({r.client_key for r in rows}) == n and len({r.identifier for r in rows}) == n
    assert len({r.licence_number for r in rows}) == n and len({r.ofd_sm3 for r in rows}) == n
    with store.sessions() as s:
        assert int(s.scalar(select(func.count()).select_from(BatchItem)) or 0) == n
        imports = s.scalars(
            select(func.count()).select_from(BatchItem).where(BatchItem.state != "done")
        ).one()
        assert imports == 0
    assert_passed(store.file(rows[0]), store.trust)
    with store.sessions() as s:
        from licence_store.models import LicenceImport

        imp = s.scalar(select(LicenceImport))
        assert imp is not None
        progress = import_progress(s, imp.id)
    assert (progress.issued, progress.pending, progress.rendered, progress.failed) == (n, 0, 0, 0)
