"""`eseal batch run|status`: a directory and a ZIP sealed into an output folder with results.csv, a
named job resumed without signing anything twice, and ``kill -9`` of the whole run (a subprocess and
its pool) followed by a re-run that finishes every item exactly once."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from core.db import make_engine
from signer.batch import get_job
from verify import Indication, verify_bytes

from .conftest import Local, licence_ofd, signatures_by_item

pytestmark = pytest.mark.interop


def _results(out: Path) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO((out / "results.csv").read_text(encoding="utf-8"))))
    assert rows[0][:4] == ["key", "input_name", "state", "output_sm3"]
    return {row[0]: row for row in rows[1:]}


def test_batch_run_directory_and_archive_then_resume(local: Local, helloworld: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "licences"
    (folder / "2026").mkdir(parents=True)
    for n in range(4):
        (folder / "2026" / f"licence-{n}.ofd").write_bytes(licence_ofd(helloworld, n))
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n in range(4, 6):
            z.writestr(f"zip/licence-{n}.ofd", licence_ofd(helloworld, n))
    out = tmp_path / "sealed"
    command = ["batch", "run", str(folder), str(archive), "--seal", local.es_id]
    command += ["--department", local.department_id, "-o", str(out), "--job", "licences-2026"]
    command += ["--keyword", "LIC"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    keys = [f"2026/licence-{n}.ofd" for n in range(4)] + [f"zip/licence-{n}.ofd" for n in range(4, 6)]
    rows = _results(out)
    assert sorted(rows) == sorted(keys) and all(row[2] == "done" for row in rows.values())
    for key in keys:
        sealed = (out / key).read_bytes()
        assert verify_bytes(sealed, trust=local.trust).indication is Indication.PASSED
    with local.reg.sessions() as s:
        job_id = get_job(s, "licences-2026").id
    assert signatures_by_item(local.reg, job_id) == dict.fromkeys(keys, 1)

    status = CliRunner().invoke(app, ["batch", "status", "licences-2026"])
    assert status.exit_code == 0 and "licences-2026" in status.stdout
    assert "total 6  done 6  failed 0  pending 0" in status.stdout

    # Resumed with the same name: nothing is signed again; the outputs are written again.
    (out / keys[0]).unlink()
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "signed now 0" in again.stdout and (out / keys[0]).exists()
    assert signatures_by_item(local.reg, job_id) == dict.fromkeys(keys, 1)

    # Other signing options under the same name are refused.
    other = CliRunner().invoke(app, [*command[:-2], "--riding"])
    assert other.exit_code == 2 and "conflict" in other.stderr


def _count(engine: object, sql: str, **params: object) -> int:
    with engine.connect() as c:  # type: ignore[attr-defined]
        return int(c.execute(text(sql), params).scalar() or 0)


def test_kill_9_mid_run_then_resume_seals_every_item_exactly_once(
    local: Local, helloworld: bytes, tmp_path: Path
) -> None:
    total = 120
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(total):
        (folder / f"licence-{n:04d}.ofd").write_bytes(licence_ofd(helloworld, n))
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from api.cli import app; app()", "batch", "run", str(folder)]
    command += ["--seal", local.es_id, "--department", local.department_id, "-o", str(out)]
    command += ["--workers", "2", "--group-size", "2", "--job", "crash"]
    env = {**os.environ, **local.env}
    engine = make_engine(local.url)
    log = tmp_path / "killed-run.log"
    try:
        done_sql = "SELECT count(*) FROM batch_items WHERE state = 'done'"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=tmp_path,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if _count(engine, done_sql) >= 6:
                    break
                time.sleep(0.005)
            alive = proc.poll() is None
            if alive:
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pool processes, mid-run
            proc.wait(30)
        assert alive, "the run ended before it could be killed: " + log.read_text()[-2000:]

        done_at_kill = _count(engine, done_sql)
        assert 6 <= done_at_kill < total
        # Nothing half-done: pending items reference no output, done ones were audited once each.
        assert (
            _count(
                engine, "SELECT count(*) FROM batch_items WHERE state <> 'done' AND output_sm3 IS NOT NULL"
            )
            == 0
        )
        with local.reg.sessions() as s:
            job_id = get_job(s, "crash").id
        made = signatures_by_item(local.reg, job_id)
        assert len(made) == done_at_kill and set(made.values()) == {1}

        finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=180)
        assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    finally:
        engine.dispose()
    keys = [f"licence-{n:04d}.ofd" for n in range(total)]
    assert signatures_by_item(local.reg, job_id) == dict.fromkeys(keys, 1)
    rows = _results(out)
    assert sorted(rows) == keys and {row[2] for row in rows.values()} == {"done"}
    for key in keys[:: total // 12]:
        assert verify_bytes((out / key).read_bytes(), trust=local.trust).indication is Indication.PASSED


def test_cli_group_size_default_is_the_signers() -> None:
    from api.cli_sign import BATCH_GROUP_SIZE
    from signer.batch import DEFAULT_GROUP_SIZE

    assert BATCH_GROUP_SIZE == DEFAULT_GROUP_SIZE
